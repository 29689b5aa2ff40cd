// Trend charts: instances started, finished and faulted per interval over the last hour,
// day or week (GET api/workflows/trends), for all definitions or one. One bar strip per
// series on a shared scale; every bar names its interval and count (hover, screen readers).

import { failed, getJSON, h } from './common.js';

const SVG = 'http://www.w3.org/2000/svg';
const SERIES = [['started', 'Started'], ['finished', 'Finished'], ['faulted', 'Faulted']];
const WINDOWS = [['hour', 'Hour'], ['day', 'Day'], ['week', 'Week']];
const HEIGHT = 40;

function svg(tag, attrs, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, String(value));
  for (const child of children.flat()) if (child !== null && child !== undefined) element.append(child);
  return element;
}

const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const day = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });

function span(start, seconds, windowName) {
  const format = windowName === 'week' ? day : clock;
  return `${format.format(new Date(start))}–${clock.format(new Date(start + seconds * 1000))}`;
}

function strip(trend, kind, label, top) {
  const width = trend.intervals.length;
  // A bar for each interval that counted any (an empty one has nothing to point at).
  const bars = trend.intervals.flatMap((interval, index) => {
    const n = interval[kind];
    if (!n) return [];
    const tall = Math.max(2, (n / top) * HEIGHT);
    return [svg('rect', { x: index + 0.1, y: HEIGHT - tall, width: 0.8, height: tall, class: `bar ${kind}` },
      svg('title', {}, `${span(interval.start, trend.intervalSeconds, trend.window)}: ${n} ${kind}`))];
  });
  return h('div', { class: 'trend-row', 'data-series': kind },
    h('span', { class: 'trend-label' }, label, ' ', h('b', {}, String(trend[kind]))),
    svg('svg', { viewBox: `0 0 ${width} ${HEIGHT}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': `${label}: ${trend[kind]} in the last ${trend.window}` },
      svg('line', { x1: 0, y1: HEIGHT - 0.25, x2: width, y2: HEIGHT - 0.25, class: 'axis' }), bars));
}

/** A chart in `container`, for `definitionId` (null: all definitions), with buttons that
 *  choose its window. Returns its `refresh()`, which rejects as getJSON does. */
export function trendChart(container, { definitionId = null } = {}) {
  let chosen = 'day';
  const buttons = WINDOWS.map(([name, label]) => {
    const button = h('button', { type: 'button', class: 'small', 'data-window': name, 'aria-pressed': String(name === chosen) }, label);
    button.addEventListener('click', () => choose(name));
    return button;
  });
  const summary = h('p', { class: 'trend-summary placeholder', 'aria-live': 'polite' }, 'Loading…');
  const rows = h('div', { class: 'trend-rows' });
  container.replaceChildren(h('div', { class: 'trend-windows', role: 'group', 'aria-label': 'Window' }, buttons), summary, rows);

  async function refresh() {
    const query = new URLSearchParams({ window: chosen });
    if (definitionId !== null) query.set('definitionId', definitionId);
    const trend = await getJSON(`api/workflows/trends?${query}`);
    if (trend.window !== chosen) return; // another window was chosen meanwhile
    const top = Math.max(1, ...trend.intervals.flatMap((i) => SERIES.map(([kind]) => i[kind])));
    summary.classList.remove('placeholder');
    summary.textContent = `Last ${trend.window}: ${trend.started} started · ${trend.finished} finished · ${trend.faulted} faulted`;
    rows.replaceChildren(...SERIES.map(([kind, label]) => strip(trend, kind, label, top)));
  }

  function choose(name) {
    chosen = name;
    for (const button of buttons) button.setAttribute('aria-pressed', String(button.dataset.window === name));
    refresh().catch(failed);
  }

  return refresh;
}
