// 网格化管理地图: MapLibre GL over gridserver's own vector tiles. Everything is served by gridserver
// itself (tiles, this bundle, the worker); there is no basemap, CDN, sprite or glyph server. Text
// is drawn by MapLibre with the browser's local fonts (no `glyphs` URL in the style).
import * as maplibregl from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
import workerUrl from 'maplibre-gl/dist/maplibre-gl-worker.mjs?url';
import './map.css';
import { apiJson, authHeaders, getToken, getUser, login, setToken, transformRequest, ROLE_LABELS } from './common.js';
import { basemapLayers } from './basestyle.js';

maplibregl.setWorkerUrl(workerUrl);

const FONT = ['WenQuanYi Micro Hei', 'Noto Sans CJK SC', 'Microsoft YaHei', 'PingFang SC', 'sans-serif'];
const DEFAULT_VIEW = { center: [113.27, 23.13], zoom: 12 }; // 越秀区 when there is no data yet
const LEVEL_LABELS = { district: '区', street: '街道', community: '社区', grid: '网格' };
const STATUS_LABELS = {
  reported: '已上报', accepted: '已受理', assigned: '已派遣', dispatched: '已派遣', processing: '处置中',
  in_progress: '处置中', resolved: '已处置', verified: '已核查', closed: '已结案', rejected: '不予受理',
};
const AREA_STYLE = {
  districts: { fill: '#d9d4c7', fillOpacity: 0.15, line: '#5c5346', width: 2.5, dash: [4, 2] },
  streets: { fill: '#c7d8ea', fillOpacity: 0.12, line: '#3f6a96', width: 2 },
  communities: { fill: '#f2e6c9', fillOpacity: 0.06, line: '#b07b2c', width: 1.3 },
  grids: { fill: '#cfe8cf', fillOpacity: 0.1, line: '#2e7d32', width: 0.8 },
};
const AREA_ORDER = ['districts', 'streets', 'communities', 'grids'];
const CLICK_LAYERS = ['incidents-circle', 'incidents-cluster', 'grids-fill', 'communities-fill', 'streets-fill', 'districts-fill'];

const $ = (sel) => document.querySelector(sel);

function areaLabelLayout(id) {
  // What each area's label point says, and from which zoom.
  const fields = {
    districts: ['get', 'name'],
    streets: ['get', 'name'],
    communities: ['get', 'name'],
    // the 3-digit sequence while grids are small, the full code and name when zoomed in
    grids: ['step', ['zoom'], ['slice', ['get', 'code'], 12],
      16, ['concat', ['get', 'name'], '\n', ['get', 'code']]],
  };
  const sizes = { districts: 16, streets: 14, communities: 13, grids: 12 };
  return {
    'text-field': fields[id],
    'text-font': FONT,
    'text-size': sizes[id],
    'text-max-width': 12,
    'text-padding': 4,
  };
}

const LABEL_MINZOOM = { districts: 9, streets: 11, communities: 12.5, grids: 14 }; // grid label points from z14 (tiles.LABEL_MINZOOM)
const LABEL_MAXZOOM = { districts: 12, streets: 15, communities: 24, grids: 24 };

