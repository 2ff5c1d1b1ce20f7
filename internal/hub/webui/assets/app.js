// Outpost dashboard: a single-page app with hash routes. It talks only to
// the hub that served it (same origin, REST API under /api/v1) and builds
// the DOM with textContent, never innerHTML, so values from devices cannot
// inject markup.
'use strict';

const TOKEN_KEY = 'outpost.token';
const POLL_MS = 2000;
const HOUR_MS = 3600 * 1000;

// ---------- small helpers ----------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// swap replaces a container's children and, when focus was inside it on
// an element with data-key, moves focus to the new element with that key,
// so that live refreshes do not throw keyboard users out.
function swap(container, ...children) {
  const a = document.activeElement;
  const key = a && container.contains(a) && a.dataset ? a.dataset.key : undefined;
  container.replaceChildren(...children.flat().filter((c) => c));
  if (key) {
    const n = container.querySelector('[data-key="' + CSS.escape(key) + '"]');
    if (n) n.focus();
  }
}

function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString();
}

function ago(iso) {
  if (!iso) return 'never';
  const s = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (isNaN(s)) return iso;
  if (s < 5) return 'just now';
  if (s < 90) return s + ' s ago';
  if (s < 5400) return Math.round(s / 60) + ' min ago';
  if (s < 129600) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}

function fmtBytes(n) {
  if (!n) return '0 B';
  const u = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}

function badge(text, kind) { return el('span', { class: 'badge ' + kind, text }); }

function stateKind(s) {
  switch (s) {
    case 'running': case 'complete': case 'completed': case 'passing': case 'online': return 'ok';
    case 'failed': case 'aborted': case 'critical': case 'offline': case 'error': case 'backoff': return 'bad';
    case 'paused': case 'rolling': case 'warning': case 'pending': case 'starting': case 'downloading': return 'warn';
    default: return 'neutral';
  }
}

// otaKind maps a job execution status to a badge colour.
function otaKind(s) {
  switch (s) {
    case 'SUCCEEDED': return 'ok';
    case 'FAILED': case 'REJECTED': case 'TIMED_OUT': return 'bad';
    case 'QUEUED': case 'IN_PROGRESS': return 'warn';
    default: return 'neutral';
  }
}

function labelChips(labels) {
  const ks = Object.keys(labels || {}).sort();
  if (!ks.length) return el('span', { class: 'muted', text: 'none' });
  return ks.map((k) => el('span', { class: 'chip', text: k + '=' + labels[k] }));
}

function pretty(v) { return v === undefined ? '{}' : JSON.stringify(v, null, 2); }

const enc = encodeURIComponent;

// ---------- API ----------

class APIError extends Error {
  constructor(status, code, message, problems) {
    super(message);
    this.status = status;
    this.code = code;
    this.problems = problems || [];
  }
  describe() { return [this.message, ...this.problems].join('\n'); }
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

async function api(method, path, body, contentType) {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = 'Bearer ' + t;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = contentType || 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
  if (resp.status === 401 && path !== '/api/v1/auth/login') {
    signOut('Your session ended. Please sign in again.');
    throw new APIError(401, 'unauthorized', 'signed out');
  }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    throw new APIError(resp.status, e.code || 'http_' + resp.status, e.message || resp.statusText, data && data.problems);
  }
  return data;
}

// ---------- routing and polling ----------

const view = () => document.getElementById('view');
let generation = 0; // bumped on every route change; stale pollers stop
let timer = null;
let lastStatus = '';
let stoppers = []; // closes the page's event stream and timers on a route change

function setStatus(msg) {
  if (msg === lastStatus) return;
  lastStatus = msg;
  document.getElementById('status').textContent = msg;
}

function stopPolling() {
  generation++;
  clearTimeout(timer);
  for (const stop of stoppers) stop();
  stoppers = [];
}

