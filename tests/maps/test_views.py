"""The command-center wall (/screen) and the grid-worker phone app (/m/) in a real headless Chromium.

Wall: at 1920×1080 and 3840×2160 it loads with no console error, no request leaving 127.0.0.1 and no
scrolling, shades the small city's grids, fills its panels, drills into a street, and a new incident
posted through the API appears on it (pushed over SSE, no reload) within 2 s.
Phone (360×740): a grid worker logs in through the form, sees only their own tasks, and reports two
incidents with a 2 MB photo each while the network is cut (queued in IndexedDB); after reconnecting each
arrives exactly once with its photo byte for byte, even when the phone replays a report. A queue left in
localStorage by the earlier version moves to IndexedDB once. With every request failing (emulated
offline, or the server process stopped) the app starts from its service worker and draws my grid.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
import struct
import time
import uuid
import zlib
from urllib.parse import urlparse

import pytest
from sqlalchemy import text

from gridserver.maps.routes import BUILD_HINT, DIST_DIR

pytestmark = pytest.mark.browser

WORKER_GRID = "440104001001001"  # 113.25–113.26 × 23.1425–23.15
OTHER_GRID = "440104003002004"
APP_READY = "() => window.__mobileState && window.__mobileState.ready && window.__mobileState.view === 'app'"


@pytest.fixture(scope="module")
def browser(chromium):
    if not (DIST_DIR / "screen.js").is_file() or not (DIST_DIR / "mobile.js").is_file():
        pytest.skip(f"map front-end not built: run `{BUILD_HINT}`")
    return chromium


def _watch(pg):
    pg.errors, pg.requests = [], []
    pg.on("console", lambda m: pg.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))
    pg.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED"
          else pg.errors.append(f"request failed: {r.url} {r.failure}"))
    pg.on("request", lambda r: pg.requests.append(r.url))
    return pg


def _only_local(pg, live_url):
    host = urlparse(live_url).hostname
    for url in pg.requests:
        u = urlparse(url[len("blob:"):] if url.startswith("blob:") else url)
        if u.scheme == "data":
            continue
        assert u.hostname == host == "127.0.0.1", f"request to a foreign host: {url}"


def _with_token(ctx, token):
    ctx.add_init_script(f"localStorage.setItem('gridserver.token', {json.dumps(token)});")


@pytest.fixture(scope="module")
def wall_incidents(http, small_city, admin_token, auth):
    """A few incidents in the small city, reported through the API."""
    ids = []
    for lon, lat in [(113.255, 23.146), (113.256, 23.147), (113.285, 23.123)]:
        r = http.post("/api/v1/incidents", headers=auth(admin_token),
                      json={"lon": lon, "lat": lat, "category": "construction", "description": "大屏测试"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def _open_wall(browser, live_url, token, width, height):
    ctx = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
    _with_token(ctx, token)
    pg = _watch(ctx.new_page())
    pg.set_default_timeout(90_000)
    pg.goto(live_url + "/screen")
    pg.wait_for_function("() => window.__screenState && window.__screenState.ready && window.__screenState.live")
    pg.wait_for_function("() => !window.__screenMap.isMoving() && window.__screenMap.loaded()")
    return ctx, pg


@pytest.mark.parametrize("width,height", [(1920, 1080), (3840, 2160)])
def test_wall_shows_the_city_with_shaded_grids_and_panels(browser, live_url, small_city, wall_incidents, admin_token,
                                                          screenshots, width, height):
    ctx, pg = _open_wall(browser, live_url, admin_token, width, height)
    try:
        assert pg.title() == "网格化管理指挥中心"
        codes = set(pg.evaluate(
            "() => window.__screenMap.queryRenderedFeatures({layers: ['grids-fill']}).map(f => f.properties.code)"))
        grids = {c for c, a in small_city.items() if a["level"] == "grid"}
        assert grids <= codes, "every small-city grid is on the wall"
        shaded = pg.evaluate("""() => Object.fromEntries(window.__screenMap.queryRenderedFeatures({layers: ['grids-fill']})
                                  .filter(f => f.state && f.state.v > 0).map(f => [f.properties.code, f.state.v]))""")
        assert shaded.get(WORKER_GRID, 0) >= 2, "the grid with two open incidents is shaded by its count"
        assert pg.inner_text('[data-kpi="今日上报"]').isdigit() and int(pg.inner_text('[data-kpi="今日上报"]')) >= 3
        assert "街道" in pg.inner_text("#ranking ol")
        # a wall never scrolls
        assert pg.evaluate("() => document.documentElement.scrollHeight <= window.innerHeight + 1")
        assert pg.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
        pg.screenshot(path=str(screenshots / f"screen-{width}x{height}.png"))
        _only_local(pg, live_url)
        assert pg.errors == []
    finally:
        ctx.close()


def test_new_incident_appears_on_the_wall_without_reload(browser, live_url, http, small_city, admin_token, auth,
                                                         screenshots):
    ctx, pg = _open_wall(browser, live_url, admin_token, 1920, 1080)
    try:
        pg.evaluate("() => { window.__notReloaded = true; }")
        r = http.post("/api/v1/incidents", headers=auth(admin_token),
                      json={"lon": 113.275, "lat": 23.135, "category": "construction", "description": "实时推送测试"})
        assert r.status_code == 201
        iid = r.json()["id"]
        # pushed over SSE: on the live layer within 2 s (the summary itself only polls every 60 s)
        pg.wait_for_function(f"() => window.__screenState.liveIds.includes({iid})", timeout=2_000)
        assert pg.evaluate("() => window.__notReloaded === true")
        pg.wait_for_function(
            f"() => window.__screenMap.querySourceFeatures('live').some(f => f.properties.id === {iid} || f.properties.cluster)")
        assert f"#{iid}" in pg.inner_text("#ticker")
        pg.screenshot(path=str(screenshots / "screen-live.png"))
        assert pg.errors == []
    finally:
        ctx.close()


def test_wall_drills_from_district_to_street_with_a_profile(browser, live_url, small_city, admin_token, screenshots):
    ctx, pg = _open_wall(browser, live_url, admin_token, 1920, 1080)
    try:
        target = small_city["440104003"]["geom"].representative_point()
        px = pg.evaluate("([x, y]) => { const p = window.__screenMap.project([x, y]); return [p.x, p.y]; }",
                         [target.x, target.y])
        box = pg.locator("#map canvas").bounding_box()
        pg.mouse.click(box["x"] + px[0], box["y"] + px[1])
        pg.wait_for_selector("#profile:not([hidden])")
        pg.wait_for_function("() => window.__screenState.profile === '440104003'")
        assert pg.inner_text('#profile dd[data-field="编码"]') == "440104003"
        assert "街道" in pg.inner_text("#profile .title")
        assert "440104003" not in pg.inner_text("#crumbs") and pg.inner_text("#crumbs").startswith("全区")
        pg.wait_for_function("() => !window.__screenMap.isMoving()")
        pg.screenshot(path=str(screenshots / "screen-drill.png"))
        assert pg.errors == []
    finally:
        ctx.close()


def test_wall_names_late_datasets_by_kind_and_provider_with_days_late(browser, live_url, engine, admin_token):
    """数据时效提醒: "房屋 · 住建局 超期 369 天", never-updated ones first, datasets on time not listed."""
    from datetime import datetime, timedelta, timezone

    from gridserver.blockdata.datasets import RULE_DAYS, register

    names = ["buildings:墙测住建局", "people:墙测公安", "businesses:墙测市场监管"]
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        register(conn, names[0], "buildings", "墙测住建局", "monthly", last_update=now - timedelta(days=400, hours=1))
        register(conn, names[1], "people", "墙测公安", "monthly", last_update=None)
        register(conn, names[2], "businesses", "墙测市场监管", "weekly", last_update=now)
    ctx, pg = _open_wall(browser, live_url, admin_token, 1920, 1080)
    try:
        pg.wait_for_selector("#freshness:not([hidden]) li")
        items = [t.strip() for t in pg.locator("#freshness li").all_inner_texts()]
        ours = [t for t in items if "墙测" in t]
        assert ours == ["人口 · 墙测公安 从未更新", f"房屋 · 墙测住建局 超期 {400 - RULE_DAYS['monthly']} 天"], items
        assert not any("buildings:" in t for t in items)
        assert pg.errors == []
    finally:
        ctx.close()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM bd_datasets WHERE name = ANY(:n)"), {"n": names})


# --- the phone app -----------------------------------------------------------------------------------

@pytest.fixture
def worker(make_user):
    return make_user("grid_worker", WORKER_GRID, full_name="测试网格员")


def _task_incidents(engine, http, admin_token, auth):
    """One incident in the worker's grid and one elsewhere, both waiting for grid-level handling."""
    ids = []
    for lon, lat in [(113.2552, 23.1462), (113.285, 23.123)]:
        r = http.post("/api/v1/incidents", headers=auth(admin_token),
                      json={"lon": lon, "lat": lat, "category": "construction", "description": f"任务测试 {uuid.uuid4().hex[:6]}"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE incidents SET route_level = 'grid', status = 'dispatched', "
                          "due_at = now() + interval '1 day' WHERE id = ANY(:ids)"), {"ids": ids})
    return ids


