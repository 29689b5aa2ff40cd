// One instance: every mirrored field, its variables as a tree, the timeline of every
// change the mirror observed (GET …/history), kept current by the instance's own stream,
// and, for an instance from ELSA, its execution journal read from ELSA when asked.

import {
  $, act, badge, duration, failed, follow, getJSON, h, heldScopes, now, refreshTimes, setLive,
  setUpKeyForm, show, showApiError, when,
} from './common.js';

const id = new URLSearchParams(window.location.search).get('id') ?? '';
const base = `api/workflows/instances/${encodeURIComponent(id)}`;
/** Fields shown as times, and the order every field is listed in. */
const TIME_FIELDS = new Set(['createdAt', 'updatedAt', 'finishedAt']);
const FIELD_ORDER = [
  'id', 'definitionId', 'definitionVersion', 'definitionVersionId', 'status', 'subStatus',
  'currentActivity', 'incidentCount', 'correlationId', 'name', 'createdAt', 'updatedAt',
  'finishedAt', 'revision', 'sourceId', 'tenantId',
];
const ENDED = new Set(['Finished', 'Cancelled', 'Faulted']);
const position = { id: null };
let loading = 0;

// ---- Builders -------------------------------------------------------------------------

function fields(instance) {
  const names = [...FIELD_ORDER, ...Object.keys(instance).filter((k) => !FIELD_ORDER.includes(k) && k !== 'variables')];
  return names.filter((name) => instance[name] !== undefined && instance[name] !== null).map((name) =>
    h('div', { 'data-field': name },
      h('dt', {}, name),
      h('dd', {}, value(name, instance[name]))));
}

function value(name, v) {
  if (TIME_FIELDS.has(name)) return [when(v), ' ', h('span', { class: 'muted' }, new Date(v).toISOString())];
  if (name === 'definitionId') return h('a', { class: 'mono', href: `definition?id=${encodeURIComponent(v)}` }, v);
  return h('span', { class: 'mono' }, show(v));
}

/** A JSON value as nested lists; objects and arrays fold, the first two levels open. */
function tree(value, depth = 0) {
  if (value === null || typeof value !== 'object') return h('code', { class: 'leaf' }, show(value));
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
  if (!entries.length) return h('code', { class: 'leaf' }, Array.isArray(value) ? '[]' : '{}');
  return h('ul', {}, entries.map(([key, child]) => {
    const folds = child !== null && typeof child === 'object' && Object.keys(child).length > 0;
    if (!folds) return h('li', {}, h('span', { class: 'key' }, key), ': ', tree(child, depth + 1));
    const size = Array.isArray(child) ? `[${child.length}]` : `{${Object.keys(child).length}}`;
    const details = h('details', {}, h('summary', {}, h('span', { class: 'key' }, key), ' ', h('span', { class: 'muted' }, size)),
      tree(child, depth + 1));
    details.open = depth < 1;
    return h('li', {}, details);
  }));
}

const OPS = { create: 'first seen', update: 'changed', delete: 'deleted' };

function step(entry, index, entries) {
  const newest = index === entries.length - 1;
  const ended = ENDED.has(entry.subStatus) || entry.op === 'delete';
  let lasted = null;
  if (entry.durationMs !== undefined) lasted = `for ${duration(entry.durationMs)}`;
  else if (newest && !ended) lasted = `for ${duration(Math.max(0, now() - (entry.updatedAt ?? entry.observedAt)))} so far`;
  return h('li', { 'data-seq': entry.seq, 'data-op': entry.op },
    h('div', { class: 'row' },
      badge(entry.op === 'delete' ? 'deleted' : entry.subStatus || entry.status || 'unknown'),
      h('strong', {}, OPS[entry.op] ?? entry.op),
      lasted ? h('span', { class: 'lasted' }, lasted) : null,
      when(entry.updatedAt ?? entry.observedAt)),
    h('div', { class: 'meta' },
      entry.currentActivity ? h('span', { class: 'activity' }, entry.currentActivity) : null,
      entry.changed?.length ? h('span', {}, `changed: ${entry.changed.join(', ')}`) : null,
      h('span', {}, `revision ${entry.revision}`),
      entry.updatedAt !== undefined && entry.updatedAt !== entry.observedAt
        ? h('span', {}, 'observed ', when(entry.observedAt)) : null));
}

// ---- Loading --------------------------------------------------------------------------

/** The instance in Elsa Studio, where its source has a Studio URL configured; reading the
 *  sources needs dashboard:view, and a key without it just gets no link. */
async function showStudioLink(instance) {
  let source = null;
  try {
    source = (await getJSON('api/sync/status')).sources.find((s) => s.sourceId === instance.sourceId);
  } catch {
    return;
  }
  if (!source?.studioUrl) return;
  const link = $('studio');
  link.href = `${source.studioUrl.replace(/\/+$/, '')}/workflows/instances/${encodeURIComponent(instance.id)}/view`;
  link.hidden = false;
}

