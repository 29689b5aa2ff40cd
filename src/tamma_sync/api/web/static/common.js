// What every tamma-sync page's script shares: building elements, times, the API key, API
// calls, and following a Server-Sent Events stream.
//
// Streams are read with fetch() instead of EventSource because EventSource cannot send
// headers, and an API key must travel as `Authorization: Bearer …`, never in a URL.

export const KEY_NEEDED = 'Needs an API key (see above).';
const KEY_STORAGE = 'tamma-sync.apiKey';
const RETRY_MS = 2000; // until the server sends its own `retry:`
const MAX_RETRY_MS = 30000;
const STALL_MS = 60000; // nothing, not even a heartbeat (every 15 s by default): reconnect
const LIVE_TEXT = {
  live: 'live', connecting: 'connecting…', offline: 'offline, retrying', key: 'API key needed', ended: 'ended',
};

export const $ = (id) => document.getElementById(id);
const skew = document.body.dataset.now ? Number(document.body.dataset.now) - Date.now() : 0;
export const now = () => Date.now() + skew;

/** The API refused the key: `scope` is empty for a missing or unknown key (401), else the
 *  sentence that names the scope it lacks (403). */
export class Refused extends Error {
  constructor(scope) {
    super('refused');
    this.scope = scope;
  }
}

export async function refusal(response) {
  if (response.status === 401) return new Refused('');
  const body = await response.json().catch(() => ({}));
  return new Refused(`The saved API key may not read this page: it lacks the ${body.required ?? 'needed'} scope.`);
}

export const refused = (response) => response.status === 401 || response.status === 403;

// ---- Elements and times ---------------------------------------------------------------

/** An element; strings become text nodes, so data is never parsed as HTML. */
export function h(tag, attrs, ...children) {
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

export function ago(ms) {
  const seconds = Math.max(0, Math.floor((now() - ms) / 1000));
  if (seconds < 5) return 'just now';
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['min', 60]]) {
    if (seconds >= size) return `${Math.floor(seconds / size)} ${unit} ago`;
  }
  return `${seconds} s ago`;
}

/** A duration in words: "850 ms", "42 s", "3 min 5 s", "2 h 10 min", "4 d 3 h". */
export function duration(ms) {
  if (ms < 1000) return `${ms} ms`;
  const seconds = Math.floor(ms / 1000);
  const parts = [['d', 86400], ['h', 3600], ['min', 60], ['s', 1]]
    .map(([unit, size], index, all) => [unit, Math.floor((seconds % (all[index - 1]?.[1] ?? Infinity)) / size)])
    .filter(([, n]) => n > 0);
  return parts.slice(0, 2).map(([unit, n]) => `${n} ${unit}`).join(' ');
}

export function when(ms) {
  const date = new Date(ms);
  return h('time', { datetime: date.toISOString(), 'data-ms': ms, title: date.toLocaleString() }, ago(ms));
}

export function refreshTimes() {
  for (const time of document.querySelectorAll('time[data-ms]')) {
    const ms = Number(time.dataset.ms);
    time.textContent = ago(ms);
    time.title = new Date(ms).toLocaleString();
  }
}

export const show = (value) => (typeof value === 'string' ? value : JSON.stringify(value));
export const badge = (text) => h('span', { class: 'badge', 'data-s': text }, text);

export function setLive(state) {
  const live = $('live');
  live.dataset.state = state;
  live.textContent = LIVE_TEXT[state];
}

export function showApiError(error) {
  const banner = $('api-error');
  banner.hidden = !error;
  if (error) banner.textContent = `Cannot reach the API (${error.message}). Showing the last data received; retrying.`;
}

// ---- API key --------------------------------------------------------------------------

const key = { needed: false, waiters: [], onAsk: () => {}, onChange: () => {} };

export const needsKey = () => key.needed;

function authHeaders(headers) {
  const saved = localStorage.getItem(KEY_STORAGE);
  return saved ? { ...headers, Authorization: `Bearer ${saved}` } : headers;
}

/** What the panels that never got data say: "Loading…", or that they wait for a key. */
function placeholders(text) {
  for (const placeholder of document.querySelectorAll('.placeholder')) placeholder.textContent = text;
}

export function askForKey({ scope }) {
  key.needed = true;
  key.onAsk();
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
  key.needed = false;
  scopes = null;
  placeholders('Loading…');
  const form = $('key-form');
  form.hidden = true;
  form.classList.remove('alert');
  $('key-message').hidden = true;
  $('key-scope').hidden = true;
  for (const wake of key.waiters.splice(0)) wake();
  key.onChange();
}

/** Wire the header's key button and form; `onAsk` runs when the API refuses the key,
 *  `onChange` once the user saved or forgot one. */
