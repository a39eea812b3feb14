// 网格员 /m/: the grid worker's phone app (360×740). Log in; my grid on the map (boundary, buildings,
// roads); my tasks by deadline with history and actions; report at my GPS position or a tapped point
// with a photo and a searchable category tree; several drafts; an outbox that keeps reports made
// offline (IndexedDB, photos as Blobs: queue.js) and sends each exactly once when back online (one
// Idempotency-Key per report, its photo upload keyed too); patrol
// (巡查) recording a GPS track sent in batches, kept offline when the network drops.
import * as maplibregl from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
import workerUrl from 'maplibre-gl/dist/maplibre-gl-worker.mjs?url';
import './mobile.css';
import {
  STATUS_LABELS, api, apiJson, authHeaders, escapeHtml, formatTime, getToken, getUser, login, setToken,
  transformRequest, uuid,
} from './common.js';
import { basemapLayers } from './basestyle.js';
import * as queue from './queue.js';

// MapLibre's worker from /m/ (same file, see views.map_worker): only inside the service worker's scope
// is the worker itself a client of sw.js, so it starts offline and its tile requests hit the tile cache.
maplibregl.setWorkerUrl(`/m/${workerUrl.split('/').pop()}`);

const $ = (s) => document.querySelector(s);
// where earlier versions kept the queue (localStorage); moved into IndexedDB once, see queue.js
const OLD_QUEUE = { drafts: 'gridserver.m.drafts', outbox: 'gridserver.m.outbox' };
const PATROL = 'gridserver.m.patrol';
const state = { ready: false, tasks: [], sent: [], outbox: 0, drafts: 0, patrol: null, grid: null, categories: [], openCategory: null };
window.__mobileState = state;
window.__mobileQueue = queue;
let map;
let pickMode = false;
let chosen = null; // {lon, lat, source}
let carriedPhoto = null; // the photo of a draft taken back into the form ({name, type, blob})
let editingDraft = null; // that draft's key: it leaves the drafts only once sent or saved again

const load = (k, d) => { try { return JSON.parse(localStorage.getItem(k)) ?? d; } catch { return d; } };
const save = (k, v) => localStorage.setItem(k, JSON.stringify(v));

function setNet() {
  const el = $('#net');
  el.className = navigator.onLine ? 'online' : 'offline';
  el.textContent = navigator.onLine ? '' : '离线：上报将暂存，联网后自动发送';
}

// --- views ------------------------------------------------------------------------------------------
function show(view) {
  for (const v of document.querySelectorAll('#app .view')) v.hidden = v.id !== view;
  for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('on', b.dataset.view === view);
  if (view === 'map-view' && map) map.resize();
  if (view === 'tasks-view') loadTasks();
}

