"""Escalation survives being killed mid-run (no skip, no double); 12345 hotline import; re-linking
after a grid change; attachments with limits and EXIF GPS."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parents[1] / "address"))
from address_data import address_base  # noqa: E402,F401  (fixture)

GRID = "440104001001001"
GRIDSERVER = [sys.executable, "-m", "gridserver.cli"]


def _file_overdue(engine, n: int, category="city_appearance_03") -> list[int]:
    """n reports made two hours ago at grid level (not accepted in time: overdue now)."""
    from gridserver.auth.users import create_user, get_user
    from gridserver.incidents.service import create_incident

    past = datetime.now(timezone.utc) - timedelta(hours=2)
    ids = []
    with engine.begin() as conn:
        user = get_user(conn, "esc_citizen") or create_user(conn, "esc_citizen", "esc-password-123", "citizen")
        for k in range(n):
            out = create_incident(conn, {"lon": 113.251 + 0.00008 * k, "lat": 23.147, "category": category,
                                         "description": f"小广告{k}"}, user, now=past)
            ids.append(out["id"])
    return ids


def _state(engine, ids):
    with engine.connect() as conn:
        esc = dict(conn.execute(text("SELECT incident_id, count(*) FROM incident_escalations WHERE incident_id = ANY(:i) "
                                     "GROUP BY incident_id"), {"i": ids}).all())
        ev = dict(conn.execute(text("SELECT incident_id, count(*) FROM incident_events WHERE incident_id = ANY(:i) "
                                    "AND action = 'escalate' GROUP BY incident_id"), {"i": ids}).all())
        lvl = dict(conn.execute(text("SELECT id, escalation_level FROM incidents WHERE id = ANY(:i)"), {"i": ids}).all())
    return esc, ev, lvl


def test_killed_escalation_run_neither_skips_nor_doubles(engine, db_url, small_city):
    ids = _file_overdue(engine, 40)
    env = {**os.environ, "DATABASE_URL": db_url}
    proc = subprocess.Popen(GRIDSERVER + ["incidents", "escalate", "--pause", "0.1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if len(_state(engine, ids)[0]) >= 5:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-run, no chance to clean up
    proc.wait()
    esc, ev, lvl = _state(engine, ids)
    assert 5 <= len(esc) < len(ids), "the run should have been killed part-way"
    assert all(c == 1 for c in esc.values()) and esc == ev  # each done step is complete: row + event
    assert all(lvl[i] == (1 if i in esc else 0) for i in ids)
    # two workers finish the job at the same time
    runs = [subprocess.Popen(GRIDSERVER + ["incidents", "escalate"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE) for _ in range(2)]
    for p in runs:
        assert p.wait(timeout=120) == 0, p.stderr.read().decode()
    esc, ev, lvl = _state(engine, ids)
    assert set(esc) == set(ids) and all(c == 1 for c in esc.values()) and esc == ev
    assert all(lvl[i] == 1 for i in ids)
    with engine.connect() as conn:
        levels = {r[0] for r in conn.execute(text("SELECT route_level FROM incidents WHERE id = ANY(:i)"), {"i": ids})}
    assert levels == {"community"}  # grid → community, one level only


def test_hotline_import_places_routes_and_queues_the_rest(engine, db_url, address_base, http, auth, admin_token):
    with engine.connect() as conn:
        r = conn.execute(text("SELECT road, house_no, building, unit, room, grid_code FROM std_addresses WHERE "
                              "level = 'room' AND unit <> '' AND status = 'active' AND source = '测试标准地址库' "
                              "ORDER BY code LIMIT 1")).first()
    addr = f"越秀区{r.road}{r.house_no}号{r.building}栋{r.unit}单元{r.room}室"
    csv_path = Path(db_url.rsplit("/", 1)[1] + "_hotline.csv")
    csv_path = Path(os.environ.get("TMPDIR", "/tmp")) / csv_path.name
    csv_path.write_text("工单号,诉求内容,地址,分类,联系电话\n"
                        f"GD001,楼下下水道堵塞反味严重,{addr},,13900000000\n"
                        "GD002,门口垃圾桶满溢,火星基地999号,,\n"
                        ",,,,\n"
                        f"GD003,邻居装修噪音,{addr},邻里纠纷,\n", encoding="gb18030")
    env = {**os.environ, "DATABASE_URL": db_url}
    out = subprocess.run(GRIDSERVER + ["incidents", "import-hotline", str(csv_path)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    s = json.loads(out.stdout.strip().splitlines()[-1])
    assert (s["rows"], s["filed"], s["placed"], s["manual"], s["rejected"]) == (4, 3, 2, 1, 1)
    assert "row 4" in out.stderr
    with engine.connect() as conn:
        rows = {x.order_no: x for x in conn.execute(text(
            "SELECT contact->>'order_no' AS order_no, item_code, category, grid_code, department, manual_reason, channel "
            "FROM incidents WHERE channel = 'hotline'"))}
    assert rows["GD001"].item_code == "water_drainage_02" and rows["GD001"].grid_code == r.grid_code
    assert rows["GD001"].department == "d_sw"
    assert rows["GD002"].department is None and "could not be placed" in rows["GD002"].manual_reason
    assert rows["GD003"].category == "neighbourhood"
    from gridserver.errors import InvalidInput
    from gridserver.incidents.hotline import import_file

    with engine.begin() as conn:
        s2 = import_file(conn, csv_path)
        assert s2["filed"] == 0 and s2["skipped"] == 3  # re-import files nothing twice
        with pytest.raises(InvalidInput, match="does not exist"):
            import_file(conn, "/nonexistent.csv")


def test_relink_after_grid_change_reroutes_and_logs(engine, http, auth, admin_token, small_city):
    from conftest import load_areas
    from gridserver.incidents.relink import relink_open_incidents

    r = http.post("/api/v1/incidents", headers=auth(admin_token),
                  json={"lon": 113.2512, "lat": 23.1488, "category": "city_appearance_03", "description": "小广告"})
    inc = r.json()
    assert inc["grid_code"] == GRID and inc["department"] == "g_wgy" and inc["route_area_code"] == GRID
    # a new grid 009 is carved out of the NW corner of 001 (001 shrinks accordingly)
    import shapely
    from shapely.geometry import box

    g1 = small_city[GRID]
    corner = box(113.25, 23.148, 113.2525, 23.15)
    new = dict(g1, code="440104001001009", name="洪桥北社区第009网格", geom=corner)
    shrunk = dict(g1, geom=shapely.difference(g1["geom"], corner))
    try:
        load_areas(engine, [shrunk, new])
        with engine.begin() as conn:
            stats = relink_open_incidents(conn)
        assert stats["relocated"] >= 1 and stats["rerouted"] >= 1
        got = http.get(f"/api/v1/incidents/{inc['id']}", headers=auth(admin_token)).json()
        assert got["grid_code"] == "440104001001009" and got["route_area_code"] == "440104001001009"
        ev = http.get(f"/api/v1/incidents/{inc['id']}/events", headers=auth(admin_token)).json()["events"][-1]
        assert ev["action"] == "relink" and ev["data"]["from"]["grid"] == GRID and ev["data"]["rerouted"]
    finally:
        load_areas(engine, [g1])
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM admin_areas WHERE code = '440104001001009'"))
            relink_open_incidents(conn)


def _jpeg_with_gps(lon: float, lat: float) -> bytes:
    """A minimal JPEG whose EXIF carries GPS (big-endian TIFF), built by hand."""
    def rat(v):
        d = int(v)
        m = int((v - d) * 60)
        s = round(((v - d) * 60 - m) * 60 * 1000)
        return [(d, 1), (m, 1), (s, 1000)]

    entries_ifd0 = 1
    ifd0_off = 8
    gps_off = ifd0_off + 2 + 12 * entries_ifd0 + 4
    gps_entries = 4
    data_off = gps_off + 2 + 12 * gps_entries + 4
    lat_off, lon_off = data_off, data_off + 24
    t = b"MM\x00\x2a" + struct.pack(">I", ifd0_off)
    t += struct.pack(">H", 1) + struct.pack(">HHII", 0x8825, 4, 1, gps_off) + struct.pack(">I", 0)
    t += struct.pack(">H", gps_entries)
    t += struct.pack(">HHI", 1, 2, 2) + b"N\x00\x00\x00"
    t += struct.pack(">HHII", 2, 5, 3, lat_off)
    t += struct.pack(">HHI", 3, 2, 2) + b"E\x00\x00\x00"
    t += struct.pack(">HHII", 4, 5, 3, lon_off)
    t += struct.pack(">I", 0)
    for v in (lat, lon):
        for a, b in rat(v):
            t += struct.pack(">II", a, b)
    app1 = b"Exif\x00\x00" + t
    return b"\xff\xd8" + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + b"\xff\xda\x00\x02" + b"\x00" * 64 + b"\xff\xd9"


def test_attachments_limits_exif_gps_and_event(http, auth, make_user, small_city):
    from gridserver.incidents import attachments

    citizen = make_user("citizen")
    inc = http.post("/api/v1/incidents", headers=auth(citizen),
                    json={"lon": 113.255, "lat": 23.146, "category": "city_appearance_01", "description": "垃圾"}).json()
    photo = _jpeg_with_gps(113.2551, 23.146)
    assert attachments.exif_gps(photo) == pytest.approx((113.2551, 23.146), abs=1e-6)
    r = http.post(f"/api/v1/incidents/{inc['id']}/attachments", headers=auth(citizen),
                  files=[("files", ("scene.jpg", photo, "image/jpeg"))], data={"note": "现场照片"})
    assert r.status_code == 201, r.text
    a = r.json()["attachments"][0]
    assert a["content_type"] == "image/jpeg" and a["size"] == len(photo)
    assert a["exif_gps"]["lon"] == pytest.approx(113.2551, abs=1e-6) and 5 < a["exif_gps"]["distance_m"] < 20
    got = http.get(a["url"], headers=auth(citizen))
    assert got.status_code == 200 and got.content == photo
    ev = http.get(f"/api/v1/incidents/{inc['id']}/events", headers=auth(citizen)).json()["events"]
    assert ev[-1]["action"] == "attach" and ev[-1]["attachments"] == [a["id"]]
    r = http.post(f"/api/v1/incidents/{inc['id']}/attachments", headers=auth(citizen),
                  files=[("files", ("evil.jpg", b"#!/bin/sh\nrm -rf /", "image/jpeg"))])
    assert r.status_code == 422 and "evil.jpg" in r.json()["detail"]
    big = b"\xff\xd8\xff" + b"\x00" * (attachments.MAX_IMAGE + 1)
    r = http.post(f"/api/v1/incidents/{inc['id']}/attachments", headers=auth(citizen),
                  files=[("files", ("big.jpg", big, "image/jpeg"))])
    assert r.status_code == 413 and "at most" in r.json()["detail"]
    other = make_user("citizen")
    r = http.post(f"/api/v1/incidents/{inc['id']}/attachments", headers=auth(other),
                  files=[("files", ("scene.jpg", photo, "image/jpeg"))])
    assert r.status_code == 403
    assert len(http.get(f"/api/v1/incidents/{inc['id']}/events", headers=auth(citizen)).json()["events"]) == len(ev)