def _phone(browser, **kw):
    ctx = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN", is_mobile=True, has_touch=True,
                              geolocation={"longitude": 113.2555, "latitude": 23.1465}, permissions=["geolocation"], **kw)
    pg = _watch(ctx.new_page())
    pg.set_default_timeout(60_000)
    return ctx, pg


def test_worker_logs_in_and_sees_only_their_tasks(browser, live_url, engine, http, small_city, worker, admin_token,
                                                   auth, screenshots):
    mine, other = _task_incidents(engine, http, admin_token, auth)
    ctx, pg = _phone(browser)
    try:
        pg.goto(live_url + "/m/")
        pg.wait_for_selector("#login-view:not([hidden])")
        pg.fill('#login-form input[name="username"]', worker["username"])
        pg.fill('#login-form input[name="password"]', worker["password"])
        pg.click('#login-form button[type="submit"]')
        pg.wait_for_function(APP_READY)
        assert pg.inner_text("#grid-name") == small_city[WORKER_GRID]["name"]
        pg.wait_for_function("() => window.__mobileMap.loaded() && !window.__mobileMap.isMoving()")
        pg.screenshot(path=str(screenshots / "mobile-map.png"))
        pg.click('#tabs button[data-view="tasks-view"]')
        pg.wait_for_selector(f'#task-list li[data-id="{mine}"]')
        shown = pg.evaluate("() => [...document.querySelectorAll('#task-list li[data-id]')].map(li => Number(li.dataset.id))")
        assert mine in shown and other not in shown
        api = http.get("/api/v1/tasks", headers=auth(worker)).json()["items"]
        assert shown == [t["id"] for t in api], "the list is the caller's own tasks, in deadline order"
        assert all(t["grid_code"].startswith(WORKER_GRID) for t in api)
        # the card says what the worker is to do and how long is left, not the case's status and a timestamp
        card = pg.inner_text(f'#task-list li[data-id="{mine}"]')
        task = next(t for t in api if t["id"] == mine)
        assert (task.get("item_label") or task["category_label"]) in card and "待处置" in card, card
        assert re.search(r"剩余 (23 小时|1 天) · 期限 \d+月\d+日 \d\d:\d\d\n", card + "\n"), card
        pg.screenshot(path=str(screenshots / "mobile-tasks.png"))
        pg.click(f'#task-list li[data-id="{mine}"]')
        pg.wait_for_function(f"() => document.querySelector('#task-view .title').textContent.startsWith('#{mine}')")
        pg.wait_for_selector("#task-view .actions button")
        # the step forward comes first and stands out (the API lists actions alphabetically)
        first = pg.locator("#task-view .actions button").first
        assert first.get_attribute("data-action") == "start" and first.get_attribute("class") == "primary"
        assert pg.locator("#task-view .actions button.primary").count() == 1
        pg.screenshot(path=str(screenshots / "mobile-task.png"))

        def status():
            return http.get(f"/api/v1/incidents/{mine}", headers=auth(worker)).json()["status"]

        def press(action, answer):  # answer: None = 取消, True = 确定, text = typed into the prompt
            seen = []

            def on_dialog(d):
                seen.append(d.type)
                d.dismiss() if answer is None else d.accept(answer if isinstance(answer, str) else "")
            pg.once("dialog", on_dialog)
            pg.click(f'#task-view .actions button[data-action="{action}"]')
            for _ in range(40):  # the dialog opens from the click handler
                if seen:
                    break
                pg.wait_for_timeout(50)
            return seen

        assert press("start", None) == ["confirm"] and status() == "dispatched", "取消 does nothing"
        assert press("start", True) == ["confirm"]
        pg.wait_for_selector('#task-view .actions button[data-action="resolve"]')
        assert status() == "in_progress"
        assert press("resolve", None) == ["prompt"] and status() == "in_progress", "取消 on the note does nothing"
        assert press("resolve", "已清理完毕") == ["prompt"]
        pg.wait_for_function(f"() => !document.querySelector('#task-view .actions button[data-action=\"resolve\"]')")
        assert status() == "resolved"
        _only_local(pg, live_url)
        assert pg.errors == []
    finally:
        ctx.close()