// --- map --------------------------------------------------------------------------------------------
async function setupMap() {
  const doc = await (await fetch('/tiles/layers.json', { headers: authHeaders() })).json();
  const base = basemapLayers(doc, 'light');
  const sources = { ...base.sources };
  const layers = [...base.layers];
  for (const l of doc.layers) {
    if (['grids', 'communities', 'incidents'].includes(l.id)) {
      sources[l.id] = { type: 'vector', tiles: l.tiles, minzoom: l.minzoom, maxzoom: l.maxzoom };
    }
  }
  const mine = state.grid?.code || '';
  sources.track = { type: 'geojson', data: { type: 'FeatureCollection', features: [] } };
  sources.covered = { type: 'geojson', data: { type: 'FeatureCollection', features: [] } };
  sources.chosen = { type: 'geojson', data: { type: 'FeatureCollection', features: [] } };
  layers.push(
    { id: 'grids-fill', type: 'fill', source: 'grids', 'source-layer': 'grids',
      paint: { 'fill-color': ['case', ['==', ['get', 'code'], mine], 'rgba(46,125,50,0.12)', 'rgba(0,0,0,0.05)'] } },
    { id: 'covered', type: 'fill', source: 'covered', paint: { 'fill-color': '#43a047', 'fill-opacity': 0.35 } },
    { id: 'grids-line', type: 'line', source: 'grids', 'source-layer': 'grids',
      paint: { 'line-color': '#7a8a7a', 'line-width': 0.7 } },
    { id: 'my-grid', type: 'line', source: 'grids', 'source-layer': 'grids', filter: ['==', ['get', 'code'], mine],
      paint: { 'line-color': '#d84315', 'line-width': 3.5 } },
    { id: 'track', type: 'line', source: 'track', paint: { 'line-color': '#1565c0', 'line-width': 3 } },
  );
  if (sources.incidents) {
    layers.push({ id: 'incidents', type: 'circle', source: 'incidents', 'source-layer': 'incidents',
      paint: { 'circle-color': '#f57c00', 'circle-radius': 5, 'circle-stroke-color': '#fff', 'circle-stroke-width': 1 } });
    layers.push({ id: 'incidents-cluster', type: 'circle', source: 'incidents', 'source-layer': 'incidents_cluster',
      paint: { 'circle-color': 'rgba(245,124,0,0.6)', 'circle-radius': ['interpolate', ['linear'], ['sqrt', ['get', 'count']], 1, 5, 10, 14] } });
  }
  if (sources.buildings) {
    layers.push({ id: 'key-buildings', type: 'fill', source: 'buildings', 'source-layer': 'buildings',
      filter: ['in', ['get', 'building_code'], ['literal', []]], paint: { 'fill-color': '#8e24aa', 'fill-opacity': 0.55 } });
  }
  layers.push({ id: 'chosen', type: 'circle', source: 'chosen',
    paint: { 'circle-color': '#e53935', 'circle-radius': 8, 'circle-stroke-color': '#fff', 'circle-stroke-width': 2 } });
  const opts = { container: 'map', style: { version: 8, sources, layers }, attributionControl: false, transformRequest };
  const b = state.grid?.bbox || doc.bounds;
  if (b) { opts.bounds = [[b[0], b[1]], [b[2], b[3]]]; opts.fitBoundsOptions = { padding: 24 }; } else Object.assign(opts, { center: [113.27, 23.13], zoom: 13 });
  map = new maplibregl.Map(opts);
  window.__mobileMap = map;
  map.addControl(new maplibregl.GeolocateControl({ trackUserLocation: true }), 'top-right');
  map.on('error', (e) => {
    // a tile that cannot load (offline: not cached, or the private incident layer, never cached) is the
    // normal case on a bad connection: counted and noted, the map draws what it has
    if (e.sourceId) { state.tileErrors = (state.tileErrors || 0) + 1; console.warn(`瓦片未加载 (${e.sourceId})`, e.error?.message || ''); return; }
    console.error(e.error || e);
  });
  map.on('click', (e) => {
    if (!pickMode) return;
    pickMode = false;
    $('#map-hint').hidden = true;
    choose(e.lngLat.lng, e.lngLat.lat, '地图选点');
    show('report-view');
  });
  await new Promise((res) => map.once('load', res));
  if (state.grid?.bbox) cacheGridTiles(doc, state.grid.bbox);
  loadCoverage();
  loadKeyGroups();
}

/** 重点人群 of my grid: counts by tag from the block-data profile, people as the server masks them for my
 * role, and their buildings highlighted on the map. Hidden when the server has no block data. */
async function loadKeyGroups() {
  if (!state.grid || !state.caps?.profile) return;
  const prof = await apiJson(`/api/v1/areas/${state.grid.code}/profile`);
  const groups = Object.entries(prof?.tagged_groups || {});
  if (!groups.length) return;
  const buildings = new Set();
  const lines = [];
  for (const [tag, g] of groups.slice(0, 4)) {
    const page = await apiJson(`/api/v1/areas/${state.grid.code}/people?tag=${encodeURIComponent(tag)}&limit=20&purpose=${encodeURIComponent('网格走访')}`);
    for (const r of page?.rows || []) if (r.building_code) buildings.add(r.building_code);
    const names = (page?.rows || []).slice(0, 3).map((r) => r.name || r.age_band || '').filter(Boolean).join('、');
    lines.push(`<li><b>${escapeHtml(g.label)}</b> ${g.people} 人${names ? ` · ${escapeHtml(names)}` : ''}</li>`);
  }
  $('#key-panel ul').innerHTML = lines.join('');
  $('#key-panel').hidden = false;
  state.keyBuildings = buildings.size;
  if (map.getLayer('key-buildings')) map.setFilter('key-buildings', ['in', ['get', 'building_code'], ['literal', [...buildings]]]);
}

