// One workflow definition: its instances by status, and a map of its activities where the
// designer placed them, joined by its flowchart's connections, each with the running instances at it now (GET …/activities),
// each count linking to the explorer filtered to those instances. Polled while visible.

import {
  $, badge, failed, getJSON, h, needsKey, setLive, setUpKeyForm, showApiError,
} from './common.js';
import { trendChart } from './trends.js';

const POLL_MS = 5000;
const SVG = 'http://www.w3.org/2000/svg';
/** An activity's box when the designer left no size, and the gap around the drawing. */
const BOX = { width: 200, height: 50 };
const PAD = 24;

const id = new URLSearchParams(window.location.search).get('id') ?? '';
const base = `api/workflows/definitions/${encodeURIComponent(id)}`;
let pollTimer = 0;
const refreshTrends = trendChart($('trends'), { definitionId: id });

function svg(tag, attrs, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  for (const child of children.flat()) if (child !== null && child !== undefined) element.append(child);
  return element;
}

/** The explorer, showing the definition's running instances at `activityId`. */
const waitingAt = (activityId) =>
  `instances?${new URLSearchParams({ definitionId: id, status: 'Running', currentActivity: activityId })}`;

/** Where each activity goes: the designer's position and size, else a row below the rest. */
function placed(activities) {
  const positioned = activities.map((a) => ({ a, at: a.metadata?.designer?.position, size: a.metadata?.designer?.size }));
  const bottom = Math.max(0, ...positioned.filter((p) => p.at).map((p) => p.at.y + (p.size?.height ?? BOX.height)));
  let column = 0;
  return positioned.map(({ a, at, size }) => {
    const box = { width: size?.width || BOX.width, height: size?.height || BOX.height };
    if (at) return { a, x: at.x, y: at.y, ...box };
    const spot = { a, x: column * (BOX.width + PAD), y: bottom + PAD * 2, ...box };
    column += 1;
    return spot;
  });
}

/** The activity at one end of a connection: ELSA 3.1+ writes `{activity, port}`, 3.0 the id. */
const end = (connection, side) =>
  typeof connection[side] === 'string' ? connection[side] : connection[side]?.activity;

/** An arrow from the source's right edge to the target's left edge, middle to middle. */
function arrows(connections, boxes) {
  const at = new Map(boxes.map((b) => [b.a.id, b]));
  return connections.flatMap((c) => {
    const from = at.get(end(c, 'source'));
    const to = at.get(end(c, 'target'));
    if (!from || !to) return [];
    return [svg('line', {
      x1: from.x + from.width, y1: from.y + from.height / 2, x2: to.x, y2: to.y + to.height / 2,
      class: 'edge', 'marker-end': 'url(#arrowhead)', 'data-source': from.a.id, 'data-target': to.a.id,
    })];
  });
}

function flowchart(activities, connections, waiting) {
  if (!activities.length) return h('p', { class: 'empty' }, 'The definition lists no activities.');
  const boxes = placed(activities);
  const minX = Math.min(...boxes.map((b) => b.x)) - PAD;
  const minY = Math.min(...boxes.map((b) => b.y)) - PAD;
  const width = Math.max(...boxes.map((b) => b.x + b.width)) + PAD - minX;
  const height = Math.max(...boxes.map((b) => b.y + b.height)) + PAD - minY;
  return svg('svg', { viewBox: `${minX} ${minY} ${width} ${height}`, role: 'img', 'aria-label': 'Activities and the running instances at each' },
    svg('defs', {}, svg('marker', { id: 'arrowhead', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' },
      svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }))),
    arrows(connections, boxes),
    boxes.map(({ a, x, y, width: w, height: hgt }) => {
      const count = waiting.get(a.id)?.running ?? 0;
      const label = a.name && a.name !== a.id ? `${a.id} (${a.name})` : a.id;
      const node = svg('g', { class: count ? 'node busy' : 'node', 'data-activity': a.id },
        svg('title', {}, `${label} · ${a.type ?? ''} · ${count} running here`),
        svg('rect', { x, y, width: w, height: hgt, rx: 8 }),
        svg('text', { x: x + 10, y: y + 20, class: 'label' }, a.id),
        svg('text', { x: x + 10, y: y + hgt - 10, class: 'type' }, (a.type ?? '').split('.').at(-1)));
      if (!count) return node;
      node.append(svg('circle', { cx: x + w, cy: y, r: 16, class: 'count' }),
        svg('text', { x: x + w, y: y + 5, class: 'count', 'text-anchor': 'middle' }, String(count)));
      return svg('a', { href: waitingAt(a.id), 'aria-label': `${count} running at ${a.id}` }, node);
    }));
}

