"""The command-center wall (/screen) and the grid-worker phone app (/m/) in a real headless Chromium.

Wall: at 1920×1080 and 3840×2160 it loads with no console error, no request leaving 127.0.0.1 and no
scrolling, shades the small city's grids, fills its panels, drills into a street, and a new incident
posted through the API appears on it (pushed over SSE, no reload) within 2 s.
Phone (360×740): a grid worker logs in through the form, sees only their own tasks, and reports an
incident with a photo while the network is cut; after reconnecting it arrives exactly once, even when
the phone replays the same report.
"""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from urllib.parse import urlparse

import pytest
from sqlalchemy import text

from gridserver.maps.routes import BUILD_HINT, DIST_DIR

pytestmark = pytest.mark.browser

WORKER_GRID = "440104001001001"  # 113.25–113.26 × 23.1425–23.15
OTHER_GRID = "440104003002004"


def _png() -> bytes:
    """A valid 2×2 PNG (what a phone camera would send, only smaller)."""
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)  # noqa: E731
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


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
        pg.wait_for_function("() => window.__mobileState && window.__mobileState.ready && window.__mobileState.view === 'app'")
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
        pg.screenshot(path=str(screenshots / "mobile-tasks.png"))
        pg.click(f'#task-list li[data-id="{mine}"]')
        pg.wait_for_function(f"() => document.querySelector('#task-view .title').textContent.startsWith('#{mine}')")
        pg.screenshot(path=str(screenshots / "mobile-task.png"))
        _only_local(pg, live_url)
        assert pg.errors == []
    finally:
        ctx.close()


def _count(engine, description):
    with engine.connect() as conn:
        return conn.execute(text(
            """SELECT count(*), count(a.id) FROM incidents i
               LEFT JOIN incident_attachments a ON a.incident_id = i.id WHERE i.description = :d"""),
            {"d": description}).one()


def test_report_made_offline_arrives_exactly_once(browser, live_url, engine, http, small_city, worker, tmp_path,
                                                  screenshots):
    categories = http.get("/api/v1/incidents/categories").json()
    label = categories[0]["label"]
    photo = tmp_path / "photo.png"
    photo.write_bytes(_png())
    description = f"离线上报测试 {uuid.uuid4().hex[:8]}"
    ctx, pg = _phone(browser)
    _with_token(ctx, worker["token"])
    try:
        pg.goto(live_url + "/m/")
        pg.wait_for_function("() => window.__mobileState && window.__mobileState.ready && window.__mobileState.view === 'app'")
        pg.click('#tabs button[data-view="report-view"]')
        pg.fill("#cat-search", label)
        pg.click("#cat-list li >> nth=0")
        assert label in pg.inner_text("#cat-chosen")
        pg.fill('#report-form textarea[name="description"]', description)
        pg.click("#use-gps")
        pg.wait_for_function("() => document.querySelector('#where-text').textContent.startsWith('GPS')")
        pg.set_input_files('#report-form input[name="photo"]', str(photo))

        ctx.set_offline(True)
        pg.click("#submit-report")
        pg.wait_for_function("() => window.__mobileState.outbox === 1")
        assert "离线" in pg.inner_text("#report-msg")
        assert _count(engine, description) == (0, 0), "nothing reaches the server while offline"
        (queued,) = pg.evaluate("() => JSON.parse(localStorage.getItem('gridserver.m.outbox'))")
        assert queued["key"] and queued["photo"]["data"].startswith("data:image/png")
        pg.screenshot(path=str(screenshots / "mobile-offline.png"))

        ctx.set_offline(False)
        pg.wait_for_function("() => window.__mobileState.outbox === 0 && window.__mobileState.sent.length === 1")
        assert _count(engine, description) == (1, 1), "one incident with its photo"
        iid = pg.evaluate("() => window.__mobileState.sent[0]")

        # the phone never heard the answer and sends the same queued report again: still one
        pg.evaluate("""(item) => { localStorage.setItem('gridserver.m.outbox', JSON.stringify([item]));
                                   window.dispatchEvent(new Event('online')); }""", queued)
        pg.wait_for_function("() => window.__mobileState.outbox === 0 && window.__mobileState.sent.length === 2")
        assert pg.evaluate("() => window.__mobileState.sent") == [iid, iid], "the replay answers with the original"
        assert _count(engine, description) == (1, 1)
        inc = http.get(f"/api/v1/incidents/{iid}", headers={"Authorization": f"Bearer {worker['token']}"}).json()
        assert inc["grid_code"] == WORKER_GRID and inc["description"] == description
        pg.screenshot(path=str(screenshots / "mobile-sent.png"))
        _only_local(pg, live_url)
        # while the network was cut the browser reports the requests it could not make (map tiles)
        assert all("ERR_INTERNET_DISCONNECTED" in e for e in pg.errors), pg.errors
    finally:
        ctx.close()


def test_phone_app_opens_offline_from_its_cache(browser, live_url, small_city, worker, screenshots):
    import time

    ctx, pg = _phone(browser)
    _with_token(ctx, worker["token"])
    try:
        pg.goto(live_url + "/m/")
        pg.wait_for_function("() => window.__mobileState && window.__mobileState.ready && window.__mobileState.view === 'app'")
        # the service worker keeps the shell and my grid's public tiles
        count_js = """async () => { if (!('caches' in window)) return -1;
                          const c = await caches.open('gridserver-m-v1');
                          return (await c.keys()).filter(r => r.url.includes('/tiles/grids/')).length; }"""
        deadline = time.monotonic() + 60
        while pg.evaluate(count_js) < 4 and time.monotonic() < deadline:
            pg.wait_for_timeout(250)
        assert pg.evaluate(count_js) >= 4
        ctx.set_offline(True)
        pg.reload()
        pg.wait_for_function("() => window.__mobileState && window.__mobileState.ready && window.__mobileState.view === 'app'")
        assert pg.evaluate("() => window.__mobileState.offlineStart") is True
        assert pg.inner_text("#grid-name") == small_city[WORKER_GRID]["name"]
        # the last task list and category tree are there to work with while offline
        pg.click('#tabs button[data-view="tasks-view"]')
        pg.wait_for_selector("#task-list li")
        pg.click('#tabs button[data-view="report-view"]')
        pg.fill("#cat-search", "")
        pg.wait_for_function("() => window.__mobileState.categories.length > 0")
        pg.screenshot(path=str(screenshots / "mobile-offline-start.png"))
        # Chromium's offline emulation also refuses the MapLibre worker script that the service worker would
        # serve from its cache, so the map itself is not checked here (the cached tiles are, above).
        assert all("ERR_INTERNET_DISCONNECTED" in e or "Worker failed to load" in e or "ERR_FAILED" in e
                   for e in pg.errors), pg.errors
    finally:
        ctx.close()


def test_patrol_records_my_track_and_coverage(browser, live_url, http, small_city, worker, auth, screenshots):
    ctx, pg = _phone(browser)
    _with_token(ctx, worker["token"])
    try:
        pg.goto(live_url + "/m/")
        pg.wait_for_function("() => window.__mobileState && window.__mobileState.ready && window.__mobileState.view === 'app'")
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