function cacheGridTiles(doc, bbox) {
  // ask the service worker to keep my grid's public tiles (z13–17) for offline viewing
  if (!navigator.serviceWorker) return;
  const urls = [];
  const lon2x = (lon, z) => Math.floor(((lon + 180) / 360) * 2 ** z);
  const lat2y = (lat, z) => Math.floor(((1 - Math.log(Math.tan((lat * Math.PI) / 180) + 1 / Math.cos((lat * Math.PI) / 180)) / Math.PI) / 2) * 2 ** z);
  for (const l of doc.layers) {
    if (!l.public) continue;
    for (let z = Math.max(13, l.minzoom); z <= Math.min(17, l.maxzoom); z += 1) {
      for (let x = lon2x(bbox[0], z); x <= lon2x(bbox[2], z); x += 1) {
        for (let y = lat2y(bbox[3], z); y <= lat2y(bbox[1], z); y += 1) urls.push(l.tiles[0].replace('{z}', z).replace('{x}', x).replace('{y}', y));
      }
    }
  }
  navigator.serviceWorker.ready.then((reg) => {
    reg.active?.postMessage({ type: 'cache-tiles', urls: urls.slice(0, 400) });
    state.tilesRequested = Math.min(urls.length, 400);
  });
}

function choose(lon, lat, source) {
  chosen = { lon, lat, source };
  $('#where-text').textContent = `${source}：${lon.toFixed(5)}, ${lat.toFixed(5)}`;
  map?.getSource('chosen')?.setData({ type: 'Feature', geometry: { type: 'Point', coordinates: [lon, lat] }, properties: {} });
}

// --- tasks --------------------------------------------------------------------------------------------
async function loadTasks() {
  const fresh = await apiJson('/api/v1/tasks');
  if (fresh) save('gridserver.m.tasks', fresh);
  const data = fresh || load('gridserver.m.tasks', null); // offline: the last list seen
  if (!data) return;
  state.tasks = data.items.map((t) => t.id);
  $('#task-count').textContent = data.total ? String(data.total) : '';
  const now = Date.now();
  $('#task-list').innerHTML = data.items.map((t) => {
    const due = t.due_at ? new Date(t.due_at) : null;
    const late = due && due.getTime() < now;
    return `<li data-id="${t.id}" class="${late ? 'late' : ''}"><b>#${t.id} ${escapeHtml(t.item_label || t.category_label || t.category)}</b>
      <span class="st">${escapeHtml(WORKER_STEP[t.status] || t.status_label || STATUS_LABELS[t.status] || t.status)}</span>
      <span class="due">${due ? `${late ? '已超期' : '剩余'} ${span(Math.abs(due.getTime() - now))} · 期限 ${shortTime(due)}` : '无期限'}</span>
      <span class="desc">${escapeHtml((t.description || '').slice(0, 40))}</span></li>`;
  }).join('') || '<li class="empty">暂无待办任务</li>';
}

// What the worker is to do next, rather than where the case stands: a resolved case waits for their return visit.
const WORKER_STEP = { accepted: '待处置', dispatched: '待处置', in_progress: '处置中', resolved: '待核查' };

/** "3 天" / "5 小时" / "20 分钟": how far a deadline is, in the largest whole unit. */
function span(ms) {
  const min = Math.floor(ms / 60000);
  if (min >= 2880) return `${Math.floor(min / 1440)} 天`;
  if (min >= 60) return `${Math.floor(min / 60)} 小时`;
  return `${Math.max(1, min)} 分钟`;
}

/** "12月7日 02:49": a deadline on a phone line (no year, no seconds). */
function shortTime(d) {
  const hm = d.toLocaleTimeString('zh-CN', { hour: '2-digit', minute: '2-digit', hour12: false });
  return `${d.getMonth() + 1}月${d.getDate()}日 ${hm}`;
}

const ACTION_LABELS = { accept: '受理', dispatch: '派遣', start: '开始处置', progress: '进度', resolve: '处置完成',
  verify: '回访核实', close: '结案', return: '退回', decline: '无法办理', escalate: '上报上级', comment: '备注', supervise: '督办',
  report: '上报', relocate: '修正位置/类别', attach: '附件', rate: '评价', reopen: '重新办理', merge: '合并', route: '分拨',
  auto_dispatch: '自动派遣', redispatch: '重新派遣' };

