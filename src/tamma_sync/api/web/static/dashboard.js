// The tamma-sync dashboard script. The page arrives rendered (or as an empty shell when the
// server has no data for it); this keeps it current: instance changes stream in over SSE,
// everything else is polled while the tab is visible.
//
// The stream is read with fetch() instead of EventSource because EventSource cannot send
// headers, and an API key must travel as `Authorization: Bearer …`, never in a URL.
// Each builder below is the twin of a macro in dashboard.html; keep the two in step.

const POLL_MS = 5000;
const MAX_ROWS = 50;
const RECENT_INSTANCES = 20;
const KEY_STORAGE = 'tamma-sync.apiKey';
const RETRY_MS = 2000; // until the server sends its own `retry:`
const MAX_RETRY_MS = 30000;
const STALL_MS = 60000; // nothing, not even a heartbeat (every 15 s by default): reconnect
const KEY_NEEDED = 'Needs an API key (see above).';
const LIVE_TEXT = { live: 'live', connecting: 'connecting…', offline: 'offline, retrying', key: 'API key needed' };

const $ = (id) => document.getElementById(id);
const skew = document.body.dataset.now ? Number(document.body.dataset.now) - Date.now() : 0;
let lastEventId = document.body.dataset.seq ?? null;
let needsKey = false;
const keyWaiters = [];
let stream = null;
let polling = false;
let pollTimer = 0;
const rendered = {};

/** The API refused the key: `scope` is empty for a missing or unknown key (401), else the
 *  sentence that names the scope it lacks (403). */
class Refused extends Error {
  constructor(scope) {
    super('refused');
    this.scope = scope;
  }
}

async function refusal(response) {
  if (response.status === 401) return new Refused('');
  const body = await response.json().catch(() => ({}));
  return new Refused(`The saved API key may not read this dashboard: it lacks the ${body.required ?? 'needed'} scope.`);
}

const refused = (response) => response.status === 401 || response.status === 403;

// ---- Builders: the macros of dashboard.html, in JavaScript -----------------------------

/** An element; strings become text nodes, so data is never parsed as HTML. */
function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (name === 'class') element.className = value;
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) element.append(child);
  }
  return element;
}

const now = () => Date.now() + skew;

function ago(ms) {
  const seconds = Math.max(0, Math.floor((now() - ms) / 1000));
  if (seconds < 5) return 'just now';
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['min', 60]]) {
    if (seconds >= size) return `${Math.floor(seconds / size)} ${unit} ago`;
  }
  return `${seconds} s ago`;
}

function when(ms) {
  const date = new Date(ms);
  return h('time', { datetime: date.toISOString(), 'data-ms': ms, title: date.toLocaleString() }, ago(ms));
}

const show = (value) => (typeof value === 'string' ? value : JSON.stringify(value));
const badge = (text) => h('span', { class: 'badge', 'data-s': text }, text);
const chip = (text, n) => h('span', { class: 'badge', 'data-s': text }, text, ' ', h('b', {}, n));
const chips = (counts) =>
  h('span', { class: 'chips' },
    Object.entries(counts.bySubStatus).filter(([, n]) => n).map(([name, n]) => chip(name, n)),
    counts.untyped ? chip('other', counts.untyped) : null);

function tiles(summary) {
  const failing = summary.sync.filter((s) => s.phase === 'error').length;
  const tile = (label, value, extra = null, cls = 'tile') =>
    h('div', { class: cls }, h('span', { class: 'label' }, label), h('span', { class: 'value' }, value), extra);
  const counts = summary.instances;
  return [
    tile('Definitions', summary.workflowDefinitions),
    tile('Instances', counts.total, chips(counts)),
    tile('Running', counts.byStatus.Running),
    tile('Finished', counts.byStatus.Finished),
    tile('Engines online', `${summary.engines.online} / ${summary.engineCount}`),
    tile('Sync sources', summary.sync.length,
      failing ? h('span', { class: 'note' }, `${failing} failing`) : null, failing ? 'tile bad' : 'tile'),
  ];
}

const syncBanner = (s) =>
  h('div', { class: 'banner error', role: 'alert', 'data-id': s.sourceId },
    h('strong', {}, `Sync of ${s.sourceId} is failing`),
    h('span', { class: 'error-text' }, s.lastError || 'no error text recorded'),
    s.lastErrorAt ? h('span', { class: 'muted' }, 'at ', when(s.lastErrorAt)) : null);