function buildStyle(doc) {
  // our own basemap (green, water, roads, buildings) under the admin layers
  const base = basemapLayers(doc, 'light');
  const sources = { ...base.sources };
  const layers = [...base.layers];
  if (doc.tianditu) {
    // optional Tianditu WMTS (key configured on the server), off until the user ticks it
    for (const [id, urls] of Object.entries(doc.tianditu.layers)) {
      sources[`tianditu-${id}`] = { type: 'raster', tiles: urls, tileSize: 256, attribution: doc.tianditu.attribution };
      layers.splice(1, 0, { id: `tianditu-${id}`, type: 'raster', source: `tianditu-${id}`,
        layout: { visibility: doc.tianditu.default_visible ? 'visible' : 'none' } });
    }
  }
  for (const l of doc.layers) {
    if (!AREA_ORDER.includes(l.id) && !(l.id === 'incidents' && doc.authenticated)) continue;
    sources[l.id] = { type: 'vector', tiles: l.tiles, minzoom: l.minzoom, maxzoom: l.maxzoom };
    if (l.bounds) sources[l.id].bounds = l.bounds;
  }
  for (const id of AREA_ORDER) {
    if (!sources[id]) continue;
    const s = AREA_STYLE[id];
    layers.push({ id: `${id}-fill`, type: 'fill', source: id, 'source-layer': id,
      paint: { 'fill-color': s.fill, 'fill-opacity': s.fillOpacity } });
  }
  // boundaries finest first, so a street line is not hidden under the grid lines it coincides with
  for (const id of [...AREA_ORDER].reverse()) {
    if (!sources[id]) continue;
    const s = AREA_STYLE[id];
    const line = { id: `${id}-line`, type: 'line', source: id, 'source-layer': id,
      paint: { 'line-color': s.line, 'line-width': s.width } };
    if (s.dash) line.paint['line-dasharray'] = s.dash;
    layers.push(line);
  }
  for (const id of AREA_ORDER) {
    if (!sources[id]) continue;
    layers.push({ id: `${id}-highlight`, type: 'line', source: id, 'source-layer': id,
      filter: ['==', ['get', 'code'], ''], paint: { 'line-color': '#e53935', 'line-width': 4 } });
  }
  // labels above the areas
  for (const id of AREA_ORDER) {
    if (!sources[id]) continue;
    layers.push({ id: `${id}-label`, type: 'symbol', source: id, 'source-layer': `${id}_label`,
      minzoom: LABEL_MINZOOM[id], maxzoom: LABEL_MAXZOOM[id], layout: areaLabelLayout(id),
      paint: { 'text-color': AREA_STYLE[id].line, 'text-halo-color': '#ffffff', 'text-halo-width': 1.5 } });
  }
  // incidents on top of the labels: a point must never hide under a name
  if (sources.incidents) {
    const colors = ['match', ['get', 'category']];
    for (const c of doc.categories) colors.push(c.code, c.color);
    colors.push('#7f7f7f');
    layers.push({ id: 'incidents-circle', type: 'circle', source: 'incidents', 'source-layer': 'incidents',
      paint: {
        'circle-color': colors,
        'circle-radius': ['interpolate', ['linear'], ['zoom'], 11, 1.5, 13, 2.5, 16, 7],
        'circle-stroke-color': '#ffffff', 'circle-stroke-width': ['interpolate', ['linear'], ['zoom'], 12, 0.4, 15, 1.2],
      } });
    // city and street zoom: server-side clusters (count per cell), sized by count
    layers.push({ id: 'incidents-cluster', type: 'circle', source: 'incidents', 'source-layer': 'incidents_cluster',
      paint: {
        'circle-color': ['step', ['get', 'open'], '#8bc34a', 1, '#ffb300', 20, '#fb8c00', 100, '#e53935'],
        'circle-opacity': 0.85,
        'circle-radius': ['interpolate', ['linear'], ['sqrt', ['get', 'count']], 1, 5, 10, 14, 40, 26],
        'circle-stroke-color': '#ffffff', 'circle-stroke-width': 1,
      } });
    layers.push({ id: 'incidents-cluster-count', type: 'symbol', source: 'incidents', 'source-layer': 'incidents_cluster',
      layout: { 'text-field': ['to-string', ['get', 'count']], 'text-font': FONT, 'text-size': 11,
        'text-allow-overlap': true },
      paint: { 'text-color': '#1b1b1b' } });
    layers.push({ id: 'incidents-highlight', type: 'circle', source: 'incidents', 'source-layer': 'incidents',
      filter: ['==', ['get', 'id'], -1],
      paint: { 'circle-radius': 11, 'circle-color': 'rgba(0,0,0,0)', 'circle-stroke-color': '#e53935',
        'circle-stroke-width': 3 } });
  }
  return { version: 8, name: '网格化管理地图', sources, layers };
}

function escapeHtml(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function formatTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString('zh-CN', { hour12: false });
}

