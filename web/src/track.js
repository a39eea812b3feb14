// 诉求进度查询 /track: a citizen enters the tracking code their report got (or follows /track?code=…),
// sees each step in plain words (GET /api/v1/track/{code}: no personal data) and rates a closed case
// (POST …/rating; "不满意" reopens it). No account, no map: a page that loads fast on any phone.
import './track.css';
import { escapeHtml, uuid } from './common.js';

const $ = (s) => document.querySelector(s);
const RATING_TEXT = { satisfied: '满意', basic: '基本满意', unsatisfied: '不满意' };
const state = { code: null, view: null, ready: false };
window.__trackState = state;

function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString('zh-CN', { hour12: false, year: 'numeric', month: 'numeric',
    day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

function say(text, error = false) {
  $('#message').textContent = text;
  $('#message').className = error ? 'error' : '';
}

async function errorText(r) {
  try {
    const body = await r.json();
    return typeof body.detail === 'string' ? body.detail : JSON.stringify(body.detail);
  } catch {
    return `HTTP ${r.status}`;
  }
}

function show(v) {
  state.view = v;
  $('#result').hidden = false;
  $('#result .status').textContent = v.status_text;
  const facts = [['查询码', v.tracking_code], ['事项', v.item || v.category], ['所在', [v.street, v.community].filter(Boolean).join(' ')],
    ['承办部门', v.department], ['提交时间', when(v.reported_at)], ['办理期限', v.due_at ? when(v.due_at) : ''],
    ['评价', v.rating ? RATING_TEXT[v.rating] || v.rating : '']];
  $('#result .facts').innerHTML = facts.filter(([, x]) => x).map(([k, x]) => `<dt>${k}</dt><dd>${escapeHtml(x)}</dd>`).join('');
  $('#result .steps').innerHTML = (v.steps || []).map((s) => `<li><b>${escapeHtml(s.step)}</b>
    <time datetime="${escapeHtml(s.at)}">${when(s.at)}</time></li>`).join('');
  $('#rating').hidden = !v.can_rate;
}

async function lookup(code) {
  const c = (code || '').replace(/\s+/g, '').toUpperCase();
  if (!c) return;
  state.code = c;
  $('#code').value = c;
  history.replaceState(null, '', `/track?code=${encodeURIComponent(c)}`);
  say('查询中…');
  const r = await fetch(`/api/v1/track/${encodeURIComponent(c)}`).catch(() => null);
  if (!r) { say('网络不可用，请稍后再试', true); return; }
  if (!r.ok) {
    $('#result').hidden = true;
    say(r.status === 404 ? `未找到查询码 ${c}，请核对后再试` : await errorText(r), true);
    return;
  }
  say('');
  show(await r.json());
}

async function rate(e) {
  e.preventDefault();
  const form = new FormData($('#rating'));
  const button = $('#rating button');
  button.disabled = true;
  const r = await fetch(`/api/v1/track/${encodeURIComponent(state.code)}/rating`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', 'Idempotency-Key': uuid() },
    body: JSON.stringify({ rating: form.get('rating'), comment: form.get('comment') || '' }),
  }).catch(() => null);
  button.disabled = false;
  if (!r || !r.ok) { say(r ? await errorText(r) : '网络不可用，请稍后再试', true); return; }
  const v = await r.json();
  show(v);
  say(v.reopened ? '感谢您的评价，您的诉求将重新办理' : '感谢您的评价');
}

$('#lookup').addEventListener('submit', (e) => { e.preventDefault(); lookup($('#code').value); });
$('#rating').addEventListener('submit', rate);
const first = new URLSearchParams(location.search).get('code');
(first ? lookup(first) : Promise.resolve()).finally(() => { state.ready = true; });