const source = (s) =>
  h('li', { class: 'card', 'data-id': s.sourceId },
    h('div', { class: 'row' },
      h('strong', { class: 'name' }, s.sourceId),
      s.tenantId ? h('span', { class: 'muted' }, `tenant ${s.tenantId}`) : null,
      badge(s.phase)),
    h('div', { class: 'meta' },
      s.url ? h('span', { class: 'mono' }, s.url) : null,
      s.elsaVersion ? h('span', {}, `ELSA ${s.elsaVersion}`) : null,
      h('span', {}, `${s.counts.definitions} definitions`),
      h('span', {}, `${s.counts.instances} instances`)),
    h('div', { class: 'meta' },
      s.lastSuccessAt ? h('span', {}, 'synced ', when(s.lastSuccessAt)) : h('span', {}, 'never synced'),
      s.lastCycleMs !== undefined ? h('span', {}, `cycle ${s.lastCycleMs} ms`) : null),
    s.lastError
      ? h('p', { class: 'error-text' }, s.lastError,
        s.lastErrorAt ? [' ', h('span', { class: 'muted' }, '(', when(s.lastErrorAt), ')')] : null)
      : null,
    s.rejections && s.rejections.length ? rejections(s.rejections) : null);

// Rows the sync set aside (retried later): the newest few, each with its reason.
const rejections = (list) =>
  h('details', { class: 'rejections' },
    h('summary', {}, `${list.length} ${list.length === 1 ? 'row' : 'rows'} set aside, retried later`),
    h('ul', {}, list.slice(-5).reverse().map((r) =>
      h('li', {}, h('span', { class: 'mono' }, r.id), ' ', h('span', { class: 'error-text' }, r.reason)))));

// An ELSA source whose last cycle failed: the sync saw it just now, ELSA did not answer.
const failing = (e) => e.kind === 'elsa' && e.state === 'error';

function lastSeen(e) {
  if (!failing(e)) return h('span', {}, 'last seen ', when(e.lastHeartbeatAt));
  return e.stats.lastSuccessAt ? h('span', {}, 'synced ', when(e.stats.lastSuccessAt)) : h('span', {}, 'never synced');
}

const engine = (e) =>
  h('li', { class: 'card', 'data-id': e.id },
    h('div', { class: 'row' }, h('strong', { class: 'name' }, e.name || e.id), badge(e.state || 'unknown')),
    h('div', { class: 'meta' },
      h('span', { class: 'liveness', 'data-online': e.online }, e.online ? 'online' : failing(e) ? 'failing' : 'offline'),
      lastSeen(e)),
    h('div', { class: 'meta' },
      h('span', { class: 'mono' }, e.id),
      e.kind ? h('span', {}, e.kind) : null,
      e.version ? h('span', {}, `v${e.version}`) : null),
    e.stats.lastError ? h('p', { class: 'error-text' }, show(e.stats.lastError)) : null,
    Object.keys(e.stats).length
      ? h('details', { class: 'stats' }, h('summary', {}, 'Stats'), h('dl', {},
        Object.entries(e.stats).filter(([, value]) => value !== null).map(([key, value]) =>
          h('div', {}, h('dt', {}, key),
            h('dd', {}, key.endsWith('At') && typeof value === 'number' ? when(value) : show(value))))))
      : null);

const definition = (d) =>
  h('li', { class: 'item', 'data-id': d.id },
    h('div', { class: 'row' },
      h('strong', { class: 'name' }, d.name),
      d.version !== undefined ? h('span', { class: 'muted' }, `v${d.version}`) : null,
      h('span', { class: 'count' }, `${d.instanceCount} instances`)),
    h('div', { class: 'meta' },
      h('span', { class: 'mono' }, d.id),
      h('span', {}, `${d.counts.byStatus.Running} running`),
      h('span', {}, `${d.counts.byStatus.Finished} finished`)),
    chips(d.counts));

const instance = (i, deleted = false) =>
  h('li', { class: deleted ? 'item deleted' : 'item', 'data-id': i.id, 'data-revision': i.revision },
    h('div', { class: 'row' },
      badge(deleted ? 'deleted' : i.subStatus || i.status || 'unknown'),
      h('code', { class: 'name', title: i.id }, i.id),
      when(i.updatedAt)),
    h('div', { class: 'meta' },
      h('span', { class: 'mono' }, i.definitionId),
      i.currentActivity ? h('span', { class: 'activity' }, i.currentActivity) : null));

const event = (ev) =>
  h('li', { class: 'item' },
    h('div', { class: 'row' },
      h('strong', { class: 'name' }, ev.type),
      h('span', { class: 'mono' }, ev.engineId),
      ev.issueNumber !== undefined ? h('span', {}, `#${ev.issueNumber}`) : null,
      when(ev.timestamp)),
    Object.keys(ev.data).length
      ? h('div', { class: 'meta mono' }, Object.entries(ev.data).map(([key, value]) => h('span', {}, `${key}: ${show(value)}`)))
      : null);

