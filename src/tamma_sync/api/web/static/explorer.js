// The instances explorer. Its filters are the list endpoint's own query parameters, kept in
// the page's URL, so a view can be bookmarked, shared and reloaded; pages follow the API's
// keyset cursor ("More"); rows that change while the page is open are updated live.

import {
  $, badge, failed, follow, getJSON, h, refreshTimes, setLive, setUpKeyForm, showApiError, when,
} from './common.js';

/** Every filter the page offers: the API's parameter names. */
const FILTERS = [
  'definitionId', 'status', 'subStatus', 'currentActivity', 'statusText', 'sourceId',
  'correlationId', 'idPrefix', 'createdSince', 'createdBefore', 'updatedSince', 'updatedBefore', 'orderBy', 'orderDirection',
  'pageSize',
];
/** Filters holding epoch milliseconds, which the form shows as local date and time. */
const TIMES = new Set(['createdSince', 'createdBefore', 'updatedSince', 'updatedBefore']);
/** What the page shows when the URL says nothing: the most recently changed first. */
const DEFAULTS = { orderBy: 'updatedAt', orderDirection: 'desc' };

const form = $('filters');
const position = { id: null };
let filters = {};
let nextCursor = null;
let total = null;
let loading = 0;

// ---- Filters: URL ⇄ form --------------------------------------------------------------

function fromUrl() {
  const params = new URLSearchParams(window.location.search);
  const found = {};
  for (const name of FILTERS) {
    const value = params.getAll(name).join(',').trim();
    if (value) found[name] = value;
  }
  return found;
}

const pad = (n) => String(n).padStart(2, '0');