function activityRows(activities, waiting) {
  const known = new Set(activities.map((a) => a.id));
  const rows = activities.map((a) => [a.id, a.type ?? '', waiting.get(a.id)?.running ?? 0]);
  // Activities instances are at that the definition no longer lists (an older version's).
  for (const [activityId, w] of waiting) if (!known.has(activityId)) rows.push([activityId, 'not in this version', w.running]);
  return rows.map(([activityId, type, count]) =>
    h('tr', { 'data-activity': activityId },
      h('td', {}, h('code', {}, activityId)),
      h('td', { class: 'muted' }, type),
      h('td', {}, count ? h('a', { href: waitingAt(activityId) }, String(count)) : '0')));
}

function render(definition, listed, waiting) {
  $('definition-name').textContent = definition?.name || id;
  $('definition-version').textContent = definition?.version !== undefined ? `v${definition.version}` : '';
  $('gone').hidden = Boolean(definition);
  $('gone').textContent = 'No definition with this id is mirrored here.';
  $('definition-meta').replaceChildren(
    h('span', { class: 'mono' }, id),
    definition?.sourceId ? h('span', {}, `from ${definition.sourceId}`) : null,
    definition?.isPublished === false ? badge('draft') : null,
    h('a', { href: `instances?${new URLSearchParams({ definitionId: id })}` }, 'all its instances'));
  const counts = listed?.counts;
  $('counts').replaceChildren(...(counts
    ? Object.entries(counts.bySubStatus).filter(([, n]) => n).map(([name, n]) =>
      h('a', { class: 'badge', 'data-s': name, href: `instances?${new URLSearchParams({ definitionId: id, subStatus: name })}` }, name, ' ', h('b', {}, n)))
    : [h('span', { class: 'muted' }, 'No instances.')]));
  const byActivity = new Map((waiting?.activities ?? []).map((w) => [w.activityId, w]));
  const activities = definition?.activities ?? [];
  $('flow').replaceChildren(flowchart(activities, definition?.connections ?? [], byActivity));
  $('activities').tBodies[0].replaceChildren(...activityRows(activities, byActivity));
  $('running').textContent = waiting
    ? `${waiting.running} running${waiting.withoutActivity ? `, ${waiting.withoutActivity} at no activity` : ''}`
    : '';
  document.title = `${definition?.name || id} · tamma-sync`;
}

async function load() {
  clearTimeout(pollTimer);
  if (document.hidden || needsKey()) return;
  try {
    const [definition, all, waiting] = await Promise.all([
      getJSON(base, { missing: true }),
      getJSON('api/dashboard/workflows?compact=true'),
      getJSON(`${base}/activities`, { missing: true }),
      refreshTrends(),
    ]);
    render(definition, all.find((d) => d.id === id), waiting);
    setLive('live');
    showApiError(null);
  } catch (error) {
    failed(error);
  } finally {
    if (!document.hidden && !needsKey()) pollTimer = setTimeout(load, POLL_MS);
  }
}

setUpKeyForm({ onAsk: () => clearTimeout(pollTimer), onChange: load });
document.addEventListener('visibilitychange', load);
setLive('connecting');
load();