// ---- Rendering ------------------------------------------------------------------------

/** Replace a list's items, unless they are what it shows already (keeps open <details>). */
function fill(id, items, build) {
  const text = JSON.stringify(items);
  if (rendered[id] !== text) {
    rendered[id] = text;
    const list = $(id);
    const open = new Set([...list.querySelectorAll('details[open]')].map((d) => d.closest('[data-id]').dataset.id));
    list.replaceChildren(...items.map(build));
    for (const details of list.querySelectorAll('details')) {
      details.open = open.has(details.closest('[data-id]').dataset.id);
    }
  }
  $(`${id}-empty`).hidden = items.length > 0;
}

function render({ summary, engines, workflows, sources }) {
  $('tiles').replaceChildren(...tiles(summary));
  $('sync-banners').replaceChildren(...sources.filter((s) => s.phase === 'error').map(syncBanner));
  fill('sources', sources, source);
  fill('engines', engines, engine);
  fill('workflows', workflows, definition);
  fill('events', summary.recentEvents, event);
  const updated = $('updated');
  updated.dataset.ms = now();
  updated.dateTime = new Date(now()).toISOString();
  refreshTimes();
}

function refreshTimes() {
  for (const time of document.querySelectorAll('time[data-ms]')) {
    const ms = Number(time.dataset.ms);
    time.textContent = ago(ms);
    time.title = new Date(ms).toLocaleString();
  }
}

/** Put an instance on the live list: a newer revision replaces its row, an older is ignored. */
function upsertInstance(item, { live, deleted = false }) {
  const list = $('instances');
  list.querySelector('.placeholder')?.remove();
  const old = [...list.children].find((row) => row.dataset.id === item.id);
  if (old && Number(old.dataset.revision) >= item.revision) return;
  old?.remove();
  const row = instance(item, deleted);
  if (live) {
    row.classList.add('fresh');
    list.prepend(row);
  } else {
    list.append(row);
  }
  while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
  $('instances-empty').hidden = true;
}

function showApiError(error) {
  const banner = $('api-error');
  banner.hidden = !error;
  if (error) banner.textContent = `Cannot reach the API (${error.message}). Showing the last data received; retrying.`;
}

function setLive(state) {
  const badge = $('live');
  badge.dataset.state = state;
  badge.textContent = LIVE_TEXT[state];
}

// ---- API key --------------------------------------------------------------------------

function authHeaders(headers) {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

/** What the panels that never got data say: "Loading…", or that they wait for a key. */
function placeholders(text) {
  for (const placeholder of document.querySelectorAll('.placeholder')) placeholder.textContent = text;
}

function askForKey({ scope }) {
  needsKey = true;
  clearTimeout(pollTimer);
  setLive('key');
  placeholders(KEY_NEEDED);
  const form = $('key-form');
  form.hidden = false;
  form.classList.add('alert');
  $('key-message').hidden = Boolean(scope);
  $('key-scope').hidden = !scope;
  $('key-scope').textContent = scope;
  $('key-input').focus();
}

function keyChanged() {
  needsKey = false;
  placeholders('Loading…');
  const form = $('key-form');
  form.hidden = true;
  form.classList.remove('alert');
  $('key-message').hidden = true;
  $('key-scope').hidden = true;
  for (const wake of keyWaiters.splice(0)) wake();
  stream?.abort(); // reconnect with the new key
  poll();
}

// ---- Polling --------------------------------------------------------------------------

// 'no-cache': always asks the server, but sends back the ETag of what the browser holds, so
// an unchanged list of workflows comes back as an empty 304 instead of the whole body.
async function getJSON(path) {
  const response = await fetch(path, { headers: authHeaders({ Accept: 'application/json' }), cache: 'no-cache' });
  if (refused(response)) throw await refusal(response);
  if (!response.ok) throw new Error(`${path} answered HTTP ${response.status}`);
  return response.json();
}

async function poll() {
  clearTimeout(pollTimer);
  if (document.hidden || needsKey || polling) return;
  polling = true;
  try {
    const [summary, engines, workflows, sync] = await Promise.all(
      ['api/dashboard/summary', 'api/engines', 'api/dashboard/workflows?compact=true', 'api/sync/status'].map(getJSON));
    render({ summary, engines, workflows, sources: sync.sources });
    showApiError(null);
  } catch (error) {
    if (error instanceof Refused) askForKey(error);
    else showApiError(error);
  } finally {
    polling = false;
    if (!document.hidden && !needsKey) pollTimer = setTimeout(poll, POLL_MS);
  }
}

async function loadInstances() {
  try {
    const page = await getJSON(`api/workflows/instances?orderBy=updatedAt&pageSize=${RECENT_INSTANCES}&includeTotal=false`);
    for (const item of page.data) upsertInstance(item, { live: false });
    $('instances').querySelector('.placeholder')?.remove();
    $('instances-empty').hidden = $('instances').children.length > 0;
  } catch (error) {
    if (error instanceof Refused) askForKey(error);
    else showApiError(error);
  }
}

// ---- The live stream ------------------------------------------------------------------

/**
 * Read Server-Sent Events from a response body: `data:` lines joined by "\n", `event:`,
 * `id:` (committed when its event is dispatched), `retry:`, and `:comment` lines.
 */
async function readEvents(body, { onEvent, onComment, onRetry, onChunk }) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let type = '';
  let data = [];
  let id = lastEventId;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onChunk();
    buffer += value;
    const end = buffer.endsWith('\r') ? buffer.length - 1 : buffer.length; // "\r\n" may straddle chunks
    const lines = buffer.slice(0, end).split(/\r\n|\r|\n/);
    buffer = lines.pop() + buffer.slice(end);
    for (const line of lines) {
      if (line === '') {
        lastEventId = id;
        if (data.length) onEvent(type || 'message', data.join('\n'));
        type = '';
        data = [];
      } else if (line.startsWith(':')) {
        onComment(line.slice(1).trim());
      } else {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') data.push(value);
        else if (field === 'event') type = value;
        else if (field === 'id' && !value.includes('\0')) id = value;
        else if (field === 'retry' && /^\d+$/.test(value)) onRetry(Number(value));
      }
    }
  }
}