// poll runs fn now and then every POLL_MS until the route changes.
function poll(fn) {
  const mine = generation;
  const tick = async () => {
    if (mine !== generation) return;
    try {
      await fn();
      if (mine === generation) setStatus('');
    } catch (e) {
      if (mine === generation && e.status !== 401) setStatus('Could not refresh: ' + (e.describe ? e.describe() : e.message));
    }
    if (mine === generation) timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

function route() {
  stopPolling();
  setStatus('');
  const signedIn = !!token();
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('logout').hidden = !signedIn;
  if (!signedIn) return renderSignIn();
  const h = location.hash.replace(/^#/, '') || '/';
  let name = 'fleet';
  if (h === '/' || h === '') renderFleet();
  else if (h.startsWith('/devices/')) { name = ''; renderDevice(decodeURIComponent(h.slice('/devices/'.length))); }
  else if (h === '/rollouts') { name = 'rollouts'; renderRollouts(); }
  else if (h === '/deployments') { name = 'deployments'; renderDeployments(); }
  else { name = ''; swap(view(), el('h1', { text: 'Not found' }), el('p', {}, 'No page here. ', el('a', { href: '#/', text: 'Back to the fleet' }))); }
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.route === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  signInMessage = message || '';
  route();
}

// ---------- sign-in ----------

let signInMessage = '';

function renderSignIn() {
  document.title = 'Sign in · Outpost';
  const err = el('p', { class: 'error', id: 'signin-error', role: 'alert', text: signInMessage });
  signInMessage = '';
  const user = el('input', { id: 'username', name: 'username', autocomplete: 'username', required: true, value: 'admin' });
  const pass = el('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const btn = el('button', { type: 'submit', text: 'Sign in' });
  const form = el('form', { class: 'panel signin', 'aria-labelledby': 'signin-title', 'aria-describedby': 'signin-error' },
    el('h1', { id: 'signin-title', text: 'Sign in to the hub' }),
    el('div', { class: 'field' }, el('label', { for: 'username', text: 'Username' }), user),
    el('div', { class: 'field' }, el('label', { for: 'password', text: 'Password' }), pass),
    err, btn);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    btn.disabled = true;
    err.textContent = '';
    try {
      const r = await api('POST', '/api/v1/auth/login', { username: user.value, password: pass.value });
      sessionStorage.setItem(TOKEN_KEY, r.token);
      route();
      view().focus();
    } catch (e) {
      err.textContent = e.status === 401 ? 'Wrong username or password.' : 'Sign-in failed: ' + e.message;
      btn.disabled = false;
      pass.focus();
    }
  });
  swap(view(), form);
  (user.value ? pass : user).focus();
}

// ---------- fleet ----------

let fleetFilter = '';

function parseSelector(text) {
  const parts = text.split(/[\s,]+/).filter((p) => p);
  for (const p of parts) {
    if (!/^[^=]+=.*$/.test(p)) throw new Error('"' + p + '" is not key=value');
  }
  return parts;
}

function renderFleet() {
  document.title = 'Fleet · Outpost';
  const counts = el('ul', { class: 'counts', 'aria-label': 'Device counts' });
  const filterErr = el('p', { class: 'error', id: 'filter-error', role: 'alert' });
  const input = el('input', { id: 'label-filter', type: 'search', value: fleetFilter, placeholder: 'site=plant-1 line=3', 'aria-describedby': 'filter-hint filter-error' });
  const tbody = el('tbody');
  const table = el('table', { id: 'fleet' },
    el('caption', { text: 'Devices' }),
    el('thead', {}, el('tr', {}, ...['Device', 'Status', 'Last seen', 'Labels', 'Agent', 'Spool backlog'].map((h, i) => el('th', { scope: 'col', class: i === 5 ? 'num' : undefined, text: h })))),
    tbody);
  const hint = el('p', { class: 'hint', id: 'fleet-updates', text: 'Connecting for live updates…' });
  let last = null; // the last list shown and its selector, redrawn so that "last seen" ages
  const show = (r, sel) => {
    last = { r, sel };
    const devs = r.devices || [];
    const online = devs.filter((d) => d.online).length;
    swap(counts,
      el('li', {}, el('span', { class: 'n', id: 'count-devices', text: devs.length }), sel.length ? 'devices matching' : 'devices'),
      el('li', {}, el('span', { class: 'n', id: 'count-online', text: online }), 'online'),
      el('li', {}, el('span', { class: 'n', id: 'count-offline', text: devs.length - online }), 'offline'));
    if (!devs.length) {
      swap(tbody, el('tr', {}, el('td', { colspan: 6, class: 'muted', text: sel.length ? 'No device has these labels.' : 'No devices yet. Add one with `outpost devices add`.' })));
      return;
    }
    swap(tbody, devs.map((d) => {
      const sp = d.spool;
      const spool = sp ? [sp.points + ' points', el('br'), el('span', { class: 'muted', text: fmtBytes(sp.bytes) + (sp.dropped ? ', ' + sp.dropped + ' dropped' : '') })] : el('span', { class: 'muted', text: '—' });
      return el('tr', { dataset: { device: d.id } },
        el('th', { scope: 'row' }, el('a', { href: '#/devices/' + enc(d.id), text: d.id, dataset: { key: 'dev:' + d.id } })),
        el('td', {}, badge(d.online ? 'online' : 'offline', d.online ? 'ok' : 'bad')),
        el('td', { title: d.last_seen || '' , text: ago(d.last_seen) }),
        el('td', {}, labelChips(d.labels)),
        el('td', { text: d.agent_version || '—' }),
        el('td', { class: 'num' }, spool));
    }));
  };
  const selector = () => {
    try { const sel = parseSelector(fleetFilter); filterErr.textContent = ''; return sel; } catch (e) { filterErr.textContent = e.message; return null; }
  };
  const query = (sel) => sel.map((s) => 'label=' + enc(s)).join('&');
  // refresh is the polling fallback: one GET /api/v1/devices.
  const refresh = async () => {
    const sel = selector();
    if (!sel) return;
    const q = query(sel);
    let r;
    try { r = await api('GET', '/api/v1/devices' + (q ? '?' + q : '')); } catch (e) {
      if (e.status === 400) { filterErr.textContent = e.describe(); return; }
      throw e;
    }
    show(r, sel);
  };
  // Live updates: the hub sends the whole list at once and whenever it
  // changes. EventSource cannot send headers, so the token goes in the
  // query (the hub accepts that on its event streams only). On any error
  // (expired token, a proxy that buffers, the hub restarting) the page
  // falls back to polling for as long as it stays open.
  const mine = generation;
  let stream = null;
  let polling = false;
  const closeStream = () => { if (stream) { stream.close(); stream = null; } };
  stoppers.push(closeStream);
  const fallBack = () => {
    closeStream();
    if (polling || mine !== generation) return;
    polling = true;
    hint.textContent = 'Live updates unavailable; refreshed every 2 seconds.';
    poll(refresh);
  };
  const connect = () => {
    closeStream();
    const sel = selector();
    if (!sel) return;
    if (!window.EventSource) { fallBack(); return; }
    const q = query(sel);
    const es = new EventSource('/api/v1/events/devices?' + (q ? q + '&' : '') + 'access_token=' + enc(token() || ''));
    stream = es;
    es.addEventListener('devices', (ev) => {
      if (es !== stream) return;
      let r;
      try { r = JSON.parse(ev.data); } catch (e) { fallBack(); return; }
      show(r, sel);
      setStatus('');
      hint.textContent = 'Live: updated as devices change.';
    });
    es.addEventListener('error', () => { if (es === stream) fallBack(); });
  };
  const ager = setInterval(() => { if (last && !polling) show(last.r, last.sel); }, 5000);
  stoppers.push(() => clearInterval(ager));
  let debounce = null;
  stoppers.push(() => clearTimeout(debounce));
  input.addEventListener('input', () => {
    fleetFilter = input.value.trim();
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      if (polling) refresh().catch((e) => setStatus(e.message));
      else connect();
    }, 300);
  });
  swap(view(),
    el('h1', { text: 'Fleet' }),
    counts,
    el('form', { class: 'field', role: 'search', onsubmit: (ev) => ev.preventDefault() },
      el('label', { for: 'label-filter', text: 'Filter by labels' }), input,
      el('p', { class: 'hint', id: 'filter-hint', text: 'key=value pairs separated by spaces or commas; a device must have all of them.' }),
      filterErr),
    el('div', { class: 'table-wrap' }, table),
    hint);
  connect();
}

