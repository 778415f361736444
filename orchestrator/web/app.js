// transcode-worker's dashboard: workers, jobs, the media library and a
// player, live from the orchestrator's /api/events. Plain JavaScript, no
// build step; hls.js (vendored, Apache-2.0) is loaded when a player opens.
//
// Everything the orchestrator sends is put into the page as text, never as
// HTML: a file name or an error sentence cannot inject markup.
'use strict';

(() => {
  const TOKEN_KEY = 'transcode.token';
  /// A stream that sent nothing (not even its 10 s keep-alive) this long is
  /// taken for dead and opened again.
  const SILENCE_MS = 25000;
  /// History entries shown until "Show all".
  const HISTORY_SHOWN = 30;

  const $ = (id) => document.getElementById(id);
  const state = {
    token: readToken(),
    jobs: new Map(),
    workers: new Map(),
    synced: false,
    offlineSince: null,
    historyAll: false,
    mediaPath: '',
    picked: null,
    route: { view: 'home' },
  };

  function readToken() {
    try { return localStorage.getItem(TOKEN_KEY); } catch (_) { return null; }
  }

  // ---------------------------------------------------------------- DOM

  /// h('li', {class: 'x', data: {job: id}, onclick: f}, 'text', child...)
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'data') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'style') Object.assign(el.style, v); // CSSOM: allowed by the page's CSP
      else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  /// Brings `list`'s children to `items`, in order, building an element
  /// only for an item whose signature changed. Keyboard focus inside a
  /// rebuilt element moves to its counterpart.
  function sync(list, items, key, sig, render) {
    const cache = list._cache || new Map();
    const next = new Map();
    let prev = null;
    for (const item of items) {
      const k = key(item);
      const s = sig(item);
      let entry = cache.get(k);
      if (!entry || entry.sig !== s) {
        const el = render(item);
        if (entry) {
          const focused = entry.el.contains(document.activeElement)
            ? document.activeElement.dataset.focus : null;
          entry.el.replaceWith(el);
          if (focused) {
            const again = el.querySelector(`[data-focus="${CSS.escape(focused)}"]`);
            if (again) again.focus();
          }
        }
        entry = { el, sig: s };
      }
      next.set(k, entry);
      const want = prev ? prev.nextSibling : list.firstChild;
      if (entry.el !== want) list.insertBefore(entry.el, want);
      prev = entry.el;
    }
    for (const [k, e] of cache) if (!next.has(k)) e.el.remove();
    list._cache = next;
  }

  // ------------------------------------------------------------- format

  const pad = (n) => String(n).padStart(2, '0');
  function clock(s) {
    if (!Number.isFinite(s) || s < 0) return '';
    s = Math.round(s);
    const hh = Math.floor(s / 3600), mm = Math.floor((s % 3600) / 60), ss = s % 60;
    return hh ? `${hh}:${pad(mm)}:${pad(ss)}` : `${mm}:${pad(ss)}`;
  }
  function ago(ms) {
    if (!ms) return 'never';
    const s = Math.max(0, (Date.now() - ms) / 1000);
    if (s < 60) return `${Math.round(s)} s ago`;
    if (s < 3600) return `${Math.round(s / 60)} min ago`;
    if (s < 86400) return `${Math.round(s / 3600)} h ago`;
    return new Date(ms).toLocaleString();
  }
  function bytes(n) {
    if (!Number.isFinite(n)) return '';
    const units = ['B', 'kB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
  }
  function timeOfDay(ms) {
    return ms ? new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
  }
  function baseName(path) {
    const parts = String(path).split('/');
    return parts[parts.length - 1] || path;
  }
  /// "90", "1:30", "1:02:03" → seconds; NaN when it is none of those.
  function parseTime(text) {
    const t = String(text).trim();
    if (t === '') return 0;
    if (!/^\d+(\.\d+)?$|^\d+(:\d{1,2}){1,2}(\.\d+)?$/.test(t)) return NaN;
    return t.split(':').reduce((acc, part) => acc * 60 + Number(part), 0);
  }
  const percent = (p) => `${Math.min(100, Math.max(0, p)).toFixed(1)}%`;
  const isFinal = (s) => s === 'completed' || s === 'failed' || s === 'cancelled';
  const isRunning = (s) => s === 'assigned' || s === 'processing';

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function unreachable() {
    return `The orchestrator at ${location.host} does not answer: is it running, and is this ` +
      'device on its network? The page keeps trying.';
  }

  async function api(method, path, body) {
    const headers = { authorization: `Bearer ${state.token}` };
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (_) {
      throw new ApiError(0, unreachable());
    }
    let data = null;
    try { data = await resp.json(); } catch (_) { /* no JSON body */ }
    if (resp.status === 401) {
      signOut('The orchestrator refused the token (it may have been replaced): sign in again.');
      throw new ApiError(401, 'Signed out.');
    }
    if (!resp.ok) {
      throw new ApiError(resp.status, (data && data.error) ||
        `The orchestrator answered ${resp.status} ${resp.statusText}.`);
    }
    return data;
  }

  // ------------------------------------------------------------- events

  let stream = null; // the AbortController of the open event stream

  function setLive(ok, why) {
    const live = $('live');
    const banner = $('banner');
    if (ok) {
      state.offlineSince = null;
      live.textContent = 'Live';
      live.className = 'live on';
      banner.hidden = true;
    } else {
      if (state.offlineSince === null) state.offlineSince = Date.now();
      live.textContent = 'Reconnecting…';
      live.className = 'live off';
      banner.textContent = `${why} (since ${new Date(state.offlineSince).toLocaleTimeString()})`;
      banner.hidden = false;
    }
  }

  function apply(kind, data) {
    switch (kind) {
      case 'snapshot':
        state.jobs = new Map(data.jobs.map((j) => [j.job_id, j]));
        state.workers = new Map(data.workers.map((w) => [w.worker_id, w]));
        state.synced = true;
        setLive(true);
        break;
      case 'job': state.jobs.set(data.job_id, data); break;
      case 'job_removed': state.jobs.delete(data.job_id); break;
      case 'worker': state.workers.set(data.worker_id, data); break;
      case 'worker_removed': state.workers.delete(data.worker_id); break;
      default: return;
    }
    schedule();
  }

  function dispatchBlock(block) {
    let kind = 'message';
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') kind = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length === 0) return;
    let parsed;
    try { parsed = JSON.parse(data.join('\n')); } catch (_) { return; }
    apply(kind, parsed);
  }

  /// Reads /api/events for as long as the page is signed in, opening it
  /// again (after 1 s, then up to 5 s) whenever it fails or ends. fetch,
  /// not EventSource: the token goes in a header.
  async function follow() {
    let delay = 1000;
    while (state.token) {
      const ctrl = new AbortController();
      stream = ctrl;
      let watchdog = null;
      const arm = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => ctrl.abort(), SILENCE_MS);
      };
      let why = unreachable();
      try {
        arm();
        const resp = await fetch('/api/events', {
          headers: { authorization: `Bearer ${state.token}`, accept: 'text/event-stream' },
          cache: 'no-store',
          signal: ctrl.signal,
        });
        if (resp.status === 401) {
          signOut('The orchestrator refused the token (it may have been replaced): sign in again.');
          return;
        }
        if (!resp.ok || !resp.body) {
          let sentence = null;
          try { sentence = (await resp.json()).error; } catch (_) { /* none */ }
          why = sentence || `The orchestrator answered ${resp.status} to the live view.`;
          throw new Error(why);
        }
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          arm();
          buffer += value;
          let end;
          while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
            const sep = buffer.slice(end).match(/^\r?\n\r?\n/)[0].length;
            dispatchBlock(buffer.slice(0, end));
            buffer = buffer.slice(end + sep);
            delay = 1000;
          }
        }
        why = `The orchestrator at ${location.host} closed the live view (restarting?); the page reconnects by itself.`;
      } catch (_) {
        if (ctrl.signal.aborted && stream !== ctrl) return; // signed out
      } finally {
        clearTimeout(watchdog);
      }
      if (!state.token || stream !== ctrl) return;
      setLive(false, why);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  }

  // ----------------------------------------------------------- rendering

  let scheduled = false;
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; render(); });
  }
  // Relative times ("12 s ago") and waiting times move on by themselves.
  setInterval(schedule, 5000);

  function render() {
    if (!state.token) return;
    if (state.route.view === 'player') renderPlayer();
    else renderHome();
  }

  function renderHome() {
    const workers = [...state.workers.values()]
      .sort((a, b) => (b.online - a.online) || a.worker_id.localeCompare(b.worker_id));
    $('workers-count').textContent = workers.length ? `${workers.filter((w) => w.online).length} of ${workers.length} online` : '';
    $('workers-empty').hidden = !state.synced || workers.length > 0;
    sync($('worker-list'), workers, (w) => w.worker_id,
      (w) => JSON.stringify(w) + ago(w.last_seen) + workerJobsSig(w), workerCard);

    const jobs = [...state.jobs.values()];
    const running = jobs.filter((j) => isRunning(j.state)).sort((a, b) => a.seq - b.seq);
    const queued = jobs.filter((j) => j.state === 'queued').sort((a, b) => a.seq - b.seq);
    const history = jobs.filter((j) => isFinal(j.state))
      .sort((a, b) => (b.finished_at || b.updated_at) - (a.finished_at || a.updated_at));
    const shown = state.historyAll ? history : history.slice(0, HISTORY_SHOWN);
    for (const [name, list] of [['running', running], ['queue', queued], ['history', history]]) {
      $(`${name}-count`).textContent = list.length ? String(list.length) : '';
      $(`${name}-empty`).hidden = !state.synced || list.length > 0;
    }
    const jobSig = (j) => JSON.stringify(j) + (j.state === 'queued' ? ago(j.queued_at || j.created_at) : '');
    sync($('running-list'), running, (j) => j.job_id, jobSig, (j) => jobItem(j, true));
    const place = new Map(queued.map((j, i) => [j.job_id, i + 1]));
    sync($('queue-list'), queued, (j) => j.job_id, (j) => jobSig(j) + place.get(j.job_id),
      (j) => jobItem(j, true, place.get(j.job_id)));
    sync($('history-list'), shown, (j) => j.job_id, jobSig, (j) => jobItem(j, true));
    const more = $('history-more');
    more.hidden = history.length <= HISTORY_SHOWN;
    more.textContent = state.historyAll ? 'Show fewer' : `Show all ${history.length}`;
  }

  function workerJobsSig(w) {
    return (w.jobs || []).map((id) => {
      const j = state.jobs.get(id);
      return j ? `${id}:${Math.floor(j.progress)}:${j.state}` : id;
    }).join(',');
  }

  function workerCard(w) {
    const hb = w.heartbeat || {};
    const status = w.online ? (hb.status || 'idle') : 'offline';
    const facts = [];
    if (w.online) {
      if (Number.isFinite(hb.cpu_usage)) facts.push(`CPU ${Math.round(hb.cpu_usage)} %`);
      if (hb.memory_total_mb) {
        const used = hb.memory_total_mb - (hb.memory_available_mb || 0);
        facts.push(`memory ${(used / 1024).toFixed(1)} of ${(hb.memory_total_mb / 1024).toFixed(1)} GB`);
      }
      const slots = hb.max_jobs || 1;
      facts.push(`${(hb.active_jobs || []).length} of ${slots} ${slots === 1 ? 'slot' : 'slots'} busy`);
      if (hb.cpu_cores) facts.push(`${hb.cpu_cores} cores`);
    } else {
      facts.push(`last seen ${ago(w.last_seen)}`);
    }
    if (hb.os) facts.push(hb.os);
    if (hb.version) facts.push(`v${hb.version}`);
    const encoders = (hb.encoders && hb.encoders.length ? hb.encoders : ['unknown']).join(', ');
    const accel = hb.hw_accel && hb.hw_accel.length ? ` (hardware: ${hb.hw_accel.join(', ')})` : '';
    const jobs = (w.jobs || []).map((id) => {
      const j = state.jobs.get(id);
      const label = j ? `${baseName(j.source_path)} ${j.progress.toFixed(0)} %` : id;
      return h('li', {}, h('a', { href: `/jobs/${id}`, 'data-link': true, data: { focus: `w-${id}` } }, label));
    });
    return h('li', {
      class: `worker ${w.online ? 'online' : 'offline'}`,
      data: { worker: w.worker_id, online: String(w.online), status },
      'aria-label': `worker ${w.worker_id}, ${status}`,
    },
    h('div', { class: 'worker-head' },
      h('strong', {}, w.worker_id),
      h('span', { class: `badge ${status}` }, status),
      hb.hostname && hb.hostname !== w.worker_id ? h('span', { class: 'muted' }, hb.hostname) : null),
    h('div', { class: 'facts' }, facts.map((f) => h('span', {}, f))),
    h('div', { class: 'facts' }, h('span', {}, 'encoders: ', h('span', { class: 'encoders' }, encoders + accel))),
    jobs.length ? h('ul', { class: 'worker-jobs' }, jobs) : null);
  }

  /// The sentence under a job's name: how far it is, or how it ended.
  function progressText(j, place) {
    const parts = [];
    if (isRunning(j.state)) {
      parts.push(`${j.progress.toFixed(1)} %`);
      if (j.fps > 0) parts.push(`${Math.round(j.fps)} fps`);
      if (j.speed) parts.push(`${j.speed.toFixed(1)}×`);
      if (j.eta_s !== null && j.eta_s !== undefined) parts.push(`${clock(j.eta_s)} left`);
      const who = workersOf(j);
      if (who.length) parts.push(`on ${who.join(', ')}`);
      if (j.state === 'assigned') parts.push('starting');
    } else if (j.state === 'queued') {
      if (place) parts.push(`#${place} in the queue`);
      parts.push(`waiting since ${timeOfDay(j.queued_at || j.created_at)}`);
      if (j.attempt > 0) parts.push(`run ${j.attempt + 1}`);
    } else {
      const from = j.started_at || j.assigned_at || j.created_at;
      if (j.finished_at && from) parts.push(`${j.state} after ${clock((j.finished_at - from) / 1000)}`);
      else parts.push(j.state);
      if (j.finished_at) parts.push(`at ${timeOfDay(j.finished_at)}`);
      if (j.workers && j.workers.length) parts.push(`by ${j.workers.join(', ')}`);
    }
    return parts.join(' · ');
  }

  function workersOf(j) {
    if (j.chunks && j.chunks.length) {
      return [...new Set(j.chunks.filter((c) => isRunning(c.state)).map((c) => c.worker_id))];
    }
    return j.worker_id ? [j.worker_id] : [];
  }

  function settings(j) {
    const s = [j.resolution, j.bitrate];
    if (j.start_time > 0) s.push(`from ${clock(j.start_time)}`);
    if (j.is_mesh_mode) s.push('split');
    return s.join(' · ');
  }

  function jobItem(j, link, place) {
    const name = baseName(j.source_path);
    const actions = [];
    if (!isFinal(j.state)) {
      actions.push(h('button', {
        type: 'button', class: 'danger', data: { action: 'cancel', focus: `cancel-${j.job_id}` },
        'aria-label': `Cancel ${name}`, onclick: (e) => act(e.currentTarget, j, 'cancel'),
      }, 'Cancel'));
    } else {
      actions.push(h('button', {
        type: 'button', class: 'quiet', data: { action: 'again', focus: `again-${j.job_id}` },
        'aria-label': `Run ${name} again`, onclick: (e) => act(e.currentTarget, j, 'again'),
      }, 'Run again'));
    }
    if (link && (j.listed > 0 || isRunning(j.state))) {
      actions.push(h('a', { href: `/jobs/${j.job_id}`, 'data-link': true, data: { focus: `watch-${j.job_id}` } }, 'Watch'));
    }
    const running = isRunning(j.state);
    return h('li', { class: 'job', data: { job: j.job_id, state: j.state } },
      h('div', { class: 'job-head' },
        link ? h('a', { class: 'name', href: `/jobs/${j.job_id}`, 'data-link': true, title: j.source_path, data: { focus: `name-${j.job_id}` } }, name)
          : h('span', { class: 'name', title: j.source_path }, name),
        h('span', { class: `badge ${j.state}` }, j.state),
        h('span', { class: 'muted' }, settings(j))),
      running ? h('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': j.progress.toFixed(0), 'aria-label': `progress of ${name}` },
        h('span', { style: { width: percent(j.progress) } })) : null,
      h('div', { class: 'progress-text muted' }, progressText(j, place)),
      chunkList(j),
      j.error ? h('div', { class: 'job-error' }, j.error) : null,
      j.note && !isFinal(j.state) ? h('div', { class: 'muted' }, j.note) : null,
      h('div', { class: 'actions' }, actions));
  }

  /// A split job's parts that run now, one line per part.
  function chunkList(j) {
    const parts = (j.chunks || []).filter((c) => isRunning(c.state));
    if (!parts.length) return null;
    return h('div', { class: 'chunks', 'aria-label': 'parts' }, parts.map((c) =>
      h('div', { class: 'chunk', data: { chunk: String(c.attempt), worker: c.worker_id } },
        h('span', {}, c.worker_id),
        h('div', { class: 'bar' }, h('span', { style: { width: percent(c.progress) } })),
        h('span', {}, `${c.progress.toFixed(0)} % · segments ${c.first_segment}–${c.end_segment === null || c.end_segment === undefined ? 'end' : c.end_segment - 1}`))));
  }

  async function act(button, job, what) {
    button.disabled = true;
    try {
      if (what === 'cancel') {
        await api('DELETE', `/api/jobs/${job.job_id}`);
      } else {
        const again = await api('POST', `/api/jobs/${job.job_id}/again`);
        if (state.route.view === 'player') navigate(`/jobs/${again.job_id}`);
      }
    } catch (e) {
      if (e.status !== 401) notice(e.message);
    } finally {
      button.disabled = false;
    }
  }

  let noticeTimer = null;
  /// A sentence about something the person just did, for a while.
  function notice(text) {
    const el = $('notice');
    el.textContent = text;
    el.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { el.hidden = true; }, 8000);
  }

  // ------------------------------------------------------------- library

  async function openFolder(path) {
    state.mediaPath = path;
    const err = $('library-error');
    try {
      const listing = await api('GET', `/api/media?path=${encodeURIComponent(path)}`);
      err.hidden = true;
      renderFolder(listing);
    } catch (e) {
      if (e.status === 401) return;
      err.textContent = e.message;
      err.hidden = false;
    }
  }

  function renderFolder(listing) {
    const crumbs = $('crumbs');
    crumbs.replaceChildren();
    const parts = listing.path ? listing.path.split('/') : [];
    crumbs.append(h('button', { type: 'button', class: 'quiet', onclick: () => openFolder('') }, 'Library'));
    parts.forEach((p, i) => {
      const to = parts.slice(0, i + 1).join('/');
      crumbs.append(h('span', { 'aria-hidden': 'true' }, '/'),
        h('button', { type: 'button', class: 'quiet', onclick: () => openFolder(to) }, p));
    });
    const files = $('files');
    files.replaceChildren();
    if (!listing.entries.length) files.append(h('li', { class: 'other' }, 'This folder is empty.'));
    for (const e of listing.entries) {
      const meta = [];
      if (e.duration) meta.push(clock(e.duration));
      if (e.size !== undefined) meta.push(bytes(e.size));
      if (e.kind === 'other') {
        files.append(h('li', { class: 'other' }, `${e.name}${meta.length ? ` · ${meta.join(' · ')}` : ''}`));
        continue;
      }
      files.append(h('li', {}, h('button', {
        type: 'button', data: { kind: e.kind, path: e.path },
        onclick: () => (e.kind === 'directory' ? openFolder(e.path) : pick(e)),
      }, h('span', { class: 'name' }, e.name), h('span', { class: 'meta' }, meta.join(' · ')))));
    }
    if (listing.truncated) files.append(h('li', { class: 'other' }, 'More files than a listing shows: open a subfolder.'));
  }

  function pick(entry) {
    state.picked = entry;
    $('pick-name').textContent = entry.name;
    $('pick-path').value = entry.path;
    $('submit-error').textContent = '';
    $('submit-form').hidden = false;
    $('resolution').focus();
  }

  async function submitJob(ev) {
    ev.preventDefault();
    const error = $('submit-error');
    const start = parseTime($('start-time').value);
    if (!Number.isFinite(start)) {
      error.textContent = 'Start at: write seconds (90), minutes:seconds (1:30) or hours:minutes:seconds.';
      return;
    }
    const request = {
      source_path: $('pick-path').value,
      resolution: $('resolution').value,
      bitrate: $('bitrate').value.trim(),
      start_time: start,
      is_mesh_mode: $('mesh').checked,
    };
    const button = $('submit-button');
    button.disabled = true;
    try {
      const job = await api('POST', '/api/jobs', request);
      state.jobs.set(job.job_id, job);
      $('submit-form').hidden = true;
      navigate(`/jobs/${job.job_id}`);
    } catch (e) {
      if (e.status !== 401) error.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  }

  // -------------------------------------------------------------- player

  let player = null; // { id, hls, retry }
  let hlsLoading = null;

  function loadHls() {
    if (window.Hls) return Promise.resolve();
    if (!hlsLoading) {
      hlsLoading = new Promise((resolve, reject) => {
        const s = h('script', { src: '/assets/hls.min.js' });
        s.onload = () => resolve();
        s.onerror = () => { hlsLoading = null; reject(new Error('hls.js did not load')); };
        document.head.append(s);
      });
    }
    return hlsLoading;
  }

  function say(text) { $('player-status').textContent = text; }

  function stopPlayer() {
    if (!player) return;
    clearTimeout(player.retry);
    if (player.hls) player.hls.destroy();
    const video = $('video');
    video.removeAttribute('src');
    video.load();
    player = null;
  }

  function renderPlayer() {
    const id = state.route.id;
    const j = state.jobs.get(id);
    const box = $('player-job');
    if (!j) {
      $('player-title').textContent = 'Job';
      document.title = 'transcode-worker';
      box.replaceChildren();
      if (state.synced) say(`This orchestrator has no job ${id} (finished jobs are kept for a while, then forgotten).`);
      return;
    }
    const name = baseName(j.source_path);
    $('player-title').textContent = name;
    document.title = `${name} · transcode-worker`;
    const sig = JSON.stringify(j);
    if (box._sig !== sig) {
      box._sig = sig;
      const focused = box.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
      box.replaceChildren(h('ul', { class: 'jobs' }, jobItem(j, false)));
      if (focused) {
        const again = box.querySelector(`[data-focus="${CSS.escape(focused)}"]`);
        if (again) again.focus();
      }
    }
    if (player && player.id === id) return;
    if (j.listed > 0) startPlayer(j);
    else if (isFinal(j.state)) say(`This job ${j.state} without a stream to play.`);
    else say(j.state === 'queued' ? 'Waiting for a free worker…' : 'Waiting for the first segment…');
  }

  function startPlayer(j) {
    stopPlayer();
    const me = { id: j.job_id, hls: null, retry: null };
    player = me;
    const url = `/stream/${j.job_id}/index.m3u8`;
    const video = $('video');
    const native = () => {
      video.src = url;
      play(video);
    };
    say('Loading the stream…');
    const mse = window.MediaSource || window.ManagedMediaSource;
    if (!mse) {
      if (video.canPlayType('application/vnd.apple.mpegurl')) native();
      else say('This browser cannot play HLS streams.');
      return;
    }
    loadHls().then(() => {
      if (player !== me) return;
      if (!window.Hls.isSupported()) {
        if (video.canPlayType('application/vnd.apple.mpegurl')) native();
        else say('This browser cannot play HLS streams.');
        return;
      }
      const hls = new window.Hls({ startPosition: 0 });
      me.hls = hls;
      hls.on(window.Hls.Events.MANIFEST_PARSED, () => play(video));
      hls.on(window.Hls.Events.ERROR, (_, d) => {
        if (!d.fatal || player !== me) return;
        if (d.type === window.Hls.ErrorTypes.NETWORK_ERROR) {
          // A worker went away: the orchestrator holds the segment until
          // another one has it again. Ask again.
          say('The stream is catching up after a worker change…');
          me.retry = setTimeout(() => { if (player === me) hls.startLoad(); }, 1000);
        } else if (d.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
        } else {
          say(`The player stopped: ${d.details}. Retrying…`);
          me.retry = setTimeout(() => { if (player === me) { player = null; schedule(); } }, 2000);
        }
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    }, (e) => say(`The player could not start: ${e.message}.`));
  }

  function play(video) {
    const p = video.play();
    if (!p || !p.catch) return;
    p.catch((err) => {
      if (err && err.name === 'NotAllowedError' && !video.muted) {
        // Browsers only start sound after a click: start muted instead.
        video.muted = true;
        say('Playing without sound: turn it on with the speaker button.');
        video.play().catch(() => say('Press play to start.'));
      }
    });
  }

  (function watchVideo() {
    const video = $('video');
    video.addEventListener('playing', () => say(''));
    video.addEventListener('waiting', () => say('Buffering…'));
    video.addEventListener('ended', () => say('The end.'));
  })();

  // --------------------------------------------------------- navigation

  function route() {
    const m = location.pathname.match(/^\/jobs\/([^/]+)\/?$/);
    const next = m ? { view: 'player', id: decodeURIComponent(m[1]) } : { view: 'home' };
    if (next.view !== 'player' || next.id !== state.route.id) stopPlayer();
    state.route = next;
    const signedIn = !!state.token;
    $('login').hidden = signedIn;
    $('nav').hidden = !signedIn;
    $('logout').hidden = !signedIn;
    $('home').hidden = !signedIn || next.view !== 'home';
    $('player-view').hidden = !signedIn || next.view !== 'player';
    if (next.view === 'home') {
      document.title = 'transcode-worker';
      if (location.hash) {
        const target = document.getElementById(location.hash.slice(1));
        if (target) target.scrollIntoView();
      }
    } else {
      say('');
      $('player-job').replaceChildren();
      $('player-job')._sig = null;
    }
    schedule();
  }

  function navigate(path) {
    history.pushState(null, '', path);
    route();
    window.scrollTo(0, 0);
    $('main').focus({ preventScroll: true });
  }

  document.addEventListener('click', (e) => {
    const a = e.target.closest && e.target.closest('a[data-link]');
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const url = new URL(a.href);
    if (url.origin !== location.origin) return;
    e.preventDefault();
    if (url.pathname === location.pathname && url.hash) {
      history.pushState(null, '', url.pathname + url.hash);
      const target = document.getElementById(url.hash.slice(1));
      if (target) target.scrollIntoView();
      return;
    }
    navigate(url.pathname + url.hash);
  });
  window.addEventListener('popstate', route);

  // ------------------------------------------------------------- sign in

  function start() {
    route();
    follow();
    openFolder(state.mediaPath);
  }

  function signOut(message) {
    state.token = null;
    try { localStorage.removeItem(TOKEN_KEY); } catch (_) { /* private mode */ }
    if (stream) { const s = stream; stream = null; s.abort(); }
    stopPlayer();
    state.jobs.clear();
    state.workers.clear();
    state.synced = false;
    $('live').textContent = '';
    $('live').className = 'live';
    $('banner').hidden = true;
    $('login-error').textContent = message || '';
    route();
    $('token').focus();
  }

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = $('token').value.trim();
    const error = $('login-error');
    error.textContent = '';
    let resp;
    try {
      resp = await fetch('/api/workers', { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
    } catch (_) {
      error.textContent = unreachable();
      return;
    }
    if (resp.status === 401) {
      error.textContent = 'The orchestrator refused this token: copy it again from its api-token file.';
      return;
    }
    if (!resp.ok) {
      error.textContent = `The orchestrator answered ${resp.status}; try again in a moment.`;
      return;
    }
    state.token = token;
    try { localStorage.setItem(TOKEN_KEY, token); } catch (_) { /* kept for this page only */ }
    $('token').value = '';
    start();
  });

  $('logout').addEventListener('click', () => signOut(''));
  $('history-more').addEventListener('click', () => { state.historyAll = !state.historyAll; schedule(); });
  $('submit-form').addEventListener('submit', submitJob);
  $('submit-close').addEventListener('click', () => { $('submit-form').hidden = true; });

  if (state.token) start();
  else route();
})();