/** Epoch ms as the value of a datetime-local input (the browser's time zone). */
function localInput(ms) {
  const d = new Date(Number(ms));
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function toForm(values) {
  for (const element of form.elements) {
    if (!element.name) continue;
    const value = values[element.name] ?? DEFAULTS[element.name] ?? '';
    if (element.type === 'checkbox') element.checked = value.split(',').includes(element.value);
    else element.value = TIMES.has(element.name) && value ? localInput(value) : value;
  }
  // The less used filters stay folded, unless one of them is in use.
  const more = $('more-filters');
  more.open = [...more.querySelectorAll('[name]')].some((element) => element.name in values);
}

function fromForm() {
  const values = {};
  for (const element of form.elements) {
    if (!element.name || (element.type === 'checkbox' && !element.checked)) continue;
    let value = element.value.trim();
    if (TIMES.has(element.name) && value) value = String(new Date(value).getTime());
    if (!value || value === DEFAULTS[element.name]) continue;
    values[element.name] = values[element.name] ? `${values[element.name]},${value}` : value;
  }
  if (filters.pageSize) values.pageSize = filters.pageSize; // not in the form: kept from the URL
  return values;
}

function apiQuery(cursor) {
  const params = new URLSearchParams({ ...DEFAULTS, ...filters });
  params.set('includeTotal', cursor ? 'false' : 'true');
  if (cursor) params.set('cursor', cursor);
  return params.toString();
}

// ---- Rows -----------------------------------------------------------------------------

const link = (id) => h('a', { class: 'name mono', href: `instance?id=${encodeURIComponent(id)}` }, id);

const row = (i, deleted = false) =>
  h('li', { class: deleted ? 'item deleted' : 'item', 'data-id': i.id, 'data-revision': i.revision },
    h('div', { class: 'row' },
      badge(deleted ? 'deleted' : i.subStatus || i.status || 'unknown'),
      link(i.id),
      when(filters.orderBy === 'createdAt' ? i.createdAt : i.updatedAt)),
    h('div', { class: 'meta' },
      h('a', { class: 'mono', href: `definition?id=${encodeURIComponent(i.definitionId)}` }, i.definitionId),
      i.currentActivity ? h('span', { class: 'activity' }, i.currentActivity) : null,
      i.sourceId ? h('span', {}, `from ${i.sourceId}`) : null,
      i.correlationId ? h('span', { class: 'mono' }, `correlation ${i.correlationId}`) : null,
      h('span', {}, 'created ', when(i.createdAt))));

function showCount() {
  const shown = $('results').querySelectorAll('li[data-id]').length;
  $('count').textContent = total === null ? '' : `${total.toLocaleString()} match · ${shown.toLocaleString()} shown`;
  $('results-empty').hidden = shown > 0;
  $('more').hidden = nextCursor === null;
}

async function load() {
  const mine = ++loading;
  try {
    const page = await getJSON(`api/workflows/instances?${apiQuery(null)}`);
    if (mine !== loading) return; // filters changed meanwhile
    total = page.total;
    nextCursor = page.nextCursor ?? null;
    $('results').replaceChildren(...page.data.map((i) => row(i)));
    showCount();
    showApiError(null);
  } catch (error) {
    failed(error);
  }
}

async function more() {
  if (nextCursor === null) return;
  try {
    const page = await getJSON(`api/workflows/instances?${apiQuery(nextCursor)}`);
    const shown = new Set([...$('results').children].map((li) => li.dataset.id));
    $('results').append(...page.data.filter((i) => !shown.has(i.id)).map((i) => row(i)));
    nextCursor = page.nextCursor ?? null;
    showCount();
  } catch (error) {
    failed(error);
  }
}

// ---- Live rows ------------------------------------------------------------------------

/** The filters the stream cannot apply, checked here (it applies definition and status). */
function matches(i) {
  const f = filters;
  if (f.currentActivity && i.currentActivity !== f.currentActivity) return false;
  if (f.statusText && i.status !== f.statusText) return false;
  if (f.sourceId && i.sourceId !== f.sourceId) return false;
  if (f.correlationId && i.correlationId !== f.correlationId) return false;
  if (f.idPrefix && !i.id.startsWith(f.idPrefix)) return false;
  if (f.createdSince && i.createdAt < Number(f.createdSince)) return false;
  if (f.createdBefore && i.createdAt >= Number(f.createdBefore)) return false;
  if (f.updatedSince && i.updatedAt < Number(f.updatedSince)) return false;
  if (f.updatedBefore && i.updatedAt >= Number(f.updatedBefore)) return false;
  return true;
}

function onEvent(type, text) {
  if (type === 'reset') load();
  if (type !== 'instance') return;
  const change = JSON.parse(text);
  const item = { ...change.data, revision: change.revision };
  const list = $('results');
  const old = [...list.children].find((li) => li.dataset.id === item.id);
  if (old && Number(old.dataset.revision) >= item.revision) return;
  const deleted = change.op === 'delete';
  if (!old && (deleted || !matches(item))) return;
  const fresh = row(item, deleted);
  fresh.classList.add('fresh');
  if (old) old.replaceWith(fresh);
  else {
    list.querySelector('.placeholder')?.remove();
    list.prepend(fresh);
    if (total !== null) total += 1; // it matches now, and was not shown: one more match
  }
  showCount();
}

/** A fresh stream (no Last-Event-ID) says `: connected` once it is subscribed: from then
 *  on nothing is missed, so that is when the list loads. */
function onComment(text) {
  if (text === 'connected') load();
}

let reconnect = () => {};

function streamPath() {
  const params = new URLSearchParams({ entity: 'instance' });
  for (const name of ['definitionId', 'status', 'subStatus']) if (filters[name]) params.set(name, filters[name]);
  return `api/events?${params}`;
}

async function fillDefinitions() {
  try {
    const definitions = await getJSON('api/workflows/definitions');
    const select = form.elements.definitionId;
    const chosen = filters.definitionId ?? '';
    const ids = new Set(definitions.map((d) => d.id));
    if (chosen && !ids.has(chosen)) definitions.push({ id: chosen, name: chosen });
    select.replaceChildren(h('option', { value: '' }, 'any'),
      ...definitions.map((d) => h('option', { value: d.id }, d.name && d.name !== d.id ? `${d.name} (${d.id})` : d.id)));
    select.value = chosen;
  } catch (error) {
    failed(error);
  }
}

/** Apply `values`: into the URL (a new history entry when asked), the form, the list, the stream. */
function apply(values, { push }) {
  filters = values;
  const query = new URLSearchParams(values).toString();
  if (push) window.history.pushState(null, '', query ? `?${query}` : window.location.pathname);
  toForm(values);
  position.id = null; // a new stream: its `connected` loads the list
  reconnect();
}

// ---- Start ----------------------------------------------------------------------------

setUpKeyForm({ onChange: () => { fillDefinitions(); reconnect(); } });
form.addEventListener('submit', (submit) => {
  submit.preventDefault();
  apply(fromForm(), { push: true });
});
$('clear').addEventListener('click', () => apply({}, { push: true }));
$('more').addEventListener('click', more);
window.addEventListener('popstate', () => apply(fromUrl(), { push: false }));
setInterval(refreshTimes, 10000);

filters = fromUrl();
toForm(filters);
fillDefinitions();
setLive('connecting');
reconnect = follow(() => streamPath(), position, { onEvent, onComment });