function showInfo(title, rows) {
  const panel = $('#info');
  panel.querySelector('.info-title').textContent = title;
  panel.querySelector('.info-body').innerHTML = rows
    .filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd data-field="${escapeHtml(k)}">${escapeHtml(v)}</dd>`)
    .join('');
  panel.hidden = false;
}

function showArea(p) {
  const title = `${LEVEL_LABELS[p.level] || p.level}：${p.name}`;
  const base = [['编码', p.code], ['名称', p.name], ['层级', LEVEL_LABELS[p.level] || p.level], ['上级编码', p.parent_code || '—']];
  showInfo(title, base);
  // then what the area holds: its size (public), and for staff its block data, incidents and grid workers
  Promise.all([apiJson(`/api/v1/areas/${encodeURIComponent(p.code)}`),
    getToken() ? apiJson(`/api/v1/areas/${encodeURIComponent(p.code)}/profile`) : null]).then(([area, prof]) => {
    if (window.__gridmapState.selected !== p.code) return; // another click came first
    const n = (x) => (typeof x === 'number' ? x.toLocaleString('zh-CN') : x?.total?.toLocaleString('zh-CN'));
    const rows = [...base, ['面积', area?.area_m2 ? `${(area.area_m2 / 1e4).toFixed(2)} 公顷` : null]];
    if (prof) {
      rows.push(['网格数', p.level === 'grid' ? null : n(prof.grids)], ['建筑', n(prof.buildings)], ['户数', n(prof.households)],
        ['人口', n(prof.people)], ['法人单位', n(prof.businesses)],
        ['近30天事件', prof.incidents_30d ? `未办结 ${prof.incidents_30d.open} · 已办结 ${prof.incidents_30d.closed}` : null],
        ['网格员', (prof.workers || []).map((w) => w.full_name || w.username).join('、') || null]);
    }
    showInfo(title, rows);
    window.__gridmapState.profiled = p.code;
  });
}

function showIncident(p) {
  showInfo(`事件 #${p.id}`, [
    ['事件编号', p.id], ['类别', p.category_label || p.category], ['状态', STATUS_LABELS[p.status] || p.status],
    ['网格编码', p.grid_code || '—'], ['上报时间', formatTime(p.created_at)],
  ]);
}

function highlight(map, code, incidentId) {
  for (const id of AREA_ORDER) {
    if (map.getLayer(`${id}-highlight`)) map.setFilter(`${id}-highlight`, ['==', ['get', 'code'], code || '']);
  }
  if (map.getLayer('incidents-highlight')) map.setFilter('incidents-highlight', ['==', ['get', 'id'], incidentId ?? -1]);
  window.__gridmapState.selected = code || (incidentId != null ? `incident:${incidentId}` : null);
}

function setMessage(text, isError = false) {
  const el = $('#message');
  el.textContent = text;
  el.classList.toggle('error', isError);
}

async function searchCode(map, raw) {
  const code = raw.trim();
  if (!/^\d{6,15}$/.test(code)) {
    setMessage('请输入 6–15 位数字编码（区 6 位，街道 9 位，社区 12 位，网格 15 位）', true);
    return;
  }
  setMessage('查询中…');
  const r = await fetch(`/api/v1/areas/${encodeURIComponent(code)}`);
  if (r.status === 404) {
    setMessage(`未找到编码 ${code}`, true);
    return;
  }
  if (!r.ok) {
    setMessage(`查询失败（HTTP ${r.status}）`, true);
    return;
  }
  const area = await r.json();
  const [x0, y0, x1, y1] = area.bbox;
  map.fitBounds([[x0, y0], [x1, y1]], { padding: 60, maxZoom: 17, duration: 500 });
  highlight(map, area.code);
  showArea(area);
  setMessage(`已定位：${area.name}（${area.code}）`);
  window.__gridmapState.lastSearch = area.code;
}

function buildControls(map, doc, style) {
  const toggles = $('#layers');
  const present = new Set(Object.keys(style.sources));
  for (const l of doc.layers) {
    if (!present.has(l.id)) continue;
    const label = document.createElement('label');
    label.innerHTML = `<input type="checkbox" data-layer="${escapeHtml(l.id)}" checked> ${escapeHtml(l.title)}` +
      (l.count == null ? '' : ` <span class="count">${l.count}</span>`);
    toggles.appendChild(label);
  }
  if (doc.tianditu) {
    const label = document.createElement('label');
    label.innerHTML = '<input type="checkbox" data-tianditu="1"> 天地图底图';
    toggles.appendChild(label);
  }
  toggles.addEventListener('change', (e) => {
    if (e.target.dataset.tianditu) {
      for (const id of Object.keys(doc.tianditu.layers)) {
        map.setLayoutProperty(`tianditu-${id}`, 'visibility', e.target.checked ? 'visible' : 'none');
      }
      return;
    }
    const id = e.target.dataset.layer;
    if (!present.has(id)) return;
    const vis = e.target.checked ? 'visible' : 'none';
    for (const layer of map.getStyle().layers) {
      if (layer.source === id) map.setLayoutProperty(layer.id, 'visibility', vis);
    }
  });
  const legend = $('#legend');
  legend.innerHTML = '<div class="legend-title">事件类别</div>' + doc.categories
    .map((c) => `<div><span class="swatch" style="background:${escapeHtml(c.color)}"></span>${escapeHtml(c.label)}</div>`)
    .join('');
  // on a phone the two panels would cover half the map: they start folded there, a tap on the title opens them
  const narrow = window.matchMedia('(max-width: 600px)').matches;
  for (const panel of [$('#layers'), legend]) {
    panel.classList.toggle('folded', narrow);
    panel.querySelector('.panel-title, .legend-title').addEventListener('click', () => panel.classList.toggle('folded'));
  }
  $('#search').addEventListener('submit', (e) => {
    e.preventDefault();
    searchCode(map, $('#search-code').value).catch((err) => setMessage(`查询失败：${err.message}`, true));
  });
  $('#info .close').addEventListener('click', () => {
    $('#info').hidden = true;
    highlight(map, null);
  });
}