async function load() {
  const mine = ++loading;
  try {
    const [instance, history] = await Promise.all([
      getJSON(base, { missing: true }), getJSON(`${base}/history`, { missing: true })]);
    if (mine !== loading) return;
    render(instance, history);
    showApiError(null);
    return { instance, history };
  } catch (error) {
    failed(error);
    return null;
  }
}

/** Offer "Cancel" for a running instance, to a key that may manage workflows. */
async function offerCancel(instance) {
  const running = instance && !ENDED.has(instance.subStatus);
  $('cancel').hidden = !(running && (await heldScopes()).has('workflows:manage'));
}

async function cancel() {
  if (!window.confirm(`Cancel instance ${id}? An instance from ELSA is cancelled in ELSA.`)) return;
  const result = $('action-result');
  result.textContent = 'Cancelling…';
  const { status, body } = await act('POST', `${base}/cancel`);
  if (status === 200) result.textContent = body.message ?? 'Cancelled.';
  else if (status === 202) result.textContent = body.message ?? 'ELSA is cancelling it.';
  else result.textContent = `Not cancelled: ${body.error ?? `HTTP ${status}`}`;
  load();
}

function render(instance, history) {
  offerCancel(instance);
  const entries = history?.entries ?? [];
  const last = entries.at(-1);
  $('instance-id').textContent = id;
  const state = instance ? instance.subStatus || instance.status || 'unknown' : last ? 'deleted' : 'unknown';
  $('state').replaceChildren(badge(state));
  const gone = $('gone');
  gone.hidden = Boolean(instance);
  gone.textContent = last
    ? 'This instance is no longer mirrored (deleted); its history is kept as long as the change log keeps it.'
    : 'No instance with this id is mirrored here, and the change log holds nothing of it.';
  $('fields').replaceChildren(...(instance ? fields(instance) : last ? fields(last) : []));
  $('variables').replaceChildren(instance ? tree(instance.variables ?? {}) : h('p', { class: 'empty' }, 'Not mirrored.'));
  $('timeline').replaceChildren(...entries.map(step));
  if (!entries.length) $('timeline').append(h('li', { class: 'empty' }, 'Nothing observed of this instance is kept.'));
  $('kept').textContent = history
    ? `${entries.length} ${entries.length === 1 ? 'change' : 'changes'} observed${history.truncated ? ' (the newest; older ones are kept)' : ''} · history kept ${history.keptDays} days`
    : '';
  if (last) position.id = String(last.seq);
  document.title = `${id} · tamma-sync`;
}

// ---- Start ----------------------------------------------------------------------------

function onEvent(type) {
  if (type === 'state') load();
  if (type === 'end' || type === 'deleted') {
    load();
    return 'end';
  }
  return null;
}

// ---- The execution journal, from ELSA ------------------------------------------------

const JOURNAL_PAGE = 100;
const journal = { page: 0, shown: 0 };

function journalRow(entry) {
  return h('tr', { 'data-event': entry.event ?? '' },
    h('td', {}, String(entry.sequence ?? '')),
    h('td', {}, entry.at !== undefined ? when(entry.at) : ''),
    h('td', {}, entry.event ? badge(entry.event) : ''),
    h('td', {}, h('code', {}, entry.activityId ?? ''), entry.message ? h('div', { class: 'error-text' }, entry.message) : null),
    h('td', { class: 'muted' }, entry.activityType ?? ''));
}

async function readJournal() {
  $('journal-count').textContent = 'Reading…';
  try {
    const found = await getJSON(`${base}/journal?page=${journal.page}&pageSize=${JOURNAL_PAGE}`);
    $('journal').tBodies[0].append(...found.entries.map(journalRow));
    journal.page += 1;
    journal.shown += found.entries.length;
    $('journal').hidden = journal.shown === 0;
    $('journal-count').textContent = found.total
      ? `${journal.shown} of ${found.total} events`
      : 'ELSA holds no journal for this instance.';
    $('journal-more').hidden = journal.shown >= found.total || found.entries.length === 0;
    $('journal-load').hidden = true;
  } catch (error) {
    $('journal-count').textContent = '';
    failed(error);
  }
}

let reconnect = () => {};
let following = false;

/** Load the page; then follow the instance's stream from the newest change shown, which
 *  sends only what comes after it (nothing, for an instance that has ended). */
async function start() {
  const loaded = await load();
  if (!loaded) return; // refused or unreachable: the key form or the banner says so
  if (!loaded.instance) setLive('ended');
  else if (!following) {
    following = true;
    if (loaded.instance.sourceId) {
      showStudioLink(loaded.instance);
      $('journal-panel').hidden = false;
    }
    reconnect = follow(`${base}/events`, position, { onEvent });
  }
}

setUpKeyForm({ onChange: () => { reconnect(); start(); } });
$('cancel').addEventListener('click', cancel);
$('journal-load').addEventListener('click', readJournal);
$('journal-more').addEventListener('click', readJournal);
setInterval(refreshTimes, 10000);
setLive('connecting');
start();