// The step that moves a case forward comes first and stands out; corrections and hand-backs follow.
const FORWARD = ['start', 'resolve', 'verify', 'accept', 'dispatch', 'close'];
const AFTER = ['rework', 'relocate', 'comment', 'return', 'decline', 'escalate'];
const rank = (name) => {
  const k = [...FORWARD, ...AFTER].indexOf(name);
  return k < 0 ? 99 : k;
};

async function openTask(id) {
  show('task-view');
  const v = $('#task-view');
  const [inc, ev, acts] = await Promise.all([apiJson(`/api/v1/incidents/${id}`), apiJson(`/api/v1/incidents/${id}/events`),
    apiJson(`/api/v1/incidents/${id}/actions`)]);
  if (!inc) { v.querySelector('.title').textContent = `无法读取事件 #${id}`; return; }
  v.dataset.id = id;
  v.querySelector('.title').textContent = `#${inc.id} ${inc.item_label || inc.category_label || inc.category}`;
  const facts = [['状态', inc.status_label || STATUS_LABELS[inc.status] || inc.status], ['网格', inc.grid_name || inc.grid_code],
    ['地址', inc.address], ['描述', inc.description], ['期限', formatTime(inc.due_at)], ['上报时间', formatTime(inc.created_at)]];
  v.querySelector('.facts').innerHTML = facts.filter(([, x]) => x).map(([k, x]) => `<dt>${k}</dt><dd>${escapeHtml(x)}</dd>`).join('');
  const allowed = (acts?.allowed_actions || []).map((a) => ({ name: typeof a === 'string' ? a : a.name || a.action, label: a.label }))
    .sort((a, b) => rank(a.name) - rank(b.name));
  v.querySelector('.actions').innerHTML = allowed.map((a, k) => {
    const primary = k === 0 && FORWARD.includes(a.name) ? ' class="primary"' : '';
    return `<button type="button"${primary} data-action="${escapeHtml(a.name)}">${escapeHtml(ACTION_LABELS[a.name] || (a.label ?? a.name))}</button>`;
  }).join('') + '<label class="photo">附照片（处置完成时） <input type="file" accept="image/*" capture="environment"><span class="file-name"></span></label>';
  v.querySelector('.history').innerHTML = (ev?.events || []).map((e) => `<li><b>${escapeHtml(e.action_label || ACTION_LABELS[e.action] || e.action)}</b>
    ${escapeHtml(e.actor_name || e.actor || '')} <time>${formatTime(e.at || e.created_at)}</time>
    <div>${escapeHtml(e.note || '')}</div></li>`).join('');
}

// Actions the server refuses without a note (workflow.py needs_note); the others ask only for a confirmation.
const NEEDS_NOTE = ['resolve', 'return', 'decline', 'rework', 'comment', 'escalate', 'supervise'];

