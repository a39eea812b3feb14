// Shared by the map pages: the bearer token (localStorage), fetch with it, labels, escaping.
export const TOKEN_KEY = 'gridserver.token';
export const USER_KEY = 'gridserver.user';
export const FONT = ['WenQuanYi Micro Hei', 'Noto Sans CJK SC', 'Microsoft YaHei', 'PingFang SC', 'sans-serif'];

export const STATUS_LABELS = {
  reported: '已上报', accepted: '已受理', assigned: '已派遣', dispatched: '已派遣', processing: '处置中',
  in_progress: '处置中', returned: '已退回', declined: '无法办理', resolved: '已处置', verified: '已核查',
  closed: '已结案', rated: '已评价', escalated: '已升级', merged: '已合并', rejected: '不予受理',
};
export const ROLE_LABELS = {
  admin: '管理员', district_operator: '区级受理员', street_operator: '街道受理员', community_operator: '社区受理员',
  grid_worker: '网格员', dept_handler: '部门处置员', analyst: '分析员', citizen: '公众',
};

export const getToken = () => localStorage.getItem(TOKEN_KEY);
export function setToken(token, user) {
  if (token) localStorage.setItem(TOKEN_KEY, token); else { localStorage.removeItem(TOKEN_KEY); localStorage.removeItem('gridserver.refresh'); }
  if (user) localStorage.setItem(USER_KEY, JSON.stringify(user)); else if (!token) localStorage.removeItem(USER_KEY);
}
export function getUser() {
  try { return JSON.parse(localStorage.getItem(USER_KEY) || 'null'); } catch { return null; }
}

export function authHeaders(extra = {}) {
  const t = getToken();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : { ...extra };
}

export const REFRESH_KEY = 'gridserver.refresh';
let refreshing = null;

/** Trade the stored refresh token for a new pair (access tokens live 30 min; walls run for days). */
export async function refreshToken() {
  const rt = localStorage.getItem(REFRESH_KEY);
  if (!rt) return false;
  if (!refreshing) {
    refreshing = fetch('/api/v1/auth/refresh', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: rt }),
    }).then(async (r) => {
      if (!r.ok) return false;
      const d = await r.json();
      localStorage.setItem(TOKEN_KEY, d.access_token);
      if (d.refresh_token) localStorage.setItem(REFRESH_KEY, d.refresh_token);
      return true;
    }).catch(() => false).finally(() => { setTimeout(() => { refreshing = null; }, 0); });
  }
  return refreshing;
}

/** fetch with the bearer token (one refresh-and-retry on 401); resolves to the Response. */
export async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: authHeaders(options.headers || {}) });
  if (r.status === 401 && getToken() && await refreshToken()) {
    return fetch(path, { ...options, headers: authHeaders(options.headers || {}) });
  }
  return r;
}

/** JSON of a GET, or null when the endpoint is missing/forbidden (panels then hide themselves). */
export async function apiJson(path) {
  try {
    const r = await api(path);
    if (!r.ok) return null;
    return await r.json();
  } catch {
    return null;
  }
}

/** Log in through the OAuth2 password endpoint; stores the token; returns the user or throws. */
export async function login(username, password) {
  const body = new URLSearchParams({ username, password });
  const r = await fetch('/api/v1/auth/token', { method: 'POST', body });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.detail || `HTTP ${r.status}`);
  setToken(data.access_token, null);
  if (data.refresh_token) localStorage.setItem(REFRESH_KEY, data.refresh_token);
  const me = await apiJson('/api/v1/auth/me') || await apiJson('/api/v1/users/me') || { username };
  setToken(data.access_token, { ...me, username: me.username || username });
  return getUser();
}

/** MapLibre transformRequest: our own private tile layers get the bearer token. */
export function transformRequest(url) {
  const t = getToken();
  if (t && url.startsWith(window.location.origin) && url.includes('/tiles/incidents/')) {
    return { url, headers: { Authorization: `Bearer ${t}` } };
  }
  return { url };
}

export function escapeHtml(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

export function formatTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString('zh-CN', { hour12: false });
}

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {
    const r = (Math.random() * 16) | 0;
    return (c === 'x' ? r : (r & 0x3) | 0x8).toString(16);
  });
}
