#!/usr/bin/env node
// Plays an HLS stream the way a viewer's browser does: hls.js in headless
// Chromium (Debian's, driven by playwright-core), the page served from its
// own origin so the stream's CORS headers matter as in real life.
//
//   node play.mjs URL [--rate R] [--timeout S] [--start T]
//
// --rate     video.playbackRate (default 1)
// --timeout  give up after S seconds of wall-clock time (default 600)
// --start    hls.js startPosition (default 0: from the first segment, also
//            for a live playlist; -1 is hls.js's own choice, the live edge)
//
// Prints one JSON object per line on stdout as things happen (errors, video
// events, progress every second) and, last, one line
//   {"event":"summary","ended":...,"duration":...,"current_time":...,
//    "stall_s":...,"fatal_errors":[...],"errors":[...],"started_after_s":...,
//    "reason":...}
// Times ("wall", "started_after_s") are seconds since hls.js was asked to
// load the stream. stall_s is the wall-clock time, after the first
// `playing` and before `ended`, during which the video was waiting or not
// paused and its currentTime did not advance (sampled every 100 ms).
// Exits 0 when the video ended, 1 otherwise (timeout, fatal error, browser
// gone, signal), 2 on bad usage. The browser is always closed; it also dies
// with this process if that is killed (it runs under PR_SET_PDEATHSIG).

import { createServer } from 'node:http';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, missingChromium } from './chromium.mjs';

const here = dirname(fileURLToPath(import.meta.url));

function usage(msg) {
  if (msg) process.stderr.write(`play.mjs: ${msg}\n`);
  process.stderr.write('usage: node play.mjs URL [--rate R] [--timeout S] [--start T]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { url: null, rate: 1, timeout: 600, start: 0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (name) => {
      const v = Number(argv[++i]);
      if (argv[i] === undefined || !Number.isFinite(v)) usage(`${name} needs a number`);
      return v;
    };
    if (a === '--rate') opts.rate = num(a);
    else if (a === '--timeout') opts.timeout = num(a);
    else if (a === '--start') opts.start = num(a);
    else if (a === '-h' || a === '--help') usage();
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else if (opts.url === null) opts.url = a;
    else usage(`unexpected argument ${a}`);
  }
  if (!opts.url) usage('no URL');
  if (!(opts.rate > 0)) usage('--rate must be positive');
  if (!(opts.timeout > 0)) usage('--timeout must be positive');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const started = Date.now();

function emit(obj) {
  // Synchronous, so the lines are out even if the process is killed next.
  writeFileSync(1, JSON.stringify(obj) + '\n');
}