async function act(id, action) {
  const label = ACTION_LABELS[action] || action;
  let note = '';
  if (NEEDS_NOTE.includes(action)) {
    const typed = window.prompt(`${label}：请填写说明`, '');
    if (typed === null) return; // 取消: nothing is done
    note = typed.trim();
    if (!note) { window.alert(`${label}需要填写说明`); return; }
  } else if (!window.confirm(`确认${label}？`)) {
    return;
  }
  const file = $('#task-view input[type=file]').files[0];
  const key = uuid();
  if (file) {
    const fd = new FormData();
    fd.append('files', file, file.name);
    fd.append('note', note);
    await api(`/api/v1/incidents/${id}/attachments`, { method: 'POST', body: fd, headers: { 'Idempotency-Key': `${key}-photo` } });
  }
  const r = await api(`/api/v1/incidents/${id}/actions/${action}`, { method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Idempotency-Key': key }, body: JSON.stringify({ note }) });
  const d = await r.json().catch(() => ({}));
  if (!r.ok) window.alert(`操作失败：${d.detail || r.status}`);
  openTask(id);
}

// --- categories -----------------------------------------------------------------------------------
async function loadCategories() {
  const fresh = await apiJson('/api/v1/incidents/categories');
  if (fresh) save('gridserver.m.categories', fresh);
  const tree = fresh || load('gridserver.m.categories', []); // offline: the last list seen
  state.categories = tree.flatMap((c) => [{ code: c.code, label: c.label || c.name, parent: null },
    ...(c.items || []).map((i) => ({ code: i.code, label: i.label || i.name, parent: c.label || c.name, parentCode: c.code }))]);
  renderCategories('');
}

// Two taps without search: a category (two columns), then one of its items, which is what routing uses
// (乱张贴小广告 goes to the grid worker, 暴露垃圾 to the street's sanitation station); "只选大类" keeps the category.
function renderCategories(q) {
  const list = $('#cat-list');
  const open = !q && state.openCategory;
  const shown = q ? state.categories.filter((c) => c.label.includes(q) || (c.parent || '').includes(q) || c.code.includes(q))
    : state.categories.filter((c) => (open ? c.parent && c.parentCode === open : !c.parent));
  list.className = q ? '' : 'grid';
  const item = (c) => `<li data-code="${escapeHtml(c.code)}">${q && c.parent
    ? `<small>${escapeHtml(c.parent)} ›</small> ` : ''}${escapeHtml(c.label)}</li>`;
  const head = open ? `<li class="back" data-back="1">‹ 全部类别</li><li class="whole" data-code="${escapeHtml(open)}">只选大类</li>` : '';
  list.innerHTML = head + shown.slice(0, 30).map(item).join('');
}

function pickCategory(code) {
  const c = state.categories.find((x) => x.code === code);
  if (!c) return;
  $('#report-form').category.value = code;
  $('#cat-chosen').textContent = `已选：${c.parent ? `${c.parent} › ` : ''}${c.label}`;
  const hasItems = !c.parent && state.categories.some((x) => x.parentCode === code);
  if (hasItems && state.openCategory !== code && !$('#cat-search').value.trim()) {
    state.openCategory = code; // the category is chosen already; its items refine it
    renderCategories('');
    return;
  }
  state.openCategory = null;
  $('#cat-list').innerHTML = '';
}

// --- drafts and the outbox (IndexedDB, queue.js) ---------------------------------------------------
function formDraft() {
  const f = $('#report-form');
  const file = f.photo.files[0];
  // the photo goes into IndexedDB as a Blob (a copy of the bytes, not a data: URL)
  const photo = file ? { name: file.name, type: file.type, blob: file.slice(0, file.size, file.type) } : carriedPhoto;
  return { key: uuid(), category: f.category.value, description: f.description.value, point: chosen,
    photo, saved_at: new Date().toISOString() };
}

function resetForm() {
  const f = $('#report-form');
  f.reset();
  f.category.value = '';
  $('#cat-chosen').textContent = '未选择类别';
  state.openCategory = null;
  renderCategories(''); // the categories again for the next report (a pick had folded the list away)
  chosen = null;
  carriedPhoto = null;
  editingDraft = null;
  $('#report-form .file-name').textContent = '';
  $('#where-text').textContent = '未定位';
  map?.getSource('chosen')?.setData({ type: 'FeatureCollection', features: [] });
}

async function renderQueues() {
  const [drafts, outbox] = await Promise.all([queue.all('drafts'), queue.all('outbox')]);
  state.drafts = drafts.length;
  state.outbox = outbox.length;
  $('#draft-count').textContent = drafts.length ? `${drafts.length} 条` : '';
  $('#outbox-count').textContent = outbox.length ? `${outbox.length} 条` : '';
  const photo = (d) => (d.photo?.blob ? ` · 照片 ${(d.photo.blob.size / 1048576).toFixed(1)} MB` : '');
  $('#drafts').innerHTML = drafts.map((d) => `<li data-key="${escapeHtml(d.key)}">${escapeHtml(d.description || '(无描述)')}${photo(d)}
    ${d.error ? `<small class="error">${escapeHtml(d.error)}</small>` : ''}
    <button type="button" data-edit="${escapeHtml(d.key)}">继续编辑</button><button type="button" data-del="${escapeHtml(d.key)}">删除</button></li>`).join('');
  $('#outbox').innerHTML = outbox.map((d) => `<li>${escapeHtml(d.description || '(无描述)')}${photo(d)} · 等待网络</li>`).join('');
}

const RETRY_LATER = (status) => status >= 500 || [401, 408, 429].includes(status);

let flushing = false;
/** Send every queued report; each keeps its Idempotency-Key, so a retry after a lost answer never duplicates. */
async function flushOutbox() {
  if (flushing || !navigator.onLine) return;
  flushing = true;
  try {
    for (const item of await queue.all('outbox')) {
      let r;
      try {
        r = await api('/api/v1/incidents', { method: 'POST', headers: { 'Content-Type': 'application/json', 'Idempotency-Key': item.key },
          body: JSON.stringify({ lon: item.point.lon, lat: item.point.lat, crs: 'wgs84', category: item.category, description: item.description }) });
      } catch { break; } // still offline
      const body = await r.json().catch(() => ({}));
      let photoNote = '';
      if (r.ok && item.photo?.blob) {
        // keyed like the report: resent after a lost answer, the server stores the photo once
        const fd = new FormData();
        fd.append('files', item.photo.blob, item.photo.name || 'photo.jpg');
        let pr;
        try {
          pr = await api(`/api/v1/incidents/${body.id}/attachments`, { method: 'POST', body: fd, headers: { 'Idempotency-Key': `${item.key}-photo` } });
        } catch { break; } // the network went again: report and photo are resent later, both keyed
        if (!pr.ok && RETRY_LATER(pr.status)) break;
        if (!pr.ok) photoNote = `；照片未被接收：${(await pr.json().catch(() => ({}))).detail || pr.status}`;
      }
      if (r.ok) {
        state.sent.push(body.id);
        await queue.remove('outbox', item.key);
        $('#report-msg').textContent = `已发送：事件 #${body.id}（${body.grid_name || body.grid_code || ''}）${photoNote}`;
      } else if (r.status >= 400 && r.status < 500 && !RETRY_LATER(r.status)) {
        // refused for good (e.g. outside my grid): back to drafts with the reason, not retried blindly
        // under a new key: the refused one is spent (the server may keep its answer)
        await queue.move('outbox', 'drafts', { ...item, key: uuid(), error: body.detail || `HTTP ${r.status}` }, item.key);
        $('#report-msg').textContent = `未能提交：${body.detail || r.status}（已放回草稿）`;
      } else break; // server or auth trouble: keep it queued
    }
  } catch (err) {
    console.error('待发送队列出错', err);
  } finally {
    flushing = false;
    await renderQueues();
  }
}

async function submitReport(e) {
  e.preventDefault();
  const d = formDraft();
  if (!d.category) { $('#report-msg').textContent = '请选择类别'; return; }
  if (!d.point) { $('#report-msg').textContent = '请定位：用我的位置或在地图上选'; return; }
  try {
    if (editingDraft) await queue.move('drafts', 'outbox', { ...d, key: editingDraft, error: undefined }); // its own key: never sent
    else await queue.put('outbox', d);
  } catch (err) { $('#report-msg').textContent = `无法暂存：${err.message}`; return; } // e.g. storage full: the form stays
  resetForm();
  $('#report-msg').textContent = navigator.onLine ? '正在发送…' : '当前离线，已加入待发送，联网后自动提交';
  await renderQueues();
  flushOutbox();
}

// --- patrol -------------------------------------------------------------------------------------------
let watchId = null;
let batchTimer = null;
function patrolState() { return load(PATROL, null); }

async function sendPatrolPoints() {
  const p = patrolState();
  if (!p || !navigator.onLine) return;
  try {
    if (!p.id) {
      const r = await api('/api/v1/patrols', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ client_key: p.key }) });
      if (!r.ok) return;
      p.id = (await r.json()).id;
      save(PATROL, p);
    }
    const pending = p.points.filter((x) => x.seq >= p.sent);
    if (pending.length) {
      const r = await api(`/api/v1/patrols/${p.id}/points`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ points: pending }) });
      if (r.ok) { const cur = patrolState(); cur.id = p.id; cur.sent = pending[pending.length - 1].seq + 1; save(PATROL, cur); }
    }
    const now = patrolState(); // after the batch above
    if (now.stopping && now.sent >= now.points.length) {
      await api(`/api/v1/patrols/${now.id}/stop`, { method: 'POST' });
      localStorage.removeItem(PATROL);
      loadCoverage();
    }
  } catch { /* offline: the points stay in localStorage */ }
  renderPatrol();
}

