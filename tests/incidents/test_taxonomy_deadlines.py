"""Taxonomy as configuration (YAML/CSV, versioned, validated) and working-day deadlines."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gridserver.incidents import taxonomy
from gridserver.incidents.deadlines import add_deadline, add_working_days, is_workday
from jobs_run import run_job

CST = ZoneInfo("Asia/Shanghai")
GRIDSERVER = [sys.executable, "-m", "gridserver.cli"]


def test_default_taxonomy_is_big_enough_and_keeps_the_first_slice_codes():
    tax = taxonomy.default_taxonomy()
    assert len(tax.categories()) >= 12 and len(tax.items()) >= 80 and len(tax.departments) >= 40
    for code in ("city_appearance", "street_facility", "public_facility", "road_traffic", "landscaping",
                 "water_drainage", "construction", "fire_safety", "public_security", "environment", "market",
                 "neighbourhood", "social_service", "other"):
        assert tax.nodes[code].parent is None
    for item in tax.items():
        assert item.start_level in item.departments  # every leaf can be dispatched
        assert tax.departments[item.departments[item.start_level]]["level"] == item.start_level
    assert {i.workflow for i in tax.items()} == {"general", "simple"}


def _cli(args, db_url, **kw):
    env = {**os.environ, "DATABASE_URL": db_url}
    return subprocess.run(GRIDSERVER + args, env=env, capture_output=True, text=True, timeout=120, **kw)


def test_load_csv_taxonomy_makes_a_new_active_version(tmp_path, db_url, http, auth, make_user, small_city, engine):
    csv = tmp_path / "tax.csv"
    csv.write_text(
        "category_code,category_name,code,name,level,deadline,workflow,grid,community,street,district\n"
        "roads,道路,roads_01,坑洼,street,2wd,general,网格员,居委会,街道城管科,区住建局\n"
        "roads,道路,roads_02,井盖,district,4h,general,网格员,居委会,街道城管科,区水务局\n", encoding="utf-8")
    try:
        r = _cli(["taxonomy", "load", str(csv)], db_url)
        assert r.returncode == 0, r.stderr
        assert "1 categories, 2 items" in r.stdout
        cats = http.get("/api/v1/incidents/categories").json()
        assert [c["code"] for c in cats] == ["roads"]
        assert cats[0]["items"][1]["department"] == "区水务局" and cats[0]["items"][1]["deadline"] == "4h"
        user = make_user("citizen")
        body = http.post("/api/v1/incidents", headers=auth(user),
                         json={"lon": 113.255, "lat": 23.146, "category": "roads_01", "description": "坑"}).json()
        assert body["department"] == "街道城管科"
        assert body["route_rule"]["taxonomy_version"] == http.get("/api/v1/taxonomy").json()["active"]
        r = http.post("/api/v1/incidents", headers=auth(user),
                      json={"lon": 113.255, "lat": 23.146, "category": "city_appearance"})
        assert r.status_code == 422 and "roads" in r.json()["detail"]
        versions = http.get("/api/v1/taxonomy").json()["versions"]
        assert [v["active"] for v in versions].count(True) == 1 and versions[-1]["source"] == "tax.csv"
    finally:
        with engine.begin() as conn:
            taxonomy.load_file(conn, taxonomy.DEFAULT_FILE, loaded_by="test-restore")
    assert http.get("/api/v1/incidents/categories").json()[0]["code"] == "city_appearance"
    after = http.get("/api/v1/taxonomy").json()["versions"]
    assert len(after) == len(versions) + 1 and after[-1]["active"] and not after[-2]["active"]


@pytest.mark.parametrize("content, fragment", [
    ("departments: {a: {name: A, level: street}}\ncategories:\n  - {code: c, name: C, level: street, deadline: 1wd,"
     " departments: {street: nope}}\n", "'nope' is not declared"),
    ("departments: {a: {name: A, level: street}}\ncategories:\n  - {code: c, name: C, level: street, deadline: soon,"
     " departments: {street: a}}\n", "deadline must look like"),
    ("departments: {a: {name: A, level: street}}\ncategories:\n  - {code: c, name: C, level: street, deadline: 1wd,"
     " departments: {street: a}, items: [{code: c, name: dup}]}\n", "duplicate code 'c'"),
    ("departments: {a: {name: A, level: street}}\ncategories:\n  - {code: c, name: C, level: grid, deadline: 1wd,"
     " departments: {street: a}}\n", "no department for its dispatch level 'grid'"),
])
def test_bad_taxonomy_file_is_refused_naming_the_entry(tmp_path, content, fragment):
    from gridserver.errors import InvalidInput

    f = tmp_path / "bad.yaml"
    f.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInput) as exc:
        taxonomy.read_file(f)
    assert fragment in exc.value.detail


def test_cli_exits_2_on_a_bad_file(tmp_path, db_url):
    f = tmp_path / "bad.yaml"
    f.write_text("departments: {a: {name: A, level: street}}\ncategories:\n  - {code: c, name: C, level: street, "
                 "deadline: 1wd, departments: {street: nope}}\n", encoding="utf-8")
    r = _cli(["taxonomy", "load", str(f)], db_url)
    assert r.returncode == 2 and "'nope' is not declared" in " ".join(r.stderr.split()), r.stderr


def test_working_days_follow_the_official_holiday_calendar():
    # 2026 National Day: 1–7 October off, Saturday 10 October is a make-up working day
    assert not is_workday(date(2026, 10, 5)) and is_workday(date(2026, 10, 10))
    assert add_working_days(datetime(2026, 9, 30, 10, 0, tzinfo=CST), 1) == datetime(2026, 10, 8, 10, 0, tzinfo=CST)
    assert add_working_days(datetime(2026, 10, 9, 16, 0, tzinfo=CST), 1) == datetime(2026, 10, 10, 16, 0, tzinfo=CST)
    # reported on a holiday: counting starts at 09:00 of the next working day
    assert add_working_days(datetime(2026, 10, 3, 15, 0, tzinfo=CST), 1) == datetime(2026, 10, 9, 9, 0, tzinfo=CST)
    assert add_deadline(datetime(2026, 10, 3, 15, 0, tzinfo=CST), "4h") == datetime(2026, 10, 3, 19, 0, tzinfo=CST)
    assert add_deadline(datetime(2026, 9, 30, 10, 0, tzinfo=CST), "3wd") == datetime(2026, 10, 10, 10, 0, tzinfo=CST)


def test_local_override_changes_deadlines(db_url, engine):
    from gridserver.incidents.deadlines import load_overrides, set_overrides

    with engine.begin() as conn:
        set_overrides(conn, [(date(2026, 10, 8), False, "台风停工")])
    try:
        with engine.connect() as conn:
            ov = load_overrides(conn, fresh=True)
        assert add_working_days(datetime(2026, 9, 30, 10, 0, tzinfo=CST), 1, ov) == datetime(2026, 10, 9, 10, 0, tzinfo=CST)
        r = _cli(["taxonomy", "calendar", "2026-10-08", "--workday"], db_url)
        assert r.returncode == 0, r.stderr
        with engine.connect() as conn:
            ov = load_overrides(conn, fresh=True)
        assert ov[date(2026, 10, 8)] is True
    finally:
        with engine.begin() as conn:
            from sqlalchemy import text

            conn.execute(text("DELETE FROM calendar_overrides"))
    assert Path(taxonomy.DEFAULT_FILE).is_file()


def test_schedule_lines_become_days_and_bad_lines_are_named():
    from gridserver.errors import InvalidInput
    from gridserver.incidents.deadlines import parse_days, parse_schedule

    got = parse_schedule("# 2027\n2027-02-06..2027-02-08  休  春节 假期\n\n2027-02-14 班 春节调休  # 补班\n"
                         "2027-02-07 holiday 春节\n")
    assert got == [(date(2027, 2, 6), False, "春节 假期"), (date(2027, 2, 7), False, "春节"),
                   (date(2027, 2, 8), False, "春节 假期"), (date(2027, 2, 14), True, "春节调休")]
    assert parse_days("2027-01-01") == [date(2027, 1, 1)] and len(parse_days("2027-01-01..2027-01-31")) == 31
    for text, fragment in [("2027-02-30 休", "line 1: '2027-02-30' is not a day"),
                           ("2027-01-01 休\n2027-01-02 放", "line 2: expected 'DAY[..DAY] 休|班 [note]'"),
                           ("2027-01-01 休\n2026-12-31..2027-01-02 班", "line 2: 2027-01-01 is already a rest day on line 1"),
                           ("2027-01-05..2027-01-01 休", "line 1: range '2027-01-05..2027-01-01' must run forward"),
                           ("2027-01-01..2027-03-01 休", "span at most 31 days"),
                           ("# nothing\n", "names no day")]:
        with pytest.raises(InvalidInput) as exc:
            parse_schedule(text)
        assert fragment in exc.value.detail, exc.value.detail


def test_a_year_past_the_official_calendar_is_named_and_falls_back_to_weekdays(caplog):
    from gridserver.incidents import deadlines as D

    first, last = D.official_years()
    year = last + 1  # the first year the installed package does not know
    assert first <= 2026 <= last
    assert D.uncovered_years(set(), date(year - 1, 12, 1), 60) == [year]
    assert D.uncovered_years(set(), date(year - 1, 6, 1), 60) == []  # not yet within 60 days
    assert D.uncovered_years({year}, date(year - 1, 12, 1), 60) == []
    mon = next(date(year, 2, d) for d in range(1, 8) if date(year, 2, d).weekday() == 0)
    D._warn_fallback.cache_clear()
    D._official_workday.cache_clear()
    with caplog.at_level("WARNING", logger="gridserver.incidents.deadlines"):
        assert is_workday(mon) and not is_workday(mon + timedelta(days=5))  # Monday–Friday only
    assert f"official working-day calendar unknown for {year}" in caplog.text


def test_calendar_load_and_status_from_the_command_line(tmp_path, db_url, engine, http):
    from sqlalchemy import text

    from gridserver.incidents.deadlines import load_overrides, official_years

    year = official_years()[1] + 1
    mon = next(date(year, 2, d) for d in range(1, 8) if date(year, 2, d).weekday() == 0)
    fri, sat = mon + timedelta(days=4), mon + timedelta(days=5)
    ahead = str(max((date(year, 1, 1) - date.today()).days + 1, 0))
    count = "SELECT count(*) FROM calendar_overrides"
    clean = ["DELETE FROM calendar_overrides", "DELETE FROM gridserver_meta WHERE key LIKE 'calendar_schedule%'"]
    try:
        with engine.begin() as conn:
            for sql in clean:
                conn.execute(text(sql))
        assert year in http.get("/api/v1/taxonomy/calendar", params={"ahead_days": ahead}).json()["uncovered"]
        # one local rest day (a typhoon day) does not make the year's calendar known
        assert _cli(["taxonomy", "calendar", str(date(year, 1, 4)), "--holiday", "--note", "台风"], db_url).returncode == 0
        r = _cli(["taxonomy", "calendar-status", "--ahead", ahead], db_url)
        assert r.returncode == 1 and "no working-day calendar for" in r.stderr and str(year) in r.stderr, r.stderr
        assert f"{year}: 1 days" in r.stdout and "published schedules loaded: none" in r.stdout, r.stdout
        bad = tmp_path / "bad.txt"
        bad.write_text(f"{mon}..{fri} 休 春节\n{sat} 上班\n", encoding="utf-8")
        r = _cli(["taxonomy", "calendar-load", str(bad)], db_url)
        assert r.returncode == 2 and "line 2: expected" in " ".join(r.stderr.split()), r.stderr
        with engine.connect() as conn:
            assert conn.execute(text(count)).scalar() == 1  # nothing of the bad file was written
        good = tmp_path / "schedule.txt"
        good.write_text(f"# {year} 节假日安排\n{mon}..{fri} 休 春节\n{sat} 班 春节调休\n", encoding="utf-8")
        r = _cli(["taxonomy", "calendar-load", str(good)], db_url)
        assert r.returncode == 0 and "6 days loaded (5 rest, 1 working)" in r.stdout, r.stdout + r.stderr
        with engine.connect() as conn:
            ov = load_overrides(conn, fresh=True)
        friday_before = datetime.combine(mon - timedelta(days=3), datetime.min.time(), CST).replace(hour=10)
        assert add_working_days(friday_before, 1) == friday_before + timedelta(days=3)  # weekdays only
        assert add_working_days(friday_before, 1, ov) == datetime.combine(sat, friday_before.timetz())
        r = _cli(["taxonomy", "calendar-status", "--ahead", ahead], db_url)
        assert f"{year}: 7 days" in r.stdout and f"published schedules loaded: {year}" in r.stdout, r.stdout
        assert str(year) not in r.stderr, r.stderr
        # the daily job reports the same (its result is kept with the job)
        from gridserver.jobs.worker import import_task_modules

        assert "gridserver.incidents.tasks" in import_task_modules()
        job = run_job(engine, "incidents.calendar_check")
        assert job["result"]["official_years"] == list(official_years()) and job["result"]["ahead_days"] == 60
        assert job["result"]["override_days"] == {str(year): 7} and job["result"]["schedule_years"] == [year]
        assert year not in job["result"]["uncovered"]
        api = http.get("/api/v1/taxonomy/calendar", params={"ahead_days": ahead})
        assert api.status_code == 200 and api.json()["override_days"] == {str(year): 7}, api.text
        assert year not in api.json()["uncovered"] and api.json()["ahead_days"] == int(ahead)
        bad_ahead = http.get("/api/v1/taxonomy/calendar", params={"ahead_days": 400})
        assert bad_ahead.status_code == 422 and "ahead_days" in bad_ahead.text
        r = _cli(["taxonomy", "calendar", f"{mon}..{sat}", "--workday"], db_url)
        assert r.returncode == 0 and "6 × working day" in r.stdout, r.stdout + r.stderr
        with engine.connect() as conn:
            assert all(load_overrides(conn, fresh=True)[mon + timedelta(days=k)] for k in range(6))
    finally:
        with engine.begin() as conn:
            for sql in clean:
                conn.execute(text(sql))
