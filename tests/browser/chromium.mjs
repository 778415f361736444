// Starts Debian's Chromium headless for the harness scripts (play.mjs,
// drive.mjs), the same way for both.
//
// Chromium runs under PR_SET_PDEATHSIG: it dies with the script even when
// the script is killed outright and cannot close it. playwright starts the
// browser in a session of its own (out of our process group), and
// /usr/bin/chromium execs the real binary, which keeps the setting.

import { writeFileSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';

/// Why Chromium cannot start, or null.
export function missingChromium() {
  return existsSync(chromiumPath) ? null : `${chromiumPath} is missing: run ./dev setup (apt-get install chromium)`;
}

/// The browser, and a function that removes what launching it made.
/// Our own signal handlers close it (so the scripts can still report).
export async function launch() {
  const wrapperDir = mkdtempSync(join(tmpdir(), 'chromium-harness-'));
  let executablePath = chromiumPath;
  if (existsSync('/usr/bin/setpriv')) {
    executablePath = join(wrapperDir, 'chromium');
    writeFileSync(executablePath,
      `#!/bin/sh\nexec /usr/bin/setpriv --pdeathsig KILL -- '${chromiumPath.replace(/'/g, `'\\''`)}' "$@"\n`,
      { mode: 0o755 });
  }
  const cleanup = () => { try { rmSync(wrapperDir, { recursive: true, force: true }); } catch (_) {} };
  try {
    const browser = await chromium.launch({
      executablePath,
      headless: true,
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
      args: [
        '--no-sandbox',
        '--autoplay-policy=no-user-gesture-required',
        '--mute-audio',
        '--disable-dev-shm-usage',
        '--disable-gpu',
        '--no-first-run',
        '--no-default-browser-check',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-quic',
        '--disable-background-timer-throttling',
        '--disable-renderer-backgrounding',
        '--disable-backgrounding-occluded-windows',
      ],
    });
    return { browser, cleanup };
  } catch (err) {
    cleanup();
    throw err;
  }
}
