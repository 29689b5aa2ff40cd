// The tamma-sync dashboard script. The page arrives rendered (or as an empty shell when the
// server has no data for it); this keeps it current: instance changes stream in over SSE,
// everything else is polled while the tab is visible (common.js holds what every page shares).
// Each builder below is the twin of a macro in dashboard.html; keep the two in step.

import {
  $, act, badge, failed, follow, getJSON, h, heldScopes, needsKey, now, refreshTimes, setLive,
  setUpKeyForm, show, showApiError, when,
} from './common.js';
import { trendChart } from './trends.js';

const POLL_MS = 5000;
const MAX_ROWS = 50;
const RECENT_INSTANCES = 20;

const position = { id: document.body.dataset.seq ?? null };
let polling = false;
let pollTimer = 0;
const rendered = {};

// ---- Builders: the macros of dashboard.html, in JavaScript -----------------------------

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
      h('a', { class: 'name', href: `definition?id=${encodeURIComponent(d.id)}` }, h('strong', {}, d.name)),
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
      h('a', { class: 'name', href: `instance?id=${encodeURIComponent(i.id)}` }, h('code', { title: i.id }, i.id)),
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

/** Offer "Sync now" to a key that may start syncs, while there is a source to sync. */
async function offerSyncNow(sources) {
  $('sync-now').hidden = !(sources.length && (await heldScopes()).has('sync:write'));
}

async function syncNow() {
  if (!window.confirm('Start a sync cycle of every ELSA source now?')) return;
  const { status, body } = await act('POST', 'api/sync/trigger');
  $('sync-now-result').textContent = status === 202
    ? `started: ${body.triggered.join(', ')}`
    : `not started: ${body.error ?? `HTTP ${status}`}`;
  poll();
}

function render({ summary, engines, workflows, sources }) {
  offerSyncNow(sources);
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

// ---- Polling --------------------------------------------------------------------------

async function poll() {
  clearTimeout(pollTimer);
  if (document.hidden || needsKey() || polling) return;
  polling = true;
  try {
    const [summary, engines, workflows, sync] = await Promise.all(
      ['api/dashboard/summary', 'api/engines', 'api/dashboard/workflows?compact=true', 'api/sync/status'].map(getJSON));
    await refreshTrends();
    render({ summary, engines, workflows, sources: sync.sources });
    showApiError(null);
  } catch (error) {
    failed(error);
  } finally {
    polling = false;
    if (!document.hidden && !needsKey()) pollTimer = setTimeout(poll, POLL_MS);
  }
}

async function loadInstances() {
  try {
    const page = await getJSON(`api/workflows/instances?orderBy=updatedAt&pageSize=${RECENT_INSTANCES}&includeTotal=false`);
    for (const item of page.data) upsertInstance(item, { live: false });
    $('instances').querySelector('.placeholder')?.remove();
    $('instances-empty').hidden = $('instances').children.length > 0;
  } catch (error) {
    failed(error);
  }
}

// ---- The live stream ------------------------------------------------------------------

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

// ---- Start ----------------------------------------------------------------------------

let reconnect = () => {};
setUpKeyForm({
  onAsk: () => clearTimeout(pollTimer),
  onChange: () => {
    reconnect(); // with the new key
    poll();
  },
});
$('sync-now').addEventListener('click', syncNow);
document.addEventListener('visibilitychange', () => {
  if (document.hidden) clearTimeout(pollTimer);
  else poll();
});

const refreshTrends = trendChart($('trends'));
refreshTimes();
offerSyncNow([...document.querySelectorAll('#sources > li[data-id]')]);
setLive('connecting');
if (document.body.dataset.seq === undefined) poll();
else {
  pollTimer = setTimeout(poll, POLL_MS);
  refreshTrends().catch(failed);
}
reconnect = follow('api/events?entity=instance', position, { onEvent, onComment });
