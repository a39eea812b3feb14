"""诉求进度查询 /track in a real headless Chromium: a citizen follows their report by its tracking code,
step by step, rates it once it is closed (满意 closes it for good, 不满意 reopens it), and an unknown code
says so. No account and no map on the page; nothing leaves the server."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from gridserver.maps.routes import BUILD_HINT, DIST_DIR

pytestmark = pytest.mark.browser
STEPS = ("accept", "dispatch", "start", "resolve", "verify", "close")


@pytest.fixture(scope="module")
def browser(chromium):
    if not (DIST_DIR / "track.js").is_file():
        pytest.skip(f"front-end not built: run `{BUILD_HINT}`")
    return chromium


def _report(http, auth, citizen, admin_token, steps) -> str:
    r = http.post("/api/v1/incidents", headers=auth(citizen), json={
        "lon": 113.2552, "lat": 23.1462, "category": "city_appearance", "description": "楼下垃圾无人清运"})
    assert r.status_code == 201, r.text
    inc = r.json()
    for action in steps:
        r = http.post(f"/api/v1/incidents/{inc['id']}/actions/{action}", headers=auth(admin_token),
                      json={"note": "已清运完毕"} if action == "resolve" else {})
        assert r.status_code == 200, (action, r.text)
    return inc["tracking_code"]


def _open(browser, live_url, path):
    ctx = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN", is_mobile=True)
    pg = ctx.new_page()
    pg.errors, pg.requests = [], []
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" and "404" not in m.text else None)
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.goto(live_url + path)
    pg.wait_for_function("() => window.__trackState && window.__trackState.ready")
    return ctx, pg


def test_citizen_follows_and_rates_a_report(browser, live_url, http, auth, make_user, admin_token, small_city):
    citizen = make_user("citizen")
    code = _report(http, auth, citizen, admin_token, STEPS[:3])  # being handled
    ctx, pg = _open(browser, live_url, "/track")
    try:
        pg.fill("#code", f" {code.lower()} ")  # as typed on a phone: lower case, stray spaces
        pg.click("#lookup button")
        pg.wait_for_selector("#result:not([hidden])")
        assert pg.inner_text("#result .status") == "责任部门正在处理"
        steps = pg.locator("#result .steps li b").all_inner_texts()
        assert len(steps) == 4 and steps[0] == "收到您的诉求"
        assert pg.is_hidden("#rating"), "no rating before the case is closed"
        assert f"code={code}" in pg.url  # a link to send on
        for action in STEPS[3:]:
            assert http.post(f"/api/v1/incidents/{_id(http, auth, citizen, code)}/actions/{action}",
                             headers=auth(admin_token),
                             json={"note": "已清运完毕"} if action == "resolve" else {}).status_code == 200
        pg.reload()
        pg.wait_for_function("() => window.__trackState.ready && window.__trackState.view")
        assert pg.inner_text("#result .status") == "已办结，欢迎评价" and pg.is_visible("#rating")
        pg.check('#rating input[value="satisfied"]')
        pg.fill('#rating textarea', "清运及时，谢谢")
        pg.click("#rating button")
        pg.wait_for_function("() => document.querySelector('#message').textContent.includes('感谢')")
        assert pg.inner_text("#message") == "感谢您的评价" and pg.is_hidden("#rating")
        assert "满意" in pg.inner_text("#result .facts")
        assert http.get(f"/api/v1/track/{code}").json()["rating"] == "satisfied"
        host = urlparse(live_url).hostname
        assert all(urlparse(u).hostname == host for u in pg.requests if not u.startswith("data:"))
        assert pg.errors == []
    finally:
        ctx.close()


def _id(http, auth, citizen, code) -> int:
    items = http.get("/api/v1/incidents", headers=auth(citizen), params={"limit": 100}).json()["items"]
    return next(i["id"] for i in items if i["tracking_code"] == code)


def test_unsatisfied_reopens_and_an_unknown_code_says_so(browser, live_url, http, auth, make_user, admin_token,
                                                         small_city):
    citizen = make_user("citizen")
    code = _report(http, auth, citizen, admin_token, STEPS)
    ctx, pg = _open(browser, live_url, f"/track?code={code}")
    try:
        pg.wait_for_selector("#rating:not([hidden])")
        pg.check('#rating input[value="unsatisfied"]')
        pg.click("#rating button")
        pg.wait_for_function("() => document.querySelector('#message').textContent.includes('重新办理')")
        assert http.get(f"/api/v1/track/{code}").json()["status"] not in ("closed", "rated")
        pg.fill("#code", "NOSUCHCODE")
        pg.click("#lookup button")
        pg.wait_for_selector("#message.error")
        assert pg.inner_text("#message") == "未找到查询码 NOSUCHCODE，请核对后再试" and pg.is_hidden("#result")
    finally:
        ctx.close()
