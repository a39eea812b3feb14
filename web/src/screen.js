// 指挥大屏 /screen: a dark wall display (3840×2160 or 1920×1080, no scrolling). The city map shades
// grids by a chosen measure (feature-state on the grid tiles), draws incidents as server clusters
// from the private incident tiles plus live markers from the SSE stream (clustered client-side),
// and shows today's KPIs, the street ranking, overdue cases, hot spots and data-freshness warnings.
// Click drills district → street → community → grid with a profile panel; "轮巡" cycles the streets.
import * as maplibregl from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
import workerUrl from 'maplibre-gl/dist/maplibre-gl-worker.mjs?url';
import './screen.css';
import {
  FONT, STATUS_LABELS, apiJson, authHeaders, escapeHtml, getToken, login, refreshToken, transformRequest,
} from './common.js';
import { basemapLayers } from './basestyle.js';

maplibregl.setWorkerUrl(workerUrl);

const $ = (s) => document.querySelector(s);
const LEVELS = ['district', 'street', 'community', 'grid'];
const LEVEL_LABEL = { district: '区', street: '街道', community: '社区', grid: '网格' };
const LAYER_OF = { district: 'districts', street: 'streets', community: 'communities', grid: 'grids' };
const RAMPS = {
  open: ['#12304a', '#1f6f8b', '#e0a526', '#e8590c', '#d7263d'],
  overdue: ['#12304a', '#5b3b8c', '#a4379b', '#d7263d', '#ff5d73'],
  today: ['#12304a', '#21618c', '#2e9cca', '#7ed6df', '#f6e58d'],
  per_1000: ['#12304a', '#1f6f8b', '#e0a526', '#e8590c', '#d7263d'],
  patrol: ['#3a1c1c', '#7a4f1d', '#9c8a1f', '#3c9d4e', '#2ecc71'],
};
const MEASURE_LABEL = { open: '未办结事件', overdue: '超期事件', today: '今日上报', per_1000: '每千人事件', patrol: '巡查覆盖率 %' };
const TOUR_SECONDS = 15;
const DATASET_KIND = { people: '人口', households: '住户', buildings: '房屋', businesses: '法人' };
const DAY_MS = 86400000;
/** Map symbols scale with the wall: 1 at 1920 px wide, 2 at 3840. */
const K = Math.max(1, window.innerWidth / 1920);

const state = {
  ready: false, measure: 'open', summary: null, liveIds: [], liveEvents: 0, path: [], tour: false,
  patrol: null, shaded: 0, panels: {},
};
window.__screenState = state;
let map;
let doc;
const live = new Map(); // id → GeoJSON feature of live markers

function fmtPct(x) { return x == null ? '—' : `${(100 * x).toFixed(1)}%`; }