function renderPatrol() {
  const p = patrolState();
  state.patrol = p ? { id: p.id, points: p.points.length, sent: p.sent } : null;
  $('#patrol-toggle').textContent = p && !p.stopping ? '结束巡查' : '开始巡查';
  $('#patrol-toggle').classList.toggle('on', Boolean(p && !p.stopping));
  $('#patrol-info').textContent = p ? `已记录 ${p.points.length} 点，未上传 ${p.points.length - p.sent}` : (state.coverageText || '');
  if (map?.getSource('track') && p) {
    map.getSource('track').setData({ type: 'Feature', properties: {},
      geometry: { type: 'LineString', coordinates: p.points.map((x) => [x.lon, x.lat]) } });
  }
}

function addFix(pos) {
  const p = patrolState();
  if (!p || p.stopping) return;
  const c = pos.coords;
  p.points.push({ seq: p.points.length, lon: c.longitude, lat: c.latitude, accuracy: c.accuracy, t: new Date(pos.timestamp || Date.now()).toISOString() });
  save(PATROL, p);
  chosen = chosen || null;
  renderPatrol();
  if (p.points.length - p.sent >= 10) sendPatrolPoints();
}

function togglePatrol() {
  const p = patrolState();
  if (!p) {
    save(PATROL, { key: uuid(), id: null, points: [], sent: 0, started: new Date().toISOString() });
    watchId = navigator.geolocation?.watchPosition(addFix, () => {}, { enableHighAccuracy: true, maximumAge: 5000 });
    batchTimer = setInterval(sendPatrolPoints, 30_000);
    sendPatrolPoints();
  } else {
    p.stopping = true;
    save(PATROL, p);
    if (watchId != null) navigator.geolocation.clearWatch(watchId);
    clearInterval(batchTimer);
    sendPatrolPoints();
  }
  renderPatrol();
}

