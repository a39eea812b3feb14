"""The /map page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

It loads the page from the live test server, waits for MapLibre to render the small city's grids
from our vector tiles, clicks a grid, searches a grid code, and checks that the browser never
talked to any host but the test server and logged no error.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from gridserver.maps.routes import BUILD_HINT, assets_built

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser(chromium):
    if not assets_built():
        pytest.skip(f"map front-end not built: run `{BUILD_HINT}`")
    return chromium


@pytest.fixture(scope="module")
def map_incident(engine, small_city):
    """One incident (违法建设, reported) in grid 440104001002002, inserted directly in SQL."""
    from sqlalchemy import text

    with engine.begin() as conn:
        iid = conn.execute(text(
            """INSERT INTO incidents (category, description, status, geom, grid_code)
               VALUES ('construction', '违章搭建', 'reported', ST_SetSRID(ST_MakePoint(113.265, 23.131), 4326),
                       '440104001002002') RETURNING id""")).scalar_one()
    yield iid
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incidents WHERE id = :id"), {"id": iid})


@pytest.fixture
def page(browser, live_url, small_city, map_incident, admin_token):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    # incident tiles need a token: the page sends the one a login stored (MapLibre transformRequest)
    ctx.add_init_script(f"localStorage.setItem('gridserver.token', '{admin_token}');")
    pg = ctx.new_page()
    pg.set_default_timeout(60_000)
    pg.errors, pg.requests = [], []
    pg.on("console", lambda m: pg.errors.append(f"console.{m.type}: {m.text} at {m.location.get('url')}")
          if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))
    # MapLibre cancels the tile requests it no longer needs while the map moves: not a failure.
    pg.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED"
          else pg.errors.append(f"request failed: {r.url} {r.failure}"))
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.goto(live_url + "/map")
    pg.wait_for_function(
        """() => window.__gridmap && window.__gridmapState && window.__gridmapState.ready
               && window.__gridmap.loaded()
               && window.__gridmap.queryRenderedFeatures({layers: ['grids-fill']}).length > 0""")
    yield pg
    ctx.close()


def _wait_idle(page):
    page.wait_for_function("() => !window.__gridmap.isMoving() && window.__gridmap.loaded()")


@pytest.fixture
def shoot(page, screenshots):
    return lambda name: page.screenshot(path=str(screenshots / name))


def _click_lonlat(page, lon, lat):
    px = page.evaluate("([lon, lat]) => { const p = window.__gridmap.project([lon, lat]); return [p.x, p.y]; }",
                       [lon, lat])
    box = page.locator("#map canvas").bounding_box()
    page.mouse.click(box["x"] + px[0], box["y"] + px[1])


def _only_local_requests(page, live_url):
    host = urlparse(live_url).hostname
    for url in page.requests:
        u = urlparse(url)
        if u.scheme == "data":
            continue
        if u.scheme == "blob":  # blob:http://127.0.0.1:port/uuid
            u = urlparse(url[len("blob:"):])
        assert u.hostname == host == "127.0.0.1", f"request to a foreign host: {url}"


def test_map_renders_the_city_from_local_tiles_only(page, shoot, live_url, small_city):
    _wait_idle(page)
    codes = page.evaluate(
        "() => [...new Set(window.__gridmap.queryRenderedFeatures({layers: ['grids-fill']}).map(f => f.properties.code))]")
    grids = {c for c, a in small_city.items() if a["level"] == "grid"}
    assert grids <= set(codes), "the initial view fits the data: every small-city grid is on screen"
    assert page.title() == "网格化管理地图"
    assert any("/tiles/grids/" in u for u in page.requests)
    # logged in: the header shows who and 退出, not the login form
    assert not page.is_visible("#login form") and page.is_visible("#login .logout")
    shoot("map.png")
    _only_local_requests(page, live_url)
    assert page.errors == []


def test_click_on_a_grid_shows_its_info(page, small_city):
    _wait_idle(page)
    target = small_city["440104003002004"]["geom"].centroid  # SE grid
    _click_lonlat(page, target.x, target.y)
    page.wait_for_selector("#info:not([hidden])")
    assert page.inner_text('#info dd[data-field="编码"]') == "440104003002004"
    assert page.inner_text('#info dd[data-field="层级"]') == "网格"
    assert page.inner_text('#info dd[data-field="上级编码"]') == "440104003002"
    assert page.inner_text("#info .info-title") == "网格：北京南社区第004网格"
    assert page.evaluate("() => window.__gridmapState.selected") == "440104003002004"
    # then what it holds, for staff: its size from the areas API, incidents and workers from its profile
    page.wait_for_function("() => window.__gridmapState.profiled === '440104003002004'")
    from pyproj import Transformer
    from shapely.ops import transform

    to_4547 = Transformer.from_crs(4326, 4547, always_xy=True).transform
    ha = transform(to_4547, small_city["440104003002004"]["geom"]).area / 1e4
    area = page.inner_text('#info dd[data-field="面积"]')
    assert area.endswith(" 公顷") and abs(float(area.split()[0]) - ha) < 0.01, (area, ha)
    assert page.inner_text('#info dd[data-field="近30天事件"]').startswith("未办结 ")
    assert page.inner_text('#info dd[data-field="人口"]').replace(",", "").isdigit()
    assert page.errors == []


def test_search_by_code_moves_the_map_there(page, shoot, live_url, small_city):
    _wait_idle(page)
    before = page.evaluate("() => window.__gridmap.getZoom()")
    code = "440104001001001"
    page.fill("#search-code", code)
    page.press("#search-code", "Enter")
    page.wait_for_function(f"() => window.__gridmapState.lastSearch === '{code}'")
    _wait_idle(page)
    x0, y0, x1, y1 = small_city[code]["geom"].bounds
    lon, lat, zoom = page.evaluate("() => { const c = window.__gridmap.getCenter(); return [c.lng, c.lat, window.__gridmap.getZoom()]; }")
    assert x0 < lon < x1 and y0 < lat < y1
    assert zoom > before
    assert page.inner_text('#info dd[data-field="编码"]') == code
    highlighted = page.evaluate(
        "() => window.__gridmap.queryRenderedFeatures({layers: ['grids-highlight']}).map(f => f.properties.code)")
    assert highlighted and set(highlighted) == {code}
    shoot("map-search.png")

    assert page.errors == []

    page.fill("#search-code", "440104009009009")
    page.press("#search-code", "Enter")
    page.wait_for_function("() => document.querySelector('#message').textContent.includes('未找到')")
    assert "440104009009009" in page.inner_text("#message")
    _only_local_requests(page, live_url)
    # the browser itself logs the 404 of the lookup; nothing else may be logged
    assert all("404" in e and "/api/v1/areas/440104009009009" in e for e in page.errors), page.errors


def test_incident_is_drawn_and_clickable(page, map_incident):
    _wait_idle(page)
    # at city zoom incidents arrive as server-side clusters with counts, as points once zoomed in
    page.wait_for_function("() => window.__gridmap.queryRenderedFeatures({layers: ['incidents-cluster']})"
                           ".some(f => f.properties.count >= 1)")
    assert page.evaluate("() => window.__gridmap.getZoom()") <= 14
    page.evaluate("() => window.__gridmap.jumpTo({center: [113.265, 23.131], zoom: 16})")
    _wait_idle(page)
    page.wait_for_function("() => window.__gridmap.queryRenderedFeatures({layers: ['incidents-circle']}).length > 0")
    _click_lonlat(page, 113.265, 23.131)
    page.wait_for_selector("#info:not([hidden])")
    assert page.inner_text("#info .info-title") == f"事件 #{map_incident}"
    assert page.inner_text('#info dd[data-field="类别"]') == "违法建设"
    assert page.inner_text('#info dd[data-field="状态"]') == "已上报"
    assert page.inner_text('#info dd[data-field="网格编码"]') == "440104001002002"
    assert page.errors == []


def test_layer_toggle_hides_the_grids(page):
    _wait_idle(page)
    page.uncheck('#layers input[data-layer="grids"]')
    page.wait_for_function("() => window.__gridmap.getLayoutProperty('grids-fill', 'visibility') === 'none'")
    _wait_idle(page)
    assert page.evaluate("() => window.__gridmap.queryRenderedFeatures({layers: ['grids-fill']}).length") == 0
    page.check('#layers input[data-layer="grids"]')
    page.wait_for_function("() => window.__gridmap.queryRenderedFeatures({layers: ['grids-fill']}).length > 0")


def test_without_login_the_map_shows_areas_but_no_incidents(browser, live_url, small_city, map_incident):
    ctx = browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    pg = ctx.new_page()
    requests = []
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto(live_url + "/map")
    pg.wait_for_function("() => window.__gridmapState && window.__gridmapState.ready && window.__gridmap.loaded()"
                         " && window.__gridmap.queryRenderedFeatures({layers: ['grids-fill']}).length > 0")
    assert pg.evaluate("() => window.__gridmapState.authenticated") is False
    assert not any("/tiles/incidents/" in u for u in requests)
    assert "登录后显示事件" in pg.inner_text("#login")
    assert pg.is_visible("#login form") and not pg.is_visible("#login .logout")
    ctx.close()


def test_on_a_phone_the_header_fits_and_no_button_breaks_its_label(browser, live_url, small_city):
    """At 360 px the search field shrinks: the 定位 button keeps one line, nothing runs off the page."""
    ctx = browser.new_context(viewport={"width": 360, "height": 740}, locale="zh-CN")
    pg = ctx.new_page()
    pg.goto(live_url + "/map")
    pg.wait_for_function("() => window.__gridmapState && window.__gridmapState.ready")
    button = pg.locator("#search button")
    line = pg.evaluate("(b) => parseFloat(getComputedStyle(b).lineHeight) || parseFloat(getComputedStyle(b).fontSize) * 1.5",
                       button.element_handle())
    box = button.bounding_box()
    assert box["height"] < 2 * line, f"定位 wraps: {box}"
    assert box["x"] + box["width"] <= 360 and pg.locator("#search input").bounding_box()["width"] >= 120
    assert pg.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    ctx.close()