// The page: a muted <video>, hls.js with its defaults but startPosition,
// and a 100 ms sampler that measures stalls. It reports through
// window.__report, bound to report() below.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>HLS playback</title></head>
<body style="margin:0;background:#000">
<video id="v" muted playsinline style="width:100%"></video>
<script src="/hls.min.js"></script>
<script>
(function () {
  const video = document.getElementById('v');
  let t0 = null;
  const wall = () => t0 === null ? 0 : Math.round(performance.now() - t0) / 1000;
  const st = {
    started_after_s: null, ended: false, stall_s: 0, waiting: false,
    errors: [], fatal_errors: [], playing: false,
  };
  const r3 = (x) => Math.round(x * 1000) / 1000;
  function send(obj) { try { window.__report(obj); } catch (e) {} }
  function describe(d) {
    let s = d.type + '/' + d.details;
    const url = d.url || (d.frag && d.frag.url) || (d.context && d.context.url);
    if (url) s += ' ' + url;
    if (d.response && d.response.code) s += ' HTTP ' + d.response.code;
    const reason = d.reason || (d.error && d.error.message);
    if (reason) s += ' (' + reason + ')';
    return s;
  }
  function onError(e, d) {
    const text = describe(d);
    st.errors.push(text);
    if (d.fatal) st.fatal_errors.push(text);
    const url = d.url || (d.frag && d.frag.url) || (d.context && d.context.url) || null;
    send({ event: 'error', type: d.type, details: d.details, fatal: !!d.fatal, url,
           code: (d.response && d.response.code) || null,
           reason: d.reason || (d.error && d.error.message) || null,
           t: video.currentTime, wall: wall() });
  }
  function snapshot() {
    const b = video.buffered;
    return {
      ended: st.ended || video.ended,
      duration: video.duration,
      current_time: video.currentTime,
      stall_s: r3(st.stall_s),
      fatal_errors: st.fatal_errors.slice(),
      errors: st.errors.slice(),
      started_after_s: st.started_after_s,
      paused: video.paused,
      buffered_end: b.length ? b.end(b.length - 1) : null,
      playback_rate: video.playbackRate,
    };
  }
  window.__snapshot = snapshot;

  window.__start = function (url, rate, start) {
    if (!window.Hls || !Hls.isSupported()) {
      st.fatal_errors.push('hls.js is not supported in this browser (no MediaSource?)');
      send({ event: 'error', type: 'harness', details: 'hlsNotSupported', fatal: true, wall: 0 });
      return;
    }
    const hls = new Hls({ startPosition: start });
    window.__hls = hls;
    hls.on(Hls.Events.ERROR, onError);
    hls.on(Hls.Events.MANIFEST_PARSED, function (e, d) {
      send({ event: 'manifest_parsed', levels: d.levels.length, wall: wall() });
      video.playbackRate = rate;
      const p = video.play();
      if (p && p.catch) p.catch(function (err) {
        send({ event: 'play_rejected', reason: String(err), wall: wall() });
      });
    });
    // Some browsers reset playbackRate on a new source: set it again.
    video.addEventListener('loadedmetadata', function () { video.playbackRate = rate; });
    video.addEventListener('playing', function () {
      st.waiting = false;
      if (st.started_after_s === null) st.started_after_s = wall();
      st.playing = true;
      send({ event: 'playing', t: video.currentTime, wall: wall() });
    });
    video.addEventListener('waiting', function () {
      st.waiting = true;
      send({ event: 'waiting', t: video.currentTime, wall: wall() });
    });
    video.addEventListener('stalled', function () {
      send({ event: 'stalled', t: video.currentTime, wall: wall() });
    });
    video.addEventListener('ended', function () {
      st.ended = true;
      send({ event: 'ended', t: video.currentTime, duration: video.duration, wall: wall(),
             stall_s: r3(st.stall_s) });
    });
    video.addEventListener('error', function () {
      const err = video.error;
      const text = 'mediaElementError/' + (err ? err.code + ' ' + err.message : 'unknown');
      st.errors.push(text);
      st.fatal_errors.push(text);
      send({ event: 'error', type: 'mediaElementError', details: err ? String(err.code) : null,
             fatal: true, reason: err ? err.message : null, t: video.currentTime, wall: wall() });
    });

    // Stall sampling: after the first 'playing' and until 'ended', each
    // 100 ms tick in which the video is waiting, or is not paused and its
    // currentTime did not move, counts as stalled for its wall-clock length.
    let lastT = null, lastTick = performance.now(), lastProgress = performance.now();
    setInterval(function () {
      const now = performance.now();
      const dt = (now - lastTick) / 1000;
      lastTick = now;
      const t = video.currentTime;
      if (st.started_after_s !== null && !st.ended && !video.ended) {
        const still = lastT !== null && t <= lastT;
        if (st.waiting || (!video.paused && still)) st.stall_s += dt;
      }
      lastT = t;
      if (now - lastProgress >= 1000) {
        lastProgress = now;
        const s = snapshot();
        send({ event: 'progress', t: s.current_time, wall: wall(), stall_s: s.stall_s,
               buffered_end: s.buffered_end, paused: s.paused, rate: s.playback_rate });
      }
    }, 100);

    t0 = performance.now();
    hls.loadSource(url);
    hls.attachMedia(video);
    send({ event: 'load', url, rate, start, wall: 0 });
  };
})();
</script>
</body></html>
`;

const HLS_JS = join(here, 'node_modules', 'hls.js', 'dist', 'hls.min.js');
if (!existsSync(HLS_JS)) {
  process.stderr.write(`play.mjs: ${HLS_JS} is missing: run ./dev setup (npm ci in tests/browser)\n`);
  process.exit(1);
}

// The page's own origin: 127.0.0.1 on a port of its own, so the stream
// (another port, another origin) is fetched cross-origin.
const server = createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/' || path === '/index.html') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(PAGE);
  } else if (path === '/hls.min.js') {
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
    res.end(readFileSync(HLS_JS));
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  }
});

const missing = missingChromium();
if (missing) {
  process.stderr.write(`play.mjs: ${missing}\n`);
  emit({ event: 'summary', ended: false, reason: 'harness_error: ' + missing, duration: null,
         current_time: null, stall_s: 0, fatal_errors: [missing], errors: [], started_after_s: null,
         rate: opts.rate, elapsed_s: 0 });
  process.exit(1);
}
let cleanupLaunch = () => {};

let browser = null;
let page = null;
let finishing = false;
let last = null; // the last snapshot the page sent, for when it cannot answer
let resolveDone;
const done = new Promise((r) => { resolveDone = r; });
const finish = (reason) => resolveDone(reason);

function withTimeout(promise, ms) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), ms).unref()),
  ]);
}

function report(obj) {
  if (finishing) return;
  if (obj && obj.event === 'progress') last = { ...last, current_time: obj.t, stall_s: obj.stall_s };
  if (obj && obj.event === 'error') {
    const text = `${obj.type}/${obj.details}${obj.url ? ' ' + obj.url : ''}${obj.reason ? ` (${obj.reason})` : ''}`;
    last = { ...last, errors: [...(last?.errors || []), text] };
    if (obj.fatal) last.fatal_errors = [...(last.fatal_errors || []), text];
  }
  emit(obj);
  if (obj.event === 'ended') finish('ended');
  else if (obj.event === 'error' && obj.fatal) finish('fatal_error');
}

for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => finish(`signal ${sig}`));
const timer = setTimeout(() => finish('timeout'), opts.timeout * 1000);

async function main() {
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const launched = await launch();
  browser = launched.browser;
  cleanupLaunch = launched.cleanup;
  browser.on('disconnected', () => finish('browser_gone'));
  const context = await browser.newContext();
  page = await context.newPage();
  page.on('crash', () => finish('page_crashed'));
  page.on('pageerror', (err) => emit({ event: 'pageerror', message: String(err && err.message || err), wall: null }));
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') {
      emit({ event: 'console', level: msg.type(), text: msg.text() });
    }
  });
  await page.exposeFunction('__report', report);
  await page.goto(origin + '/', { waitUntil: 'load' });
  await page.evaluate(([url, rate, start]) => window.__start(url, rate, start),
    [opts.url, opts.rate, opts.start]);
}

let reason;
try {
  reason = await Promise.race([main().then(() => done), done]);
} catch (err) {
  emit({ event: 'error', type: 'harness', details: 'launch', fatal: true, reason: String(err && err.message || err) });
  reason = 'harness_error: ' + String(err && err.message || err).split('\n')[0];
}
finishing = true;
clearTimeout(timer);

let state = null;
if (page && !page.isClosed()) {
  try {
    state = await withTimeout(page.evaluate(() => window.__snapshot && window.__snapshot()), 3000);
  } catch (_) { /* the page is gone or hung: use what it sent last */ }
}
state = state || last || {};
const ended = reason === 'ended' || state.ended === true;
const fatal = state.fatal_errors || [];
if (reason.startsWith('harness_error')) fatal.push(reason);
const num = (x) => (typeof x === 'number' && Number.isFinite(x) ? x : null);
emit({
  event: 'summary',
  ended,
  reason,
  duration: num(state.duration),
  current_time: num(state.current_time),
  stall_s: num(state.stall_s) ?? 0,
  fatal_errors: fatal,
  errors: state.errors || [],
  started_after_s: num(state.started_after_s),
  rate: opts.rate,
  elapsed_s: (Date.now() - started) / 1000,
});

if (browser) {
  try { await withTimeout(browser.close(), 5000); } catch (_) { /* killed on exit */ }
}
server.close();
cleanupLaunch();
process.exit(ended && fatal.length === 0 ? 0 : 1);
