"""`gridserver map export`: a standalone folium HTML map of an area's grids and incidents."""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from gridserver.cli import app
from gridserver.maps.export import LEAFLET_DIR
from gridserver.maps.routes import BUILD_HINT

runner = CliRunner()
offline_build = pytest.mark.skipif(not (LEAFLET_DIR / "leaflet.js").is_file(),
                                   reason=f"Leaflet copy missing, the export would use the CDN: run `{BUILD_HINT}`")


@pytest.fixture(scope="module")
def incidents(engine, small_city):
    """One incident in street 440104001 (west half) and one in street 440104003 (east half)."""
    rows = [("city_appearance", "export-inside-marker", 113.261, 23.125, "440104001002004"),
            ("fire_safety", "export-outside-marker", 113.281, 23.125, "440104003002004")]
    ids = []
    with engine.begin() as conn:
        for cat, desc, lon, lat, grid in rows:
            ids.append(conn.execute(text(
                """INSERT INTO incidents (category, description, geom, grid_code)
                   VALUES (:c, :d, ST_SetSRID(ST_MakePoint(:x, :y), 4326), :g) RETURNING id"""),
                {"c": cat, "d": desc, "x": lon, "y": lat, "g": grid}).scalar_one())
    yield ids
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incidents WHERE id = ANY(:ids)"), {"ids": ids})


def _export(tmp_path, *args):
    out = tmp_path / "street.html"
    result = runner.invoke(app, ["map", "export", *args, "--out", str(out)])
    return result, out


def test_export_of_a_street_holds_its_grids_and_incidents_only(tmp_path, small_city, incidents, engine):
    from sqlalchemy import text

    # other test modules add incidents to the same session database (some in no grid: the manual
    # queue): count what lies in the street now, with shapely on the fixture's own outline
    import shapely
    with engine.connect() as conn:
        points = conn.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM incidents WHERE geom IS NOT NULL")).all()
    street = small_city["440104001"]["geom"]
    inside = int(shapely.intersects(street, shapely.points([(x, y) for x, y in points])).sum())
    assert inside >= 1
    result, out = _export(tmp_path, "--area", "440104001")
    assert result.exit_code == 0, result.output
    assert "网格 8 个" in result.output and f"事件 {inside} 件" in result.output
    page = out.read_text(encoding="utf-8")
    mine = {c for c, a in small_city.items() if a["level"] == "grid" and c.startswith("440104001")}
    others = {c for c, a in small_city.items() if a["level"] == "grid" and not c.startswith("440104001")}
    assert all(c in page for c in mine)
    assert not any(c in page for c in others)
    assert "export-inside-marker" in page and "export-outside-marker" not in page
    # Chinese tooltip headings (folium writes them as JSON, \\u-escaped) and the title
    assert all(json.dumps(h)[1:-1] in page or h in page for h in ("网格编码", "网格名称", "事件编号", "类别"))
    assert "<title>洪桥街道（440104001）网格图</title>" in page


def test_export_without_incidents(tmp_path, small_city, incidents):
    result, out = _export(tmp_path, "--area", "440104001001", "--no-incidents")
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert "440104001001004" in page and "440104001002001" not in page
    assert "export-inside-marker" not in page


def test_export_of_one_grid(tmp_path, small_city):
    result, out = _export(tmp_path, "--area", "440104003002004")
    assert result.exit_code == 0, result.output
    assert "网格 1 个" in result.output
    assert "440104003002004" in out.read_text(encoding="utf-8")


@offline_build
def test_export_loads_nothing_from_the_internet(tmp_path, small_city, incidents):
    result, out = _export(tmp_path, "--area", "440104")
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    # nothing is loaded by URL: no external script/stylesheet/image, no CSS url(), no tile template
    assert not re.findall(r'<(?:script|img|iframe)[^>]*\ssrc="https?://', page)
    assert not re.findall(r'<link[^>]*\shref="https?://', page)
    assert not re.findall(r'url\(\s*["\']?https?://', page)
    assert "{z}" not in page and "cdn" not in page.lower()
    assert "L.map(" in page or "L.map (" in page  # Leaflet is inlined, not linked


def test_unknown_area_exits_2_with_message(tmp_path, small_city):
    result, out = _export(tmp_path, "--area", "440104999")
    assert result.exit_code == 2
    assert "440104999" in result.output and "未找到" in result.output
    assert not out.exists()


@pytest.mark.browser
@offline_build
def test_exported_file_renders_offline_in_chromium(tmp_path, chromium, screenshots, small_city, incidents):
    result, out = _export(tmp_path, "--area", "440104")
    assert result.exit_code == 0, result.output
    ctx = chromium.new_context(viewport={"width": 1100, "height": 800}, locale="zh-CN")
    page = ctx.new_page()
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(out.as_uri())
    page.wait_for_function("() => typeof L !== 'undefined'")
    # folium names the map variable map_<hash>; count the grid features Leaflet actually holds
    codes = page.evaluate("""() => {
        const map = Object.keys(window).filter(k => k.startsWith('map_')).map(k => window[k])
                          .find(v => v instanceof L.Map);
        const found = new Set();
        map.eachLayer(l => { const p = l.feature && l.feature.properties; if (p && p.code) found.add(p.code); });
        return [...found];
    }""")
    grids = {c for c, a in small_city.items() if a["level"] == "grid"}
    assert grids <= set(codes)
    page.screenshot(path=str(screenshots / "export.png"))
    ctx.close()
    assert errors == []
    foreign = [u for u in requests if urlparse(u).scheme not in ("file", "data")]
    assert foreign == [], "the exported file must not touch the network"