function setupLogin() {
  const box = $('#login');
  if (!box) return;
  const user = getUser();
  const status = box.querySelector('.who');
  const form = box.querySelector('form');
  if (getToken()) {
    const showUser = (u) => {
      status.textContent = `${u.full_name || u.username}（${ROLE_LABELS[u.role] || u.role || ''}）`;
    };
    if (user) showUser(user);
    else fetch('/api/v1/auth/me', { headers: authHeaders() }).then((r) => (r.ok ? r.json() : null)).then((u) => { if (u) showUser(u); });
    form.hidden = true;
    box.querySelector('.logout').hidden = false;
  } else {
    status.textContent = '登录后显示事件';
  }
  box.querySelector('.logout').addEventListener('click', () => { setToken(null); window.location.reload(); });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await login(form.username.value, form.password.value);
      window.location.reload();
    } catch (err) {
      setMessage(`登录失败：${err.message}`, true);
    }
  });
}

async function main() {
  window.__gridmapState = { ready: false, selected: null, lastSearch: null };
  setupLogin();
  const doc = await (await fetch('/tiles/layers.json', { headers: authHeaders() })).json();
  window.__gridmapState.authenticated = doc.authenticated;
  const style = buildStyle(doc);
  const options = { container: 'map', style, attributionControl: false, hash: false, transformRequest };
  if (doc.bounds) {
    options.bounds = [[doc.bounds[0], doc.bounds[1]], [doc.bounds[2], doc.bounds[3]]];
    options.fitBoundsOptions = { padding: 40 };
  } else {
    Object.assign(options, DEFAULT_VIEW);
    setMessage('数据库中还没有区划或网格数据');
  }
  const map = new maplibregl.Map(options);
  window.__gridmap = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), 'top-right');
  map.addControl(new maplibregl.ScaleControl({ unit: 'metric' }), 'bottom-left');
  map.addControl(new maplibregl.AttributionControl({ compact: true, customAttribution: 'gridserver 网格数据' }));
  buildControls(map, doc, style);

  map.on('click', (e) => {
    const layers = CLICK_LAYERS.filter((id) => map.getLayer(id) && map.getLayoutProperty(id, 'visibility') !== 'none');
    const hits = map.queryRenderedFeatures(e.point, { layers });
    if (!hits.length) return;
    // the most specific thing under the cursor: an incident, else the smallest area
    hits.sort((a, b) => CLICK_LAYERS.indexOf(a.layer.id) - CLICK_LAYERS.indexOf(b.layer.id));
    const f = hits[0];
    if (f.layer.id === 'incidents-cluster') {
      map.easeTo({ center: f.geometry.coordinates, zoom: Math.min(map.getZoom() + 2, 16) });
      return;
    }
    if (f.layer.id === 'incidents-circle') {
      highlight(map, null, f.properties.id);
      showIncident(f.properties);
    } else {
      highlight(map, f.properties.code);
      showArea(f.properties);
    }
  });
  for (const id of CLICK_LAYERS) {
    map.on('mouseenter', id, () => { map.getCanvas().style.cursor = 'pointer'; });
    map.on('mouseleave', id, () => { map.getCanvas().style.cursor = ''; });
  }
  map.on('mousemove', (e) => {
    $('#coords').textContent = `${e.lngLat.lng.toFixed(5)}, ${e.lngLat.lat.toFixed(5)}  z${map.getZoom().toFixed(1)}`;
  });
  map.on('load', () => { window.__gridmapState.ready = true; });
}

main().catch((err) => {
  console.error(err);
  setMessage(`地图加载失败：${err.message}`, true);
});
