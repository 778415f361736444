#!/usr/bin/env node
// Drives one headless Chromium page for a test that acts on a web page the
// way a person does (the dashboard): the test sends commands over HTTP on
// loopback, one at a time, and gets JSON back.
//
//   node drive.mjs [--width W] [--height H]
//
// Prints {"event":"ready","port":N} once it listens on 127.0.0.1:N, then
// one JSON line per thing the page does that a test may want to see:
// every request ("request", with its URL), console errors and warnings,
// uncaught page errors, a crash. POST / with one command:
//
//   {"cmd":"goto","url":U}                       load U, wait for `load`
//   {"cmd":"eval","js":EXPR}                     the expression's value
//   {"cmd":"wait","js":EXPR,"timeout_ms":T}      until EXPR is truthy:
//                                                {"value","waited_ms"}
//   {"cmd":"click","selector":S}                 a real mouse click
//   {"cmd":"fill","selector":S,"value":V}        types into an input
//   {"cmd":"select","selector":S,"value":V}      picks an <option>
//   {"cmd":"press","key":K}                      a key on the keyboard
//   {"cmd":"screenshot","path":P}                the page as a PNG
//   {"cmd":"requests"}                           every URL asked so far
//   {"cmd":"close"}                              closes and exits
//
// The answer is {"ok":true,"value":...} or {"ok":false,"error":"..."}.
// The browser is closed on SIGTERM, and dies with this process if that is
// killed (chromium.mjs).

import { createServer } from 'node:http';
import { writeFileSync } from 'node:fs';
import { launch, missingChromium } from './chromium.mjs';

function emit(obj) {
  writeFileSync(1, JSON.stringify(obj) + '\n');
}

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

const missing = missingChromium();
if (missing) {
  process.stderr.write(`drive.mjs: ${missing}\n`);
  process.exit(1);
}

const { browser, cleanup } = await launch();
const context = await browser.newContext({
  viewport: { width: option('--width', 1280), height: option('--height', 860) },
});
const page = await context.newPage();
const requests = [];
page.on('request', (r) => {
  requests.push(r.url());
  emit({ event: 'request', method: r.method(), url: r.url() });
});
page.on('console', (m) => {
  if (m.type() === 'error' || m.type() === 'warning') emit({ event: 'console', level: m.type(), text: m.text() });
});
page.on('pageerror', (e) => emit({ event: 'pageerror', message: String((e && e.message) || e) }));
page.on('crash', () => emit({ event: 'crash' }));

async function run(c) {
  switch (c.cmd) {
    case 'goto':
      await page.goto(c.url, { waitUntil: 'load', timeout: 30000 });
      return null;
    case 'eval':
      return await page.evaluate(c.js);
    case 'wait': {
      // Polled from here: page.evaluate is not subject to the page's CSP,
      // waitForFunction (an in-page eval) is.
      const t0 = Date.now();
      const deadline = t0 + (c.timeout_ms || 10000);
      let last = null;
      for (;;) {
        try {
          const value = await page.evaluate(c.js);
          if (value) return { value, waited_ms: Date.now() - t0 };
        } catch (e) {
          last = String((e && e.message) || e);
        }
        if (Date.now() >= deadline) {
          throw new Error(`timed out after ${Date.now() - t0} ms${last ? `; last error: ${last}` : ''}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    case 'click':
      await page.click(c.selector, { timeout: 10000 });
      return null;
    case 'fill':
      await page.fill(c.selector, c.value, { timeout: 10000 });
      return null;
    case 'select':
      await page.selectOption(c.selector, c.value, { timeout: 10000 });
      return null;
    case 'press':
      await page.keyboard.press(c.key);
      return null;
    case 'screenshot':
      await page.screenshot({ path: c.path, fullPage: !!c.full_page });
      return null;
    case 'requests':
      return requests.slice();
    case 'close':
      return null;
    default:
      throw new Error(`unknown command ${JSON.stringify(c.cmd)}`);
  }
}

let closing = false;
async function close(code) {
  if (closing) return;
  closing = true;
  try { await browser.close(); } catch (_) { /* killed on exit */ }
  cleanup();
  process.exit(code);
}
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => close(0));

// One command at a time, in order.
let queue = Promise.resolve();
const server = createServer((req, res) => {
  let body = '';
  req.on('data', (d) => { body += d; });
  req.on('end', () => {
    queue = queue.then(async () => {
      let answer;
      let cmd = null;
      try {
        cmd = JSON.parse(body);
        answer = { ok: true, value: (await run(cmd)) ?? null };
      } catch (e) {
        answer = { ok: false, error: String((e && e.message) || e) };
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(answer));
      if (cmd && cmd.cmd === 'close') await close(0);
    });
  });
});
server.listen(0, '127.0.0.1', () => emit({ event: 'ready', port: server.address().port }));