// ---------- device ----------

// Telemetry of the device page: points by sensor, fetched incrementally.
function newSeries() { return { bySensor: new Map(), seen: new Set(), last: null, nonNumeric: new Map() }; }

async function loadTelemetry(id, series) {
  for (let page = 0; page < 10; page++) {
    const since = series.last ? series.last : new Date(Date.now() - HOUR_MS).toISOString();
    const r = await api('GET', '/api/v1/devices/' + enc(id) + '/telemetry?limit=10000&since=' + enc(since));
    const pts = r.points || [];
    for (const p of pts) {
      const k = p.seq + '|' + p.sensor + '|' + p.ts;
      if (series.seen.has(k)) continue;
      series.seen.add(k);
      let v = p.value;
      if (typeof v === 'boolean') v = v ? 1 : 0;
      if (typeof v !== 'number') { series.nonNumeric.set(p.sensor, v); continue; }
      if (!series.bySensor.has(p.sensor)) series.bySensor.set(p.sensor, []);
      series.bySensor.get(p.sensor).push({ t: new Date(p.ts).getTime(), v });
      if (!series.last || p.ts > series.last) series.last = p.ts;
    }
    if (pts.length < 10000) break;
  }
  const cutoff = Date.now() - HOUR_MS;
  for (const [s, arr] of series.bySensor) {
    arr.sort((a, b) => a.t - b.t);
    let i = 0;
    while (i < arr.length && arr[i].t < cutoff) i++;
    if (i) series.bySensor.set(s, arr.slice(i));
  }
  if (series.seen.size > 200000) series.seen.clear();
}