async function loadCoverage() {
  if (!state.grid) return;
  const cov = await apiJson(`/api/v1/patrols/coverage?area=${state.grid.code}&geometry=true&mine=true`);
  const g = cov?.grids?.find((x) => x.grid_code === state.grid.code);
  if (!g) return;
  state.coverage = g.coverage;
  state.coverageText = `今日巡查覆盖 ${(100 * g.coverage).toFixed(0)}%`;
  if (g.covered && map?.getSource('covered')) map.getSource('covered').setData({ type: 'Feature', geometry: g.covered, properties: {} });
  renderPatrol();
}

// --- start ----------------------------------------------------------------------------------------
async function start() {
  setNet();
  window.addEventListener('online', () => { setNet(); flushOutbox(); sendPatrolPoints(); });
  window.addEventListener('offline', setNet);
  if ('serviceWorker' in navigator) navigator.serviceWorker.register('/m/sw.js', { scope: '/m/' }).catch(() => {});
  let me = null;
  if (getToken()) {
    try {
      const r = await api('/api/v1/auth/me');
      if (r.ok) { me = await r.json(); save('gridserver.m.me', me); } else if (r.status >= 500) me = load('gridserver.m.me', null);
    } catch {
      me = load('gridserver.m.me', null); // offline: the last account that logged in here
      state.offlineStart = true;
    }
  }
  if (!me) {
    setToken(null);
    $('#login-view').hidden = false;
    $('#login-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const f = e.target;
      try {
        await login(f.username.value, f.password.value);
        window.location.reload();
      } catch (err) { f.querySelector('.error').textContent = `登录失败：${err.message}`; }
    });
    state.ready = true;
    state.view = 'login';
    return;
  }
  $('#app').hidden = false;
  state.caps = await apiJson('/api/v1/screen/capabilities') || {};
  state.user = me.username;
  $('#who').textContent = me.full_name || me.username;
  state.user = me.username;
  if (me.scope_code && me.scope_code.length === 15) {
    const g = await apiJson(`/api/v1/areas/${me.scope_code}`);
    if (g) save('gridserver.m.grid', { code: g.code, name: g.name, bbox: g.bbox });
    state.grid = load('gridserver.m.grid', null);
    if (state.grid?.code !== me.scope_code) state.grid = null;
    if (state.grid) $('#grid-name').textContent = state.grid.name;
  }
  $('#logout').addEventListener('click', () => { setToken(null); window.location.reload(); });
  for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => show(b.dataset.view));
  $('#task-list').addEventListener('click', (e) => { const li = e.target.closest('li[data-id]'); if (li) openTask(Number(li.dataset.id)); });
  $('#task-view .back').addEventListener('click', () => show('tasks-view'));
  $('#task-view .actions').addEventListener('click', (e) => {
    const a = e.target.dataset.action;
    if (a) act(Number($('#task-view').dataset.id), a);
  });
  $('#cat-search').addEventListener('input', (e) => renderCategories(e.target.value.trim()));
  $('#cat-list').addEventListener('click', (e) => {
    if (e.target.closest('li[data-back]')) { state.openCategory = null; renderCategories(''); return; }
    const li = e.target.closest('li[data-code]');
    if (li) pickCategory(li.dataset.code);
  });
  $('#use-gps').addEventListener('click', () => navigator.geolocation?.getCurrentPosition(
    (pos) => choose(pos.coords.longitude, pos.coords.latitude, 'GPS'),
    (err) => { $('#where-text').textContent = `无法定位：${err.message}`; }, { enableHighAccuracy: true, timeout: 10000 }));
  $('#pick-map').addEventListener('click', () => { pickMode = true; $('#map-hint').hidden = false; show('map-view'); });
  $('#report-form').addEventListener('submit', submitReport);
  $('#save-draft').addEventListener('click', async () => {
    try {
      await queue.put('drafts', { ...formDraft(), ...(editingDraft ? { key: editingDraft } : {}) });
    } catch (err) { $('#report-msg').textContent = `无法存草稿：${err.message}`; return; }
    resetForm();
    $('#report-msg').textContent = '已存为草稿';
    renderQueues();
  });
  $('#drafts').addEventListener('click', async (e) => {
    const key = e.target.dataset.edit ?? e.target.dataset.del;
    if (!key) return;
    const d = (await queue.all('drafts')).find((x) => x.key === key);
    if (!d) return;
    if (e.target.dataset.edit != null) {
      resetForm();
      const f = $('#report-form');
      f.description.value = d.description || '';
      if (d.category) pickCategory(d.category);
      if (d.point) choose(d.point.lon, d.point.lat, d.point.source || '草稿位置');
      carriedPhoto = d.photo || null; // the draft's photo goes along when it is sent or saved again
      if (carriedPhoto) $('#report-form .file-name').textContent = `已附：${carriedPhoto.name || '照片'}`;
      editingDraft = key;
      $('#report-msg').textContent = '正在编辑草稿';
      return;
    }
    await queue.remove('drafts', key);
    renderQueues();
  });
  $('#patrol-toggle').addEventListener('click', togglePatrol);
  document.addEventListener('change', (e) => {
    if (e.target.type !== 'file') return;
    const name = e.target.parentElement.querySelector('.file-name');
    if (name) name.textContent = e.target.files[0] ? `已选：${e.target.files[0].name}` : '';
  });
  try {
    state.migrated = await queue.migrateFromLocalStorage(OLD_QUEUE);
  } catch (err) { console.error('无法迁移旧的离线队列', err); }
  // the map does not hold the app back: tasks, reports and drafts work while it loads (or cannot, offline)
  const mapReady = setupMap().catch((err) => { console.warn('地图加载失败', err); });
  await Promise.all([loadCategories(), loadTasks()]);
  state.mapReady = mapReady;
  await renderQueues();
  renderPatrol();
  if (patrolState() && !patrolState().stopping) {
    watchId = navigator.geolocation?.watchPosition(addFix, () => {}, { enableHighAccuracy: true });
    batchTimer = setInterval(sendPatrolPoints, 30_000);
  }
  setInterval(flushOutbox, 15_000);
  flushOutbox();
  state.view = 'app';
  state.ready = true;
}

start().catch((err) => { console.error(err); $('#net').textContent = `加载失败：${err.message}`; });
void getUser;