def _arrived(engine, description):
    """[(incident id, attachment size, attachment sha256)] of the incidents with this description."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            """SELECT i.id, a.size, a.sha256 FROM incidents i
               LEFT JOIN incident_attachments a ON a.incident_id = i.id WHERE i.description = :d ORDER BY i.id, a.id"""),
            {"d": description})]


def _big_png(seed: int, width: int = 1024, height: int = 700) -> bytes:
    """A valid PNG of random pixels, stored uncompressed: > 2 MB, like a phone photo."""
    rnd = random.Random(seed)
    raw = b"".join(b"\x00" + rnd.randbytes(width * 3) for _ in range(height))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)  # noqa: E731
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b""))


def _cut_off(error: str, reason: str) -> bool:
    """An error that only says a request could not be made: the network's reason, or ERR_FAILED for a request
    the service worker tried for the page (its tile cache) and could not answer either."""
    return reason in error or "net::ERR_FAILED" in error


def _report_tab(browser, live_url, worker):
    """The phone app, logged in as ``worker`` by token, on its report tab."""
    ctx, pg = _phone(browser)
    _with_token(ctx, worker["token"])
    pg.goto(live_url + "/m/")
    pg.wait_for_function(APP_READY)
    pg.click('#tabs button[data-view="report-view"]')
    return ctx, pg


def _fill_report(pg, label, description, photo):
    pg.fill("#cat-search", label)
    pg.click("#cat-list li >> nth=0")
    assert label in pg.inner_text("#cat-chosen")
    pg.fill('#report-form textarea[name="description"]', description)
    pg.click("#use-gps")
    pg.wait_for_function("() => document.querySelector('#where-text').textContent.startsWith('GPS')")
    pg.set_input_files('#report-form input[name="photo"]', str(photo))


def test_report_picks_a_category_then_its_item_in_two_taps(browser, live_url, http, small_city, worker):
    """Routing goes by item: a tap on a category (two columns) opens its items; 只选大类 keeps the category."""
    tree = http.get("/api/v1/incidents/categories").json()
    cat = next(c for c in tree if len(c.get("items") or []) >= 2)
    item = cat["items"][1]
    ctx, pg = _report_tab(browser, live_url, worker)
    try:
        tops = pg.locator("#cat-list li")
        assert tops.count() == len(tree)
        a, b = tops.nth(0).bounding_box(), tops.nth(1).bounding_box()
        assert abs(a["y"] - b["y"]) < 1 and b["x"] > a["x"] + a["width"] - 1, "two columns"
        pg.locator("#cat-list li", has_text=cat["label"]).first.click()
        assert pg.inner_text("#cat-chosen") == f"已选：{cat['label']}"
        assert pg.evaluate("() => document.querySelector('#report-form').category.value") == cat["code"]
        labels = pg.locator("#cat-list li[data-code]").all_inner_texts()
        assert labels == ["只选大类"] + [i["label"] for i in cat["items"]][:29]
        pg.locator(f'#cat-list li[data-code="{item["code"]}"]').click()
        assert pg.inner_text("#cat-chosen") == f"已选：{cat['label']} › {item['label']}"
        assert pg.evaluate("() => document.querySelector('#report-form').category.value") == item["code"]
        assert pg.locator("#cat-list li").count() == 0
        # back to the categories, and 只选大类 keeps the category alone
        pg.fill("#cat-search", cat["label"])
        pg.fill("#cat-search", "")
        pg.locator("#cat-list li", has_text=cat["label"]).first.click()
        pg.locator("#cat-list li.whole").click()
        assert pg.evaluate("() => document.querySelector('#report-form').category.value") == cat["code"]
        assert pg.locator("#cat-list li").count() == 0
        # once sent, the form is ready for the next report: the categories are listed again
        pg.fill('#report-form textarea[name="description"]', f"两步选类测试 {uuid.uuid4().hex[:6]}")
        pg.click("#use-gps")
        pg.wait_for_function("() => document.querySelector('#where-text').textContent.startsWith('GPS')")
        pg.click("#submit-report")
        pg.wait_for_function("() => window.__mobileState.sent.length === 1")
        assert pg.locator("#cat-list li").count() == len(tree) and pg.inner_text("#cat-chosen") == "未选择类别"
        assert pg.errors == []
    finally:
        ctx.close()


OUTBOX_JS = """async () => (await window.__mobileQueue.all('outbox'))
                 .map(i => ({key: i.key, description: i.description, size: i.photo.blob.size, blob: i.photo.blob instanceof Blob}))"""


def test_reports_made_offline_arrive_exactly_once_with_their_photos(browser, live_url, engine, http, small_city, worker,
                                                                    tmp_path, screenshots):
    """Two reports with a 2 MB photo each wait in IndexedDB while the network is cut and arrive once each."""
    label = http.get("/api/v1/incidents/categories").json()[0]["label"]
    photos, descriptions = [], []
    for i in range(2):
        photo = tmp_path / f"photo{i}.png"
        photo.write_bytes(_big_png(i))
        assert photo.stat().st_size >= 2 * 1024 * 1024
        photos.append(photo)
        descriptions.append(f"离线上报测试 {i} {uuid.uuid4().hex[:8]}")
    ctx, pg = _report_tab(browser, live_url, worker)
    try:

        ctx.set_offline(True)
        for i, (description, photo) in enumerate(zip(descriptions, photos)):
            _fill_report(pg, label, description, photo)
            pg.click("#submit-report")
            pg.wait_for_function(f"() => window.__mobileState.outbox === {i + 1}")
            assert "离线" in pg.inner_text("#report-msg")
        assert all(_arrived(engine, d) == [] for d in descriptions), "nothing reaches the server while offline"
        queued = pg.evaluate(OUTBOX_JS)
        assert [q["description"] for q in queued] == descriptions
        assert [q["size"] for q in queued] == [p.stat().st_size for p in photos], "the photos are kept whole, as Blobs"
        assert all(q["blob"] for q in queued) and len({q["key"] for q in queued}) == 2
        assert pg.evaluate("() => localStorage.getItem('gridserver.m.outbox')") is None, "nothing queued in localStorage"
        assert "2 条" in pg.inner_text("#outbox-count")
        pg.evaluate("async () => { window.__copy = (await window.__mobileQueue.all('outbox'))[0]; }")
        pg.screenshot(path=str(screenshots / "mobile-offline.png"))

        ctx.set_offline(False)
        pg.wait_for_function("() => window.__mobileState.outbox === 0 && window.__mobileState.sent.length === 2",
                             timeout=120_000)
        arrived = {d: _arrived(engine, d) for d in descriptions}
        for d, photo in zip(descriptions, photos):
            data = photo.read_bytes()
            assert [(size, sha) for _, size, sha in arrived[d]] == [(len(data), hashlib.sha256(data).hexdigest())], \
                "one incident with its photo, byte for byte"
        first = arrived[descriptions[0]][0][0]
        assert sorted(pg.evaluate("() => window.__mobileState.sent")) == sorted(a[0][0] for a in arrived.values())

        # the phone never heard the first answer and sends the same queued report (and photo) again: still one
        pg.evaluate("""async () => { await window.__mobileQueue.put('outbox', window.__copy);
                                     window.dispatchEvent(new Event('online')); }""")
        pg.wait_for_function("() => window.__mobileState.outbox === 0 && window.__mobileState.sent.length === 3",
                             timeout=120_000)
        assert pg.evaluate("() => window.__mobileState.sent[2]") == first, "the replay answers with the original"
        assert {d: _arrived(engine, d) for d in descriptions} == arrived
        inc = http.get(f"/api/v1/incidents/{first}", headers={"Authorization": f"Bearer {worker['token']}"}).json()
        assert inc["grid_code"] == WORKER_GRID and inc["description"] == descriptions[0]
        pg.screenshot(path=str(screenshots / "mobile-sent.png"))
        _only_local(pg, live_url)
        # while the network was cut the browser reports the requests it could not make
        assert all(_cut_off(e, "ERR_INTERNET_DISCONNECTED") for e in pg.errors), pg.errors
    finally:
        ctx.close()


def test_a_queue_left_in_localstorage_moves_to_indexeddb_once(browser, live_url, engine, http, small_city, worker):
    """An outbox and a draft kept by the earlier version (localStorage, photo as a data: URL) are moved once:
    the queued report arrives once with its photo, the draft stays a draft, nothing is left behind."""
    cat = http.get("/api/v1/incidents/categories").json()[0]
    photo = _big_png(7, 200, 150)
    sent_desc, draft_desc = f"旧队列 {uuid.uuid4().hex[:8]}", f"旧草稿 {uuid.uuid4().hex[:8]}"
    point = {"lon": 113.2555, "lat": 23.1465, "source": "GPS"}
    old_outbox = [{"key": str(uuid.uuid4()), "category": cat["code"], "description": sent_desc, "point": point,
                   "photo": {"name": "old.png", "type": "image/png",
                             "data": "data:image/png;base64," + base64.b64encode(photo).decode()},
                   "saved_at": "2026-01-01T08:00:00.000Z"}]
    old_drafts = [{"key": str(uuid.uuid4()), "category": cat["code"], "description": draft_desc, "point": point,
                   "photo": None, "saved_at": "2026-01-01T08:01:00.000Z"}]
    ctx, pg = _phone(browser)
    _with_token(ctx, worker["token"])
    ctx.add_init_script(f"""if (!sessionStorage.getItem('seeded')) {{ sessionStorage.setItem('seeded', '1');
        localStorage.setItem('gridserver.m.outbox', {json.dumps(json.dumps(old_outbox))});
        localStorage.setItem('gridserver.m.drafts', {json.dumps(json.dumps(old_drafts))}); }}""")
    try:
        pg.goto(live_url + "/m/")
        pg.wait_for_function(APP_READY)
        assert pg.evaluate("() => window.__mobileState.migrated") == 2
        pg.wait_for_function("() => window.__mobileState.sent.length === 1 && window.__mobileState.outbox === 0")
        assert _arrived(engine, sent_desc) == [(pg.evaluate("() => window.__mobileState.sent[0]"), len(photo),
                                                hashlib.sha256(photo).hexdigest())]
        assert pg.evaluate("() => [localStorage.getItem('gridserver.m.outbox'), localStorage.getItem('gridserver.m.drafts')]") \
            == [None, None]
        drafts = pg.evaluate("async () => (await window.__mobileQueue.all('drafts')).map(d => d.description)")
        assert drafts == [draft_desc] and _arrived(engine, draft_desc) == []
        pg.click('#tabs button[data-view="report-view"]')
        assert draft_desc in pg.inner_text("#drafts")

        pg.reload()  # the next start moves nothing and sends nothing again
        pg.wait_for_function(APP_READY)
        assert pg.evaluate("() => window.__mobileState.migrated") == 0
        assert pg.evaluate("async () => (await window.__mobileQueue.all('drafts')).length") == 1
        assert pg.evaluate("() => window.__mobileState.sent") == []
        assert len(_arrived(engine, sent_desc)) == 1
        assert pg.errors == []
    finally:
        ctx.close()


CACHED_JS = """async () => { const c = await caches.open('gridserver-m-v2');
                   return (await c.keys()).map(r => new URL(r.url).pathname); }"""
GRID_OUTLINE = (0xD8, 0x43, 0x15)  # my-grid line colour in web/src/mobile.js


def _outline_pixels(png: bytes) -> int:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    return sum(1 for p in img.getdata() if all(abs(a - b) <= 16 for a, b in zip(p, GRID_OUTLINE)))


@pytest.fixture
def own_server(db_url, tmp_path):
    """A server process of its own on the test database, which a test may stop (the real 'no connection')."""
    from trust.private_pg import AppServer

    server = AppServer(db_url, tmp_path)
    yield server
    if server.proc.poll() is None:
        server.stop()


@pytest.mark.parametrize("cut", ["phone_offline", "server_down"])
def test_phone_app_opens_offline_and_draws_my_grid_from_its_cache(browser, request, live_url, small_city, worker,
                                                                   screenshots, cut):
    """Every request fails (the phone's network emulated offline, or the server process stopped): the app starts
    from the service worker's cache and MapLibre (its worker script cached too) draws my grid from cached tiles."""
    import httpx

    server = request.getfixturevalue("own_server") if cut == "server_down" else None
    base = server.base if server else live_url
    token = (httpx.post(base + "/api/v1/auth/token", data={"username": worker["username"], "password": worker["password"]})
             .json()["access_token"] if server else worker["token"])
    ctx, pg = _phone(browser)
    _with_token(ctx, token)
    try:
        pg.goto(base + "/m/")
        pg.wait_for_function(APP_READY)
        pg.wait_for_function("() => window.__mobileMap && window.__mobileMap.loaded() && !window.__mobileMap.isMoving()")
        # the service worker keeps the shell (MapLibre's worker script included) and my grid's public tiles
        deadline = time.monotonic() + 60
        while sum("/tiles/grids/" in u for u in pg.evaluate(CACHED_JS)) < 4 and time.monotonic() < deadline:
            pg.wait_for_timeout(250)
        cached = pg.evaluate(CACHED_JS)
        assert sum("/tiles/grids/" in u for u in cached) >= 4 and "/m/maplibre-gl-worker.mjs" in cached

        if server:
            server.stop()
        else:
            # and every request aborted at the network layer; routing also turns off the browser's HTTP cache,
            # so only the service worker can answer
            ctx.set_offline(True)
            ctx.route("**/*", lambda route: route.abort("internetdisconnected"))
        responses = []
        pg.on("response", lambda r: responses.append(r))
        pg.errors.clear()
        pg.reload()
        pg.wait_for_function(APP_READY)
        assert pg.evaluate("() => window.__mobileState.offlineStart") is True
        assert pg.inner_text("#grid-name") == small_city[WORKER_GRID]["name"]
        pg.wait_for_function("() => window.__mobileMap && window.__mobileMap.loaded() && !window.__mobileMap.isMoving()")
        mine = pg.evaluate("() => [...new Set(window.__mobileMap.queryRenderedFeatures({layers: ['my-grid']}).map(f => f.properties.code))]")
        assert mine == [WORKER_GRID], "my grid's outline is drawn from the cached tiles"
        around = set(pg.evaluate("() => window.__mobileMap.queryRenderedFeatures({layers: ['grids-line']}).map(f => f.properties.code)"))
        assert WORKER_GRID in around and len(around) >= 2, "the neighbouring grids too"
        # and it is on the screen: the outline colour is there, and goes when the outline layer is hidden
        shot = pg.locator("#map").screenshot(path=str(screenshots / f"mobile-offline-map-{cut}.png"))
        drawn = _outline_pixels(shot)
        pg.evaluate("() => window.__mobileMap.setLayoutProperty('my-grid', 'visibility', 'none')")
        pg.wait_for_function("() => window.__mobileMap.loaded() && !window.__mobileMap.isMoving()")
        pg.wait_for_timeout(300)
        hidden = _outline_pixels(pg.locator("#map").screenshot())
        assert drawn > 500 and hidden < drawn / 20, (drawn, hidden)
        # every answer the page got after the cut came from the service worker's cache; with the server stopped
        # the browser's own HTTP cache may still hold the private incident tiles it fetched a moment ago
        # (Cache-Control: private, max-age), which the service worker never keeps
        answered = [r for r in responses if r.url.startswith("http")]
        besides = [r.url for r in answered if not r.from_service_worker]
        assert answered and all("/tiles/incidents/" in u for u in besides) and (cut == "server_down" or not besides), besides
        # the last task list and category tree are there to work with while offline
        pg.click('#tabs button[data-view="tasks-view"]')
        pg.wait_for_selector("#task-list li")
        pg.click('#tabs button[data-view="report-view"]')
        pg.wait_for_function("() => window.__mobileState.categories.length > 0")
        pg.screenshot(path=str(screenshots / f"mobile-offline-start-{cut}.png"))
        refused = "ERR_INTERNET_DISCONNECTED" if cut == "phone_offline" else "ERR_CONNECTION_REFUSED"
        assert pg.errors and all(_cut_off(e, refused) for e in pg.errors), pg.errors
    finally:
        ctx.close()


def test_patrol_records_my_track_and_coverage(browser, live_url, http, small_city, worker, auth, screenshots):
    ctx, pg = _phone(browser)
    _with_token(ctx, worker["token"])
    try:
        pg.goto(live_url + "/m/")
        pg.wait_for_function(APP_READY)
        pg.click("#patrol-toggle")
        assert pg.inner_text("#patrol-toggle") == "结束巡查"
        for i in range(12):  # walking east along the middle of my grid
            ctx.set_geolocation({"longitude": 113.2505 + 0.0008 * i, "latitude": 23.14625})
            pg.wait_for_timeout(250)
        pg.wait_for_function("() => window.__mobileState.patrol && window.__mobileState.patrol.points >= 6")
        recorded = pg.evaluate("() => window.__mobileState.patrol.points")
        pg.click("#patrol-toggle")  # stop: the rest of the track is sent, then the patrol is closed
        pg.wait_for_function("() => window.__mobileState.patrol === null && window.__mobileState.coverage > 0")
        cov = http.get("/api/v1/patrols/coverage", params={"mine": "true"}, headers=auth(worker)).json()["grids"]
        assert cov[0]["grid_code"] == WORKER_GRID and cov[0]["coverage"] > 0
        assert abs(pg.evaluate("() => window.__mobileState.coverage") - cov[0]["coverage"]) < 1e-9
        assert recorded >= 6
        pg.screenshot(path=str(screenshots / "mobile-patrol.png"))
        assert pg.errors == []
    finally:
        ctx.close()


def test_pwa_manifest_and_service_worker_are_served(http):
    m = http.get("/m/manifest.webmanifest")
    assert m.status_code == 200 and m.json()["start_url"] == "/m/" and m.json()["lang"] == "zh-CN"
    sw = http.get("/m/sw.js")
    assert sw.status_code == 200 and "javascript" in sw.headers["content-type"]
    assert "caches.open" in sw.text and "/tiles/" in sw.text
    assert "incidents" not in sw.text, "private incident tiles are never cached on the phone"
    # MapLibre's worker inside the service worker's scope, so it starts offline (see views.map_worker)
    w = http.get("/m/maplibre-gl-worker.mjs")
    assert w.status_code == 200 and "javascript" in w.headers["content-type"] and "MapLibre" in w.text[:200]
    assert '"/m/maplibre-gl-worker.mjs"' in sw.text, "the service worker keeps it with the shell"