function fmtNum(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
  return String(Math.round(v * 1000) / 1000);
}

// drawChart draws one sensor's last hour as a line on a canvas and records
// the number of points drawn in data-points.
function drawChart(canvas, pts) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 320;
  const h = canvas.clientHeight || 180;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const padL = 52, padR = 8, padT = 8, padB = 22;
  const now = Date.now();
  const t0 = now - HOUR_MS;
  let lo = Infinity, hi = -Infinity;
  for (const p of pts) { if (p.v < lo) lo = p.v; if (p.v > hi) hi = p.v; }
  if (!pts.length) { lo = 0; hi = 1; }
  if (lo === hi) { lo -= 1; hi += 1; }
  const x = (t) => padL + ((t - t0) / HOUR_MS) * (w - padL - padR);
  const y = (v) => padT + (1 - (v - lo) / (hi - lo)) * (h - padT - padB);
  ctx.font = '11px system-ui, sans-serif';
  ctx.fillStyle = '#4d5560';
  ctx.strokeStyle = '#d7dbe2';
  ctx.lineWidth = 1;
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'right';
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(padL, yy); ctx.lineTo(w - padR, yy); ctx.stroke();
    ctx.fillText(fmtNum(v), padL - 4, yy);
  }
  ctx.textBaseline = 'top';
  ctx.textAlign = 'center';
  for (const m of [60, 45, 30, 15, 0]) {
    ctx.fillText(m ? '-' + m + ' min' : 'now', Math.min(Math.max(x(now - m * 60000), padL + 16), w - padR - 14), h - padB + 6);
  }
  if (pts.length) {
    ctx.strokeStyle = '#0b57d0';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    pts.forEach((p, i) => { const xx = x(Math.max(p.t, t0)), yy = y(p.v); if (i) ctx.lineTo(xx, yy); else ctx.moveTo(xx, yy); });
    ctx.stroke();
    if (pts.length === 1) { ctx.fillStyle = '#0b57d0'; ctx.fillRect(x(pts[0].t) - 2, y(pts[0].v) - 2, 4, 4); }
  }
  canvas.dataset.points = String(pts.length);
}

