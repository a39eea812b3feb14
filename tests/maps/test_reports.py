"""`gridserver map report` (printable area report) and `gridserver map snapshot` (PNG of the wall)."""

from __future__ import annotations

import os
import struct

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from gridserver.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def report_incidents(engine, small_city):
    rows = [("construction", "reported", 113.255, 23.146, "440104001001001"),
            ("construction", "closed", 113.256, 23.147, "440104001001001"),
            ("road_traffic", "reported", 113.265, 23.125, "440104001002004"),
            ("fire_safety", "reported", 113.285, 23.123, "440104003002004")]
    with engine.begin() as conn:
        ids = [conn.execute(text(
            """INSERT INTO incidents (category, status, description, geom, grid_code, source)
               VALUES (:c, :s, 'report-test', ST_SetSRID(ST_MakePoint(:x, :y), 4326), :g, 'report_test') RETURNING id"""),
            {"c": c, "s": s, "x": x, "y": y, "g": g}).scalar_one() for c, s, x, y, g in rows]
    yield ids
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incidents WHERE source = 'report_test'"))


def test_report_of_a_street_has_map_category_table_and_grid_profile(tmp_path, small_city, report_incidents, engine):
    out = tmp_path / "report.html"
    r = runner.invoke(app, ["map", "report", "--area", "440104001", "--out", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text(encoding="utf-8")
    assert "事件分类统计" in page and "网格概况（8 个网格）" in page
    assert "违法建设" in page and "道路交通" in page and "消防安全" not in page  # the east street's fire is not in it
    mine = [c for c, a in small_city.items() if a["level"] == "grid" and c.startswith("440104001")]
    assert all(c in page for c in mine)
    assert "440104003002004" not in page
    assert "@media print" in page and "cdn.jsdelivr" not in page
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM incidents WHERE grid_code LIKE '440104001%'")).scalar()
    assert f"事件 {n} 件" in r.output


def test_report_of_an_unknown_area_exits_2(tmp_path, small_city):
    r = runner.invoke(app, ["map", "report", "--area", "440104999", "--out", str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "440104999" in r.output


@pytest.mark.browser
def test_snapshot_of_the_wall_is_a_png(tmp_path, small_city, report_incidents, admin_user, db_url):
    import os

    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("chromium missing")
    import subprocess
    import sys

    out = tmp_path / "wall.png"
    # a process of its own, as on the command line (Playwright's sync API refuses to nest in a test's browser session)
    cmd = [sys.executable, "-c", "from gridserver.cli import app; app()", "map", "snapshot", "--out", str(out)]
    env = {**os.environ, "DATABASE_URL": db_url}
    r = subprocess.run(cmd + ["--user", admin_user["username"], "--width", "1280", "--height", "720"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 720)
    assert "个网格着色" in r.stdout
    bad = subprocess.run(cmd + ["--user", "nobody-here"], env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "nobody-here" in bad.stdout + bad.stderr