function tick() {
  const d = new Date();
  $('#clock').textContent = d.toLocaleString('zh-CN', { hour12: false, month: '2-digit', day: '2-digit',
    weekday: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function buildStyle() {
  const base = basemapLayers(doc, 'dark');
  const sources = { ...base.sources };
  const layers = [...base.layers];
  for (const l of doc.layers) {
    if (!Object.values(LAYER_OF).includes(l.id) && l.id !== 'incidents') continue;
    sources[l.id] = { type: 'vector', tiles: l.tiles, minzoom: l.minzoom, maxzoom: l.maxzoom };
    if (l.id !== 'incidents') sources[l.id].promoteId = { [l.id]: 'code' };
  }
  sources.live = { type: 'geojson', data: { type: 'FeatureCollection', features: [] }, cluster: true,
    clusterRadius: 40, clusterMaxZoom: 15 };
  sources.h3 = { type: 'geojson', data: { type: 'FeatureCollection', features: [] } };
  layers.push({ id: 'grids-fill', type: 'fill', source: 'grids', 'source-layer': 'grids',
    paint: { 'fill-color': '#12304a', 'fill-opacity': 0.62 } });
  layers.push({ id: 'h3-fill', type: 'fill', source: 'h3', layout: { visibility: 'none' },
    paint: { 'fill-color': ['interpolate', ['linear'], ['get', 'count'], 0, '#12304a', 5, '#e0a526', 20, '#d7263d'],
      'fill-opacity': 0.8, 'fill-outline-color': '#0b1a2b' } });
  layers.push({ id: 'grids-line', type: 'line', source: 'grids', 'source-layer': 'grids',
    paint: { 'line-color': '#2b4a66', 'line-width': 0.6 * K } });
  layers.push({ id: 'communities-line', type: 'line', source: 'communities', 'source-layer': 'communities',
    paint: { 'line-color': '#4f7ea8', 'line-width': 1.2 * K } });
  layers.push({ id: 'streets-line', type: 'line', source: 'streets', 'source-layer': 'streets',
    paint: { 'line-color': '#8fc1ee', 'line-width': 2.2 * K } });
  layers.push({ id: 'districts-line', type: 'line', source: 'districts', 'source-layer': 'districts',
    paint: { 'line-color': '#d6ecff', 'line-width': 3.5 * K } });
  for (const [lvl, id] of Object.entries(LAYER_OF)) {
    layers.push({ id: `${id}-hit`, type: 'fill', source: id, 'source-layer': id, paint: { 'fill-opacity': 0 } });
    layers.push({ id: `${id}-selected`, type: 'line', source: id, 'source-layer': id, filter: ['==', ['get', 'code'], ''],
      paint: { 'line-color': '#ffd166', 'line-width': (lvl === 'grid' ? 3 : 4) * K } });
  }
  layers.push({ id: 'streets-label', type: 'symbol', source: 'streets', 'source-layer': 'streets_label', maxzoom: 14.5,
    layout: { 'text-field': ['get', 'name'], 'text-font': FONT, 'text-size': ['interpolate', ['linear'], ['zoom'], 11, 12 * K, 14, 18 * K] },
    paint: { 'text-color': '#e8f4ff', 'text-halo-color': '#0b1a2b', 'text-halo-width': 2 } });
  layers.push({ id: 'communities-label', type: 'symbol', source: 'communities', 'source-layer': 'communities_label', minzoom: 14.5,
    layout: { 'text-field': ['get', 'name'], 'text-font': FONT, 'text-size': 14 * K },
    paint: { 'text-color': '#cfe3f7', 'text-halo-color': '#0b1a2b', 'text-halo-width': 2 } });
  if (sources.incidents) {
    // open cases only, small enough at city zoom to leave the grid shading readable
    layers.push({ id: 'incidents-cluster', type: 'circle', source: 'incidents', 'source-layer': 'incidents_cluster',
      filter: ['>', ['get', 'open'], 0],
      paint: { 'circle-color': ['step', ['get', 'open'], 'rgba(255,209,102,0.55)', 5, 'rgba(251,140,0,0.7)', 20, 'rgba(229,57,53,0.8)'],
        'circle-radius': ['interpolate', ['linear'], ['sqrt', ['get', 'open']], 1, 2.2 * K, 3, 6 * K, 10, 14 * K],
        'circle-stroke-color': 'rgba(255,255,255,0.6)', 'circle-stroke-width': 0.8 } });
    layers.push({ id: 'incidents-point', type: 'circle', source: 'incidents', 'source-layer': 'incidents',
      paint: { 'circle-color': '#ffb300', 'circle-radius': 4 * K, 'circle-stroke-color': '#0b1a2b', 'circle-stroke-width': 1 } });
  }
  layers.push({ id: 'live-cluster', type: 'circle', source: 'live', filter: ['has', 'point_count'],
    paint: { 'circle-color': '#00e5ff', 'circle-opacity': 0.85, 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2,
      'circle-radius': ['interpolate', ['linear'], ['get', 'point_count'], 2, 14 * K, 50, 30 * K] } });
  layers.push({ id: 'live-cluster-count', type: 'symbol', source: 'live', filter: ['has', 'point_count'],
    layout: { 'text-field': ['to-string', ['get', 'point_count']], 'text-font': FONT, 'text-size': 14 * K, 'text-allow-overlap': true },
    paint: { 'text-color': '#00212a' } });
  layers.push({ id: 'live-point', type: 'circle', source: 'live', filter: ['!', ['has', 'point_count']],
    paint: { 'circle-color': ['match', ['get', 'status'], 'reported', '#00e5ff', 'closed', '#8bc34a', '#ffd166'],
      'circle-radius': 9 * K, 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 2.5 * K } });
  return { version: 8, name: '指挥大屏', sources, layers };
}

// --- shading ------------------------------------------------------------------------------------
function valuesFor(measure) {
  const out = {};
  if (measure === 'patrol') {
    for (const g of state.patrol?.grids || []) out[g.grid_code] = Math.round(100 * g.coverage);
    return out;
  }
  for (const [code, m] of Object.entries(state.summary?.grids || {})) {
    if (m[measure] != null) out[code] = m[measure];
  }
  return out;
}

function shade() {
  if (!map || !state.summary) return;
  const measure = state.measure;
  const h3 = measure === 'h3';
  map.setLayoutProperty('h3-fill', 'visibility', h3 ? 'visible' : 'none');
  map.setLayoutProperty('grids-fill', 'visibility', h3 ? 'none' : 'visible');
  if (h3) { legend('H3 热力（9 级六边形事件数）', 0, 20, ['#12304a', '#e0a526', '#d7263d']); return; }
  const values = valuesFor(measure);
  const max = measure === 'patrol' ? 100 : Math.max(1, ...Object.values(values));
  const ramp = RAMPS[measure];
  map.removeFeatureState({ source: 'grids', sourceLayer: 'grids' });
  for (const [code, v] of Object.entries(values)) {
    map.setFeatureState({ source: 'grids', sourceLayer: 'grids', id: code }, { v });
  }
  // counts on a square-root scale: with a few hot grids (15 cases) on a linear ramp, the many grids with
  // 1–3 cases came out in the background colour (full-scale city at 4K: 3 of ~40 grids visibly shaded)
  const counts = measure !== 'patrol';
  const top = counts ? Math.sqrt(max) : max;
  const stops = ramp.flatMap((c, i) => [(top * i) / (ramp.length - 1), c]);
  const v = ['coalesce', ['feature-state', 'v'], 0];
  map.setPaintProperty('grids-fill', 'fill-color', ['interpolate', ['linear'], counts ? ['sqrt', v] : v, ...stops]);
  state.shaded = Object.keys(values).length;
  legend(MEASURE_LABEL[measure], 0, max, ramp, counts && max >= 4 ? Math.round(max / 4) : null);
}

function legend(title, lo, hi, ramp, mid = null) {
  $('#legend').innerHTML = `<div class="legend-title">${escapeHtml(title)}</div>
    <div class="ramp" style="background:linear-gradient(90deg,${ramp.join(',')})"></div>
    <div class="ramp-labels"><span>${lo}</span>${mid != null ? `<span>${mid}</span>` : ''}<span>${Math.round(hi)}</span></div>
    <div class="legend-live"><span class="dot live"></span>实时新增 <span class="dot cl"></span>事件聚合</div>`;
}

// --- panels -------------------------------------------------------------------------------------
function renderKpi(k, stats) {
  const s = stats || {};
  const cards = [
    ['今日上报', s.total ?? k.reported], ['今日派遣', k.dispatched],
    ['当日办结率', fmtPct(s.same_day_closure_rate ?? k.same_day_closure_rate)],
    ['超期', k.overdue, 'warn'], ['满意率', fmtPct(k.satisfaction_rate ?? s.satisfaction_rate)],
    ['未办结', k.open],
  ];
  $('#kpi .cards').innerHTML = cards.map(([label, v, cls]) =>
    `<div class="card ${cls || ''}"><div class="v" data-kpi="${escapeHtml(label)}">${escapeHtml(v ?? '—')}</div><div class="l">${escapeHtml(label)}</div></div>`).join('');
}

function renderRanking(streets) {
  const max = Math.max(1, ...streets.map((s) => s.open));
  $('#ranking ol').innerHTML = streets.slice(0, 12).map((s) => `<li data-code="${escapeHtml(s.code)}">
      <span class="name">${escapeHtml(s.name)}</span>
      <span class="bar"><i style="width:${(100 * s.open) / max}%"></i></span>
      <span class="n">${s.open}</span><span class="od">${s.overdue ? `超期 ${s.overdue}` : ''}</span></li>`).join('');
}

function renderOverdue(list) {
  const ul = $('#overdue ul');
  if (!list.length) { ul.innerHTML = '<li class="empty">暂无超期事件</li>'; return; }
  ul.innerHTML = list.slice(0, 10).map((o) => `<li data-id="${o.id}">
      <b>#${o.id}</b> ${escapeHtml(o.category_label)} <span class="where">${escapeHtml(o.street_name || '')} ${escapeHtml(o.grid_name || o.grid_code || '')}</span>
      <span class="late">超 ${o.hours_over != null ? Math.round(o.hours_over) : '?'} 小时</span></li>`).join('');
}

let caps = {};

async function loadSummary() {
  // today's KPI definitions live in the incident stats module when the server has it
  const today = new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 10); // China Standard Time
  const [summary, stats] = await Promise.all([apiJson('/api/v1/screen/summary'),
    caps.stats ? apiJson(`/api/v1/stats/incidents?from=${today}&to=${today}`) : null]);
  if (!summary) return;
  state.summary = summary;
  $('#measure option[value="per_1000"]').disabled = !summary.population;
  renderKpi(summary.kpi, stats && (stats.kpi || stats));
  renderRanking(summary.streets);
  renderOverdue(summary.overdue);
  shade();
}

async function loadSidePanels() {
  const datasets = caps.datasets ? await apiJson('/api/v1/datasets') : null;
  const items = Array.isArray(datasets) ? datasets : datasets?.items || datasets?.datasets;
  if (items) {
    // most overdue first (never updated before all); "房屋 · 住建局  超期 40 天"
    const late = items.filter((d) => d.overdue)
      .sort((a, b) => (a.due_at ? Date.parse(a.due_at) : -Infinity) - (b.due_at ? Date.parse(b.due_at) : -Infinity));
    const lateBy = (d) => (d.due_at ? `超期 ${Math.max(1, Math.floor((Date.now() - Date.parse(d.due_at)) / DAY_MS))} 天` : '从未更新');
    $('#freshness').hidden = false;
    state.panels.freshness = late.length;
    $('#freshness ul').innerHTML = late.length
      ? late.slice(0, 6).map((d) => `<li class="warn">${escapeHtml(DATASET_KIND[d.kind] || d.name)} · ${escapeHtml(d.provider || '')}`
        + ` <span>${lateBy(d)}</span></li>`).join('')
      : `<li class="ok">${items.length ? `${items.length} 个数据集均按时更新` : '尚未登记数据集'}</li>`;
  }
  const hot = caps.hotspots ? await apiJson('/api/v1/hotspots') : null;
  const hs = Array.isArray(hot) ? hot : hot?.cells || hot?.items || hot?.hotspots;
  if (hs) {
    $('#hotspots').hidden = false;
    state.panels.hotspots = hs.length;
    $('#hotspots ul').innerHTML = hs.length
      ? hs.slice(0, 6).map((h) => `<li class="${h.flagged ? 'warn' : ''}">${h.flagged ? '⚠ ' : ''}${escapeHtml(h.name || h.key || h.code)}
          <span class="late">${escapeHtml(h.count ?? '')} 件 · ${h.rate_ratio != null ? `${Number(h.rate_ratio).toFixed(1)}×` : ''}</span></li>`).join('')
      : '<li class="ok">暂无热点</li>';
  }
  const agg = caps.aggregate ? await apiJson('/api/v1/aggregate?layer=incidents&by=h3:9&geometry=true') : null;
  const buckets = Array.isArray(agg) ? agg : agg?.items || agg?.buckets || agg?.features;
  if (buckets && buckets.length) {
    const features = buckets.filter((b) => b.geometry).map((b) => ({ type: 'Feature', geometry: b.geometry,
      properties: { key: b.key, count: b.count ?? b.properties?.count ?? 0 } }));
    map.getSource('h3').setData({ type: 'FeatureCollection', features });
    $('#measure option[value="h3"]').disabled = false;
  }
  const scope = state.summary?.scope || '';
  state.patrol = await apiJson(`/api/v1/patrols/coverage${scope ? `?area=${scope}` : ''}`);
  $('#measure option[value="patrol"]').disabled = !state.patrol;
}

// --- live -----------------------------------------------------------------------------------------
let refreshTimer = null;
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(loadSummary, 1500);
}

function onIncident(ev) {
  state.liveEvents += 1;
  const f = { type: 'Feature', id: ev.id, geometry: { type: 'Point', coordinates: [ev.lon, ev.lat] },
    properties: { id: ev.id, status: ev.status, category: ev.category, grid_code: ev.grid_code } };
  live.set(ev.id, f);
  if (live.size > 2000) live.delete(live.keys().next().value);
  map.getSource('live').setData({ type: 'FeatureCollection', features: [...live.values()] });
  state.liveIds = [...live.keys()];
  const ul = $('#ticker ul');
  $('#ticker').hidden = false;
  const li = document.createElement('li');
  li.innerHTML = `<b>#${ev.id}</b> ${ev.op === 'insert' ? '新上报' : '状态更新'} · ${escapeHtml(STATUS_LABELS[ev.status] || ev.status)} · ${escapeHtml(ev.grid_code || '')}`;
  ul.prepend(li);
  while (ul.children.length > 5) ul.lastChild.remove();
  scheduleRefresh();
}

function connectLive() {
  const token = getToken();
  if (!token) return;
  const es = new EventSource(`/api/v1/events/incidents?access_token=${encodeURIComponent(token)}`);
  es.addEventListener('ready', () => { $('#live').className = 'on'; $('#live').textContent = '实时 ●'; state.live = true; });
  es.addEventListener('incident', (e) => onIncident(JSON.parse(e.data)));
  es.onerror = async () => {
    $('#live').className = 'off';
    state.live = false;
    if (es.readyState === EventSource.CLOSED) {
      await refreshToken();
      setTimeout(connectLive, 2000);
    }
  };
}

// --- drill-down -------------------------------------------------------------------------------------
function select(level, code) {
  for (const [lvl, id] of Object.entries(LAYER_OF)) {
    map.setFilter(`${id}-selected`, ['==', ['get', 'code'], lvl === level ? code : '']);
  }
}

function renderCrumbs() {
  const root = '<a data-depth="0">全区</a>';
  $('#crumbs').innerHTML = root + state.path.map((a, i) =>
    ` › <a data-depth="${i + 1}">${escapeHtml(a.name)}</a>`).join('');
}

async function drillTo(area, depth) {
  state.path = state.path.slice(0, depth);
  if (area) state.path.push(area);
  renderCrumbs();
  if (!area) {
    select(null, '');
    $('#profile').hidden = true;
    if (doc.bounds) map.fitBounds([[doc.bounds[0], doc.bounds[1]], [doc.bounds[2], doc.bounds[3]]], { padding: 30, duration: 800 });
    return;
  }
  select(area.level, area.code);
  const info = await apiJson(`/api/v1/areas/${area.code}`);
  if (info?.bbox) {
    const [x0, y0, x1, y1] = info.bbox;
    map.fitBounds([[x0, y0], [x1, y1]], { padding: 60, maxZoom: 17, duration: 800 });
  }
  showProfile(area, info);
}

async function showProfile(area, info) {
  const rows = [['编码', area.code], ['层级', LEVEL_LABEL[area.level]]];
  const g = state.summary?.grids || {};
  let open = 0; let overdue = 0; let today = 0; let grids = 0;
  for (const [code, m] of Object.entries(g)) {
    if (code.startsWith(area.code)) { open += m.open; overdue += m.overdue; today += m.today; grids += 1; }
  }
  rows.push(['未办结事件', open], ['超期事件', overdue], ['今日上报', today]);
  if (info?.area_m2) rows.push(['面积', `${(info.area_m2 / 1e6).toFixed(2)} 平方公里`]);
  const pc = (state.patrol?.grids || []).filter((x) => x.grid_code.startsWith(area.code));
  if (pc.length) rows.push(['今日巡查覆盖', fmtPct(pc.reduce((a, x) => a + x.coverage, 0) / pc.length)]);
  const prof = caps.profile ? await apiJson(`/api/v1/areas/${area.code}/profile`) : null;
  if (prof) {
    const num = (v) => (typeof v === 'number' ? v : v?.total);
    const extra = [['网格数', prof.grids], ['建筑', prof.buildings], ['房屋', prof.houses], ['户数', prof.households],
      ['人口', num(prof.people)], ['法人单位', num(prof.businesses)],
      ['近30天未办结', prof.incidents_30d?.open], ['近30天已办结', prof.incidents_30d?.closed],
      ['网格员', (prof.workers || []).map((w) => w.full_name || w.username).join('、')]];
    for (const [k, v] of extra) if (v !== undefined && v !== null && v !== '') rows.push([k, v]);
  }
  $('#profile .title').textContent = `${LEVEL_LABEL[area.level]}画像：${area.name}`;
  $('#profile dl').innerHTML = rows.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd data-field="${escapeHtml(k)}">${escapeHtml(v)}</dd>`).join('');
  $('#profile').hidden = false;
  state.profile = area.code;
}

function onClick(e) {
  const depth = state.path.length; // 0: district view → pick a street, …
  const nextLevel = LEVELS[Math.min(depth + 1, 3)];
  const layer = `${LAYER_OF[nextLevel]}-hit`;
  const hits = map.queryRenderedFeatures(e.point, { layers: [layer] });
  if (!hits.length) return;
  const p = hits[0].properties;
  drillTo({ code: p.code, name: p.name, level: nextLevel }, depth);
}

// --- tour -----------------------------------------------------------------------------------------
let tourTimer = null;
let tourIndex = 0;
function setTour(on) {
  state.tour = on;
  $('#tour').setAttribute('aria-pressed', String(on));
  $('#tour').classList.toggle('on', on);
  clearInterval(tourTimer);
  if (!on) return;
  const step = () => {
    const streets = state.summary?.streets || [];
    if (!streets.length) return;
    const s = streets[tourIndex % streets.length];
    tourIndex += 1;
    drillTo({ code: s.code, name: s.name, level: 'street' }, 0);
  };
  step();
  tourTimer = setInterval(step, TOUR_SECONDS * 1000);
}

// --- start ----------------------------------------------------------------------------------------
function askLogin() {
  const overlay = $('#login-overlay');
  overlay.hidden = false;
  const form = overlay.querySelector('form');
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await login(form.username.value, form.password.value);
      window.location.reload();
    } catch (err) {
      form.querySelector('.error').textContent = `登录失败：${err.message}`;
    }
  });
}

async function main() {
  tick();
  setInterval(tick, 1000);
  if (!getToken()) { askLogin(); return; }
  let r = await fetch('/tiles/layers.json', { headers: authHeaders() });
  doc = await r.json();
  if (!doc.authenticated && await refreshToken()) {
    r = await fetch('/tiles/layers.json', { headers: authHeaders() });
    doc = await r.json();
  }
  if (!doc.authenticated) { askLogin(); return; }
  caps = await apiJson('/api/v1/screen/capabilities') || {};
  const options = { container: 'map', style: buildStyle(), attributionControl: false, transformRequest };
  if (doc.bounds) {
    options.bounds = [[doc.bounds[0], doc.bounds[1]], [doc.bounds[2], doc.bounds[3]]];
    options.fitBoundsOptions = { padding: 30 };
  } else Object.assign(options, { center: [113.27, 23.13], zoom: 12 });
  map = new maplibregl.Map(options);
  window.__screenMap = map;
  map.on('click', onClick);
  map.on('load', async () => {
    await loadSummary();
    connectLive();
    await loadSidePanels();
    state.ready = true;
  });
  $('#measure').addEventListener('change', (e) => { state.measure = e.target.value; shade(); });
  $('#tour').addEventListener('click', () => setTour(!state.tour));
  $('#crumbs').addEventListener('click', (e) => {
    const d = e.target.dataset.depth;
    if (d == null) return;
    const depth = Number(d);
    drillTo(depth === 0 ? null : state.path[depth - 1], depth === 0 ? 0 : depth - 1);
  });
  $('#profile .close').addEventListener('click', () => { $('#profile').hidden = true; });
  $('#ranking ol').addEventListener('click', (e) => {
    const li = e.target.closest('li');
    if (li) drillTo({ code: li.dataset.code, name: li.querySelector('.name').textContent, level: 'street' }, 0);
  });
  setInterval(loadSummary, 60_000);
  setInterval(() => { if (map.getSource('incidents')) map.getSource('incidents').reload?.(); }, 120_000);
  if (new URLSearchParams(window.location.search).get('tour') === '1') map.once('idle', () => setTour(true));
}

main().catch((err) => {
  console.error(err);
  $('#live').textContent = `加载失败：${err.message}`;
});