function renderDevice(id) {
  document.title = id + ' · Outpost';
  const details = el('div', { class: 'panel', id: 'device-details' }, el('p', { class: 'muted', text: 'Loading…' }));
  const charts = el('div', { class: 'charts', id: 'charts' });
  const chartNote = el('p', { class: 'hint' });
  const shadowBox = el('div', { class: 'shadow', id: 'shadow' });
  const shadowMeta = el('p', { class: 'hint' });
  const workloads = el('section', { 'aria-labelledby': 'wl-title', hidden: true }, el('h2', { id: 'wl-title', text: 'Workloads' }));
  const wlBody = el('div', { class: 'table-wrap' });
  workloads.append(wlBody);
  const ota = el('section', { id: 'ota-history', 'aria-labelledby': 'ota-title', hidden: true }, el('h2', { id: 'ota-title', text: 'OTA history' }));
  const otaBody = el('div', { class: 'table-wrap' });
  ota.append(otaBody);
  const figures = new Map();
  const series = newSeries();

  // Desired-state editor; never rebuilt by the refresh.
  const ta = el('textarea', { id: 'desired-patch', rows: 6, spellcheck: 'false', 'aria-describedby': 'patch-hint patch-result', placeholder: '{"log": {"level": "debug"}}' });
  const result = el('p', { id: 'patch-result', role: 'alert' });
  const apply = el('button', { type: 'submit', text: 'Apply patch' });
  const editor = el('form', { class: 'panel', id: 'patch-form' },
    el('label', { for: 'desired-patch', text: 'Desired state patch (JSON merge patch)' }), ta,
    el('p', { class: 'hint', id: 'patch-hint', text: 'Objects merge, null deletes a key, other values replace. The device is sent the new delta.' }),
    result, el('div', { class: 'actions' }, apply));

  let lastShadow = null;
  const showShadow = (doc) => {
    lastShadow = doc;
    const st = (doc && doc.state) || {};
    const col = (title, key, v) => el('section', { 'aria-labelledby': 'sh-' + key },
      el('h3', { id: 'sh-' + key, text: title }), el('pre', { id: 'shadow-' + key, tabindex: 0, text: pretty(v) }));
    swap(shadowBox, col('Desired', 'desired', st.desired), col('Reported', 'reported', st.reported), col('Delta', 'delta', st.delta));
    shadowMeta.textContent = doc ? 'Version ' + doc.version + (doc.timestamp ? ', updated ' + fmtTime(new Date(doc.timestamp * 1000).toISOString()) : '') : 'No shadow yet: a patch creates it.';
  };

  editor.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    result.className = 'error';
    result.textContent = '';
    let patch;
    try { patch = JSON.parse(ta.value); } catch (e) { result.textContent = 'Not valid JSON: ' + e.message; ta.focus(); return; }
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) { result.textContent = 'The patch must be a JSON object.'; ta.focus(); return; }
    apply.disabled = true;
    try {
      const doc = await api('PATCH', '/api/v1/devices/' + enc(id) + '/shadow', ta.value, 'application/merge-patch+json');
      showShadow(doc);
      result.className = 'ok-msg';
      result.textContent = 'Applied: shadow version ' + doc.version + '.';
    } catch (e) {
      if (e.status !== 401) result.textContent = 'The hub refused the patch: ' + e.describe();
    } finally {
      apply.disabled = false;
    }
  });

  const showDetails = (d) => {
    const sp = d.spool;
    const row = (k, ...v) => [el('dt', { text: k }), el('dd', {}, ...v)];
    swap(details, el('dl', { class: 'details' },
      row('Status', badge(d.online ? 'online' : 'offline', d.online ? 'ok' : 'bad')),
      row('Last seen', el('span', { title: d.last_seen || '', text: d.last_seen ? ago(d.last_seen) + ' (' + fmtTime(d.last_seen) + ')' : 'never' })),
      row('Joined', d.joined ? 'yes' : 'not yet'),
      row('Created', fmtTime(d.created_at)),
      row('Agent version', d.agent_version || '—'),
      row('Labels', labelChips(d.labels)),
      row('Spool backlog', sp ? sp.points + ' points, ' + fmtBytes(sp.bytes) + ', ' + sp.dropped + ' dropped' + (sp.oldest ? ', oldest ' + ago(sp.oldest) : '') + ' (reported ' + ago(sp.reported_at) + ')' : '—')));
  };

  const showCharts = () => {
    const sensors = [...series.bySensor.keys()].sort();
    for (const s of sensors) {
      if (figures.has(s)) continue;
      const canvas = el('canvas', { role: 'img', dataset: { sensor: s, points: '0' } });
      const cap = el('figcaption');
      figures.set(s, { fig: el('figure', {}, cap, canvas), canvas, cap });
    }
    const order = sensors.map((s) => figures.get(s).fig);
    if (order.length !== charts.children.length || order.some((f, i) => charts.children[i] !== f)) charts.replaceChildren(...order);
    for (const s of sensors) {
      const f = figures.get(s);
      const pts = series.bySensor.get(s);
      const last = pts.length ? pts[pts.length - 1].v : undefined;
      f.cap.textContent = s + (last !== undefined ? ': ' + fmtNum(last) : '');
      f.canvas.setAttribute('aria-label', s + ', last hour, ' + pts.length + ' points' + (last !== undefined ? ', latest ' + fmtNum(last) : ''));
      drawChart(f.canvas, pts);
    }
    const other = [...series.nonNumeric.entries()].map(([k, v]) => k + ' = ' + JSON.stringify(v));
    chartNote.textContent = (sensors.length ? '' : 'No numeric telemetry in the last hour. ') + (other.length ? 'Non-numeric sensors (latest): ' + other.join(', ') : '');
  };

  const showWorkloads = (doc) => {
    const st = (doc && doc.state) || {};
    const want = (st.desired && st.desired.workloads) || {};
    const have = (st.reported && st.reported.workloads) || {};
    const names = [...new Set([...Object.keys(want), ...Object.keys(have)])].sort();
    workloads.hidden = !doc;
    if (!names.length) { swap(wlBody, el('p', { class: 'muted', text: 'No workloads.' })); return; }
    swap(wlBody, el('table', {},
      el('thead', {}, el('tr', {}, ...['Service', 'Desired revision', 'Reported revision', 'Version', 'State', 'Healthy', 'Restarts', 'Error'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, names.map((n) => {
        const w = want[n] || {}, r = have[n] || {};
        return el('tr', {},
          el('th', { scope: 'row', text: n }),
          el('td', { text: w.revision || '—' }),
          el('td', { text: r.revision || '—' }),
          el('td', { text: r.version || '—' }),
          el('td', {}, r.state ? badge(r.state, stateKind(r.state)) : '—'),
          el('td', { text: r.healthy === undefined ? '—' : r.healthy ? 'yes' : 'no' }),
          el('td', { class: 'num', text: r.restarts === undefined ? '—' : r.restarts }),
          el('td', { text: r.error || '' }));
      }))));
  };

  // showOTA lists the rollouts' job executions for this device, newest
  // rollout first; the section stays hidden when there are none.
  const showOTA = (rows) => {
    ota.hidden = !rows.length;
    ota.dataset.loaded = 'true';
    if (!rows.length) { otaBody.replaceChildren(); return; }
    swap(otaBody, el('table', { id: 'ota' },
      el('caption', { text: 'Rollouts that targeted this device, newest first' }),
      el('thead', {}, el('tr', {}, ...['Rollout', 'Artifact', 'Wave', 'Status', 'Stage', 'Reason'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows.map(({ ro, wave, ex }) => {
        const art = ro.artifact || {};
        const d = ex.status_details || {};
        const reason = [d.reason, d.message].filter((x) => x).join(': ');
        return el('tr', { dataset: { rollout: ro.id } },
          el('th', { scope: 'row' }, el('a', { href: '#/rollouts', text: ro.id }), ' ', badge(ro.status, stateKind(ro.status))),
          el('td', { text: (art.name || '?') + '@' + (art.version || '?') }),
          el('td', { class: 'num', text: wave }),
          el('td', {}, badge(ex.status || '?', otaKind(ex.status))),
          el('td', { text: d.stage || '—' }),
          el('td', { text: reason || '—' }));
      }))));
  };
  // loadOTA derives the history from the 20 newest rollouts (the API has
  // no per-device listing; only GET /rollouts/{id} carries executions).
  const loadOTA = async () => {
    let list;
    try { list = await api('GET', '/api/v1/rollouts'); } catch (e) { if (e.status === 404) return []; throw e; }
    const full = await Promise.all((list.rollouts || []).slice(0, 20).map((ro) => api('GET', '/api/v1/rollouts/' + enc(ro.id)).catch(() => ro)));
    const rows = [];
    for (const ro of full) {
      for (const ws of ro.wave_states || []) {
        for (const ex of ws.executions || []) if (ex.device === id) rows.push({ ro, wave: ws.wave, ex });
      }
    }
    return rows;
  };
  let otaAt = 0;

  const orNull = (p) => p.catch((e) => { if (e.status === 404) return null; throw e; });
  const mine = generation;
  let missing = false;
  const refresh = async () => {
    if (missing) return;
    const base = '/api/v1/devices/' + enc(id);
    let d;
    try { d = await api('GET', base); } catch (e) {
      if (e.status === 404 && mine === generation) { missing = true; swap(view(), el('h1', { text: id }), el('p', { class: 'error', text: 'No device with this id.' }), el('a', { href: '#/', text: 'Back to the fleet' })); return; }
      throw e;
    }
    showDetails(d);
    const [sh, wl] = await Promise.all([
      orNull(api('GET', base + '/shadow')),
      orNull(api('GET', base + '/shadow?name=workloads')),
      loadTelemetry(id, series),
    ]);
    if (!lastShadow || !sh || sh.version !== lastShadow.version) showShadow(sh);
    showWorkloads(wl);
    showCharts();
    if (Date.now() - otaAt >= 10000) {
      otaAt = Date.now();
      const rows = await loadOTA();
      if (mine === generation) showOTA(rows);
    }
  };

  swap(view(),
    el('p', {}, el('a', { href: '#/', text: '← Fleet' })),
    el('h1', { text: 'Device ' + id }),
    details,
    el('section', { 'aria-labelledby': 'tel-title' }, el('h2', { id: 'tel-title', text: 'Telemetry, last hour' }), charts, chartNote),
    el('section', { 'aria-labelledby': 'sh-title' }, el('h2', { id: 'sh-title', text: 'Shadow' }), shadowMeta, shadowBox, editor),
    workloads,
    ota,
    el('p', { class: 'hint', text: 'Refreshed every 2 seconds; OTA history every 10 seconds.' }));
  showShadow(null);
  poll(refresh);
}

// ---------- rollouts ----------

function renderRollouts() {
  document.title = 'Rollouts · Outpost';
  const list = el('div', { id: 'rollouts' });
  const errors = new Map(); // rollout id → last action error, kept across refreshes
  const refresh = async () => {
    const r = await api('GET', '/api/v1/rollouts');
    const ros = (r.rollouts || []).slice(0, 20);
    const full = await Promise.all(ros.map((ro) => api('GET', '/api/v1/rollouts/' + enc(ro.id)).catch(() => ro)));
    if (!full.length) { swap(list, el('p', { class: 'muted', text: 'No rollouts. Start one with `outpost rollout create`.' })); return; }
    swap(list, full.map((ro) => rolloutCard(ro, errors, refresh)));
  };
  swap(view(), el('h1', { text: 'Rollouts' }), list,
    el('p', { class: 'hint', text: 'The 20 newest rollouts, refreshed every 2 seconds.' }));
  poll(refresh);
}

function rolloutCard(ro, errors, refresh) {
  const art = ro.artifact || {};
  const states = ro.wave_states || [];
  const failed = states.reduce((n, w) => n + ((w.counts && w.counts.failed) || 0), 0);
  const waves = (ro.waves || []).map((label, i) => {
    const ws = states[i];
    const bounds = ro.wave_bounds || [];
    const c = { devices: (bounds[i] || 0) - (bounds[i - 1] || 0), succeeded: 0, failed: 0, canceled: 0, pending: 0, ...((ws && ws.counts) || {}) };
    const done = (c.succeeded || 0) + (c.failed || 0) + (c.canceled || 0);
    const cur = ro.wave === i + 1 && (ro.status === 'running' || ro.status === 'paused');
    const text = ws && ws.started ? c.succeeded + ' of ' + c.devices + ' succeeded, ' + c.failed + ' failed, ' + c.pending + ' pending' + (c.canceled ? ', ' + c.canceled + ' canceled' : '') : 'not started (' + c.devices + ' devices)';
    const pid = 'p-' + ro.id + '-' + i;
    return el('div', { class: 'wave' + (cur ? ' current' : '') },
      el('span', { id: pid, text: 'Wave ' + (i + 1) + ' (' + label + ')' + (cur ? ' · current' : '') }),
      el('progress', { max: Math.max(c.devices, 1), value: done, 'aria-labelledby': pid, 'aria-describedby': pid + '-t' }),
      el('span', { id: pid + '-t', text }));
  });
  const msg = el('p', { class: 'error', role: 'alert', text: errors.get(ro.id) || '' });
  const act = (verb, cls) => el('button', {
    type: 'button', class: cls, text: verb[0].toUpperCase() + verb.slice(1), dataset: { key: verb + ':' + ro.id },
    onclick: async (ev) => {
      if (verb === 'abort' && !window.confirm('Abort rollout ' + ro.id + '? Devices not yet updated keep their version.')) return;
      ev.target.disabled = true;
      errors.delete(ro.id);
      try { await api('POST', '/api/v1/rollouts/' + enc(ro.id) + '/' + verb, { reason: 'from the dashboard' }); } catch (e) { if (e.status !== 401) errors.set(ro.id, verb + ' failed: ' + e.describe()); }
      await refresh().catch(() => {});
    },
  });
  const buttons = [];
  if (ro.status === 'running') buttons.push(act('pause', 'secondary'));
  if (ro.status === 'paused') buttons.push(act('resume'));
  if (ro.status === 'running' || ro.status === 'paused') buttons.push(act('abort', 'danger'));
  const sel = Object.entries(ro.selector || {}).map(([k, v]) => k + '=' + v).join(', ') || 'all devices';
  return el('article', { class: 'panel', 'aria-labelledby': 'ro-' + ro.id, dataset: { rollout: ro.id } },
    el('h2', { id: 'ro-' + ro.id }, ro.id + ' ', badge(ro.status, stateKind(ro.status))),
    el('p', {}, (art.name || '?') + '@' + (art.version || '?') + ' · ' + ro.devices + ' devices (' + sel + ') · ' + failed + ' failed · created ' + fmtTime(ro.created_at)),
    ro.reason ? el('p', { class: 'muted', text: 'Reason: ' + ro.reason }) : null,
    waves, msg,
    buttons.length ? el('div', { class: 'actions' }, buttons) : null);
}

// ---------- deployments and services ----------

function renderDeployments() {
  document.title = 'Deployments · Outpost';
  const deps = el('div', { id: 'deployments' });
  const svcs = el('div', { id: 'services' });
  const refresh = async () => {
    const [dl, sl] = await Promise.all([api('GET', '/api/v1/deployments'), api('GET', '/api/v1/services')]);
    const dfull = await Promise.all((dl.deployments || []).map((d) => api('GET', '/api/v1/deployments/' + enc(d.name)).catch(() => d)));
    const sfull = await Promise.all((sl.services || []).map((s) => api('GET', '/api/v1/services/' + enc(s.name) + '?all=true').then((r) => ({ ...s, list: r.instances || [] })).catch(() => ({ ...s, list: [] }))));
    swap(deps, dfull.length ? dfull.map(deploymentCard) : el('p', { class: 'muted', text: 'No deployments. Create one with `outpost deploy apply`.' }));
    swap(svcs, sfull.length ? sfull.map(serviceCard) : el('p', { class: 'muted', text: 'No registered services.' }));
  };
  swap(view(), el('h1', { text: 'Deployments & services' }),
    el('section', { 'aria-labelledby': 'dep-title' }, el('h2', { id: 'dep-title', text: 'Deployments' }), deps),
    el('section', { 'aria-labelledby': 'svc-title' }, el('h2', { id: 'svc-title', text: 'Service registry' }), svcs),
    el('p', { class: 'hint', text: 'Refreshed every 2 seconds.' }));
  poll(refresh);
}

function deploymentCard(d) {
  const rows = (d.devices || []).map((s) => el('tr', {},
    el('th', { scope: 'row' }, el('a', { href: '#/devices/' + enc(s.device), text: s.device })),
    el('td', {}, badge(s.online ? 'online' : 'offline', s.online ? 'ok' : 'bad')),
    el('td', { text: (s.reported_revision || '—') + (s.revision && s.reported_revision !== s.revision ? ' → ' + s.revision : '') }),
    el('td', { text: s.version || '—' }),
    el('td', {}, s.state ? badge(s.state, stateKind(s.state)) : '—'),
    el('td', { text: s.healthy ? 'yes' : 'no' }),
    el('td', { class: 'num', text: s.restarts || 0 }),
    el('td', { text: s.error || '' })));
  return el('article', { class: 'panel', dataset: { deployment: d.name } },
    el('h3', {}, d.name + ' ', badge(d.state || '?', stateKind(d.state))),
    el('p', {}, 'Artifact ' + (d.artifact || '?') + ', revision ' + (d.revision || '?') + ' · ' + (d.updated || 0) + ' of ' + (Array.isArray(d.devices) ? d.devices.length : d.devices || 0) + ' devices updated' + (d.message ? ' · ' + d.message : '')),
    rows.length ? el('div', { class: 'table-wrap' }, el('table', {},
      el('thead', {}, el('tr', {}, ...['Device', 'Status', 'Revision', 'Version', 'State', 'Healthy', 'Restarts', 'Error'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows))) : el('p', { class: 'muted', text: 'No device selected.' }));
}

function serviceCard(s) {
  const rows = s.list.map((i) => el('tr', {},
    el('th', { scope: 'row', text: i.id }),
    el('td', { text: i.address + ':' + i.port }),
    el('td', {}, badge(i.health, stateKind(i.health))),
    el('td', { text: i.source + (i.device ? ' (' + i.device + ')' : '') }),
    el('td', {}, (i.tags || []).map((t) => el('span', { class: 'chip', text: t }))),
    el('td', { text: i.output || '' })));
  return el('article', { class: 'panel', dataset: { service: s.name } },
    el('h3', { text: s.name + ' · ' + s.passing + ' of ' + s.instances + ' passing' }),
    el('div', { class: 'table-wrap' }, el('table', {},
      el('thead', {}, el('tr', {}, ...['Instance', 'Address', 'Health', 'Source', 'Tags', 'Output'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows))));
}

// ---------- start ----------

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('logout').addEventListener('click', () => signOut(''));
  window.addEventListener('hashchange', route);
  route();
});