function onEvent(type, text) {
  // The server could not resume from our position (history purged, or an id it never
  // gave): what changed meanwhile is unknown, so load the list again.
  if (type === 'reset') loadInstances();
  if (type !== 'instance') return;
  const change = JSON.parse(text);
  if (change.op === 'delete') {
    upsertInstance({ ...change.data, revision: change.revision, updatedAt: change.at }, { live: true, deleted: true });
  } else {
    upsertInstance({ ...change.data, revision: change.revision }, { live: true });
  }
}

/** A fresh stream (no Last-Event-ID) says `: connected` once it is subscribed: from then on
 *  nothing is missed, so that is when the shell loads the list it starts from. */
function onComment(text) {
  if (text === 'connected') loadInstances();
}

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/** Follow `/api/events` for good: reconnect with Last-Event-ID whenever the stream ends. */
async function follow() {
  let failures = 0;
  let retryMs = RETRY_MS;
  for (;;) {
    if (needsKey) await new Promise((resolve) => keyWaiters.push(resolve));
    const controller = new AbortController();
    stream = controller;
    let stall = 0;
    const alive = () => {
      clearTimeout(stall);
      stall = setTimeout(() => controller.abort(), STALL_MS);
    };
    try {
      const headers = { Accept: 'text/event-stream' };
      if (lastEventId !== null) headers['Last-Event-ID'] = lastEventId;
      const response = await fetch('api/events?entity=instance', {
        headers: authHeaders(headers), cache: 'no-store', signal: controller.signal,
      });
      if (refused(response)) {
        askForKey(await refusal(response));
        continue;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      setLive('live');
      failures = 0;
      alive();
      await readEvents(response.body, {
        onEvent, onComment, onRetry: (ms) => { retryMs = ms; }, onChunk: alive,
      });
    } catch {
      if (!controller.signal.aborted) failures += 1;
    } finally {
      clearTimeout(stall);
    }
    if (controller.signal.aborted) continue; // a new key, or a stalled stream: at once
    setLive(failures > 2 ? 'offline' : 'connecting');
    await sleep(Math.min(MAX_RETRY_MS, retryMs * 2 ** failures));
  }
}

// ---- Start ----------------------------------------------------------------------------

$('key-button').hidden = false;
$('key-button').addEventListener('click', () => { $('key-form').hidden = !$('key-form').hidden; });
$('key-input').value = localStorage.getItem(KEY_STORAGE) ?? '';
$('key-form').addEventListener('submit', (submit) => {
  submit.preventDefault();
  const key = $('key-input').value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  keyChanged();
});
$('key-forget').addEventListener('click', () => {
  localStorage.removeItem(KEY_STORAGE);
  $('key-input').value = '';
  keyChanged();
});
document.addEventListener('visibilitychange', () => {
  if (document.hidden) clearTimeout(pollTimer);
  else poll();
});

refreshTimes();
setLive('connecting');
if (document.body.dataset.seq === undefined) poll();
else pollTimer = setTimeout(poll, POLL_MS);
follow();