export function setUpKeyForm({ onAsk = () => {}, onChange = () => {} } = {}) {
  Object.assign(key, { onAsk, onChange });
  $('key-button').hidden = false;
  $('key-button').addEventListener('click', () => { $('key-form').hidden = !$('key-form').hidden; });
  $('key-input').value = localStorage.getItem(KEY_STORAGE) ?? '';
  $('key-form').addEventListener('submit', (submit) => {
    submit.preventDefault();
    const value = $('key-input').value.trim();
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
    keyChanged();
  });
  $('key-forget').addEventListener('click', () => {
    localStorage.removeItem(KEY_STORAGE);
    $('key-input').value = '';
    keyChanged();
  });
}

// ---- API calls ------------------------------------------------------------------------

/** The API's answer to `path` (a 404 as `null` when `missing` says so); throws `Refused`
 *  for a key the API refused. 'no-cache': always asks the server, but sends back the ETag
 *  of what the browser holds, so an unchanged body comes back as an empty 304. */
export async function getJSON(path, { missing = false } = {}) {
  const response = await fetch(path, { headers: authHeaders({ Accept: 'application/json' }), cache: 'no-cache' });
  if (refused(response)) throw await refusal(response);
  if (missing && response.status === 404) return null;
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error ? `${body.error} (HTTP ${response.status})` : `${path} answered HTTP ${response.status}`);
  }
  return response.json();
}

/** The scopes the saved key holds (every scope on an open server), asked once a page;
 *  an empty set when it cannot be told, so that no action is offered. */
let scopes = null;
export async function heldScopes() {
  scopes ??= getJSON('api/access').then((access) => new Set(access.scopes), () => new Set());
  return scopes;
}

/** An action (`method` on `path`, no body): what the server answered, `{status, body}`. */
export async function act(method, path) {
  const response = await fetch(path, { method, headers: authHeaders({ Accept: 'application/json' }) });
  const body = await response.json().catch(() => ({}));
  return { status: response.status, body };
}

/** A failed call's error shown where it belongs: the key form, or the API error banner. */
export function failed(error) {
  if (error instanceof Refused) askForKey(error);
  else showApiError(error);
}

// ---- Streams --------------------------------------------------------------------------

/**
 * Read Server-Sent Events from a response body: `data:` lines joined by "\n", `event:`,
 * `id:` (committed to `position.id` when its event is dispatched), `retry:`, and
 * `:comment` lines.
 */
async function readEvents(body, position, { onEvent, onComment, onRetry, onChunk }) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let type = '';
  let data = [];
  let id = position.id;
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
        position.id = id;
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

export const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/**
 * Follow the stream at `path` (a function of none: asked again on each connection),
 * reconnecting with Last-Event-ID (`position.id`) whenever it ends, until the server answers
 * 204 (nothing more will come) or `onEvent` returns 'end'.
 * Returns a function that reconnects at once (a new key).
 */
export function follow(path, position, { onEvent, onComment = () => {} }) {
  let current = null;
  (async () => {
    let failures = 0;
    let retryMs = RETRY_MS;
    for (;;) {
      if (key.needed) await new Promise((resolve) => key.waiters.push(resolve));
      const controller = new AbortController();
      current = controller;
      let stall = 0;
      let ended = false;
      const alive = () => {
        clearTimeout(stall);
        stall = setTimeout(() => controller.abort(), STALL_MS);
      };
      // A resumed stream is live from its headers: the server replays from its log what
      // came meanwhile. A fresh one only from its first chunk (`: connected`, an
      // instance's first state), which the server sends once it has subscribed.
      const resumed = position.id !== null && position.id !== undefined;
      if (!resumed) setLive('connecting');
      let live = false;
      const arrived = () => {
        if (!live) setLive('live');
        live = true;
        alive();
      };
      try {
        const headers = { Accept: 'text/event-stream' };
        if (resumed) headers['Last-Event-ID'] = position.id;
        const url = typeof path === 'function' ? path() : path;
        const response = await fetch(url, { headers: authHeaders(headers), cache: 'no-store', signal: controller.signal });
        if (refused(response)) {
          askForKey(await refusal(response));
          continue;
        }
        if (response.status === 204) ended = true;
        else {
          if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
          failures = 0;
          if (resumed) arrived();
          else alive();
          await readEvents(response.body, position, {
            onEvent: (type, text) => { if (onEvent(type, text) === 'end') ended = true; },
            onComment,
            onRetry: (ms) => { retryMs = ms; },
            onChunk: arrived,
          });
        }
      } catch {
        if (!controller.signal.aborted) failures += 1;
      } finally {
        clearTimeout(stall);
      }
      if (ended) {
        setLive('ended');
        return;
      }
      if (controller.signal.aborted) continue; // a new key, or a stalled stream: at once
      setLive(failures > 2 ? 'offline' : 'connecting');
      await sleep(Math.min(MAX_RETRY_MS, retryMs * 2 ** failures));
    }
  })();
  return () => current?.abort();
}
