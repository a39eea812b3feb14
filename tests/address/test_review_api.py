"""The review queue through the HTTP API: who may decide, and what approve / merge / reject do."""

from __future__ import annotations

import csv

import pytest
from sqlalchemy import text

from address_data import address_base  # noqa: F401  (fixture)
from gridserver.address.importer import import_file

SOURCE = "审核测试"


@pytest.fixture(scope="module")
def queue(engine, address_base, tmp_path_factory):
    """Import four rows that land in the queue; returns {kind: record id} and the rooms used."""
    with engine.connect() as conn:
        unit = conn.execute(text(
            """SELECT u.road, u.house_no, u.building, u.unit, u.match_key, u.code FROM std_addresses u
               WHERE u.level = 'unit' AND u.source = '测试标准地址库' ORDER BY u.code LIMIT 1""")).first()
        amb = conn.execute(text(
            """SELECT r.road, r.house_no, r.building, r.room FROM std_addresses r
               WHERE r.level = 'room' AND r.unit <> '' GROUP BY 1, 2, 3, 4 HAVING count(*) > 1 LIMIT 1""")).first()
        other = conn.execute(text("SELECT code, full_text FROM std_addresses WHERE level = 'house' "
                                  "AND source = '测试标准地址库' ORDER BY code LIMIT 1 OFFSET 5")).first()
    rows = [["new1", f"{unit.road}{unit.house_no}号{unit.building}栋{unit.unit}单元9901室"],
            ["new2", f"{unit.road}{unit.house_no}号{unit.building}栋{unit.unit}单元9902室"],
            ["amb", f"{amb.road}{amb.house_no}号{amb.building}栋{amb.room}室"],
            ["unknown", "越秀区不存在的巷8号"]]
    p = tmp_path_factory.mktemp("review") / "q.csv"
    with open(p, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["编号", "地址"])
        w.writerows(rows)
    s = import_file(engine, p, source=SOURCE)
    assert (s.new, s.review) == (2, 2)
    with engine.connect() as conn:
        ids = dict(conn.execute(text("SELECT source_key, id FROM dept_records WHERE source = :s"), {"s": SOURCE}).all())
    return {"ids": ids, "unit": unit, "other": other}


def test_queue_needs_a_reviewer_role(http, make_user, auth, queue):
    assert http.get("/api/v1/address/review").status_code == 401
    worker = make_user("grid_worker", "440104001001001")
    assert http.get("/api/v1/address/review", headers=auth(worker)).status_code == 403
    op = make_user("street_operator", "440104003")
    res = http.get("/api/v1/address/review", params={"source": SOURCE}, headers=auth(op))
    assert res.status_code == 200
    # The street operator of the east street sees only records located there.
    mine = res.json()["items"]
    assert all(i["area_code"].startswith("440104003") for i in mine)
    assert len(mine) < 4  # the unknown-road record has no area: citywide reviewers only


def test_list_queue_paginates(http, admin_token, auth, queue):
    res = http.get("/api/v1/address/review", params={"source": SOURCE, "limit": 2}, headers=auth(admin_token))
    body = res.json()
    assert res.status_code == 200 and body["total"] == 4 and len(body["items"]) == 2
    page2 = http.get("/api/v1/address/review", params={"source": SOURCE, "limit": 2, "offset": 2},
                     headers=auth(admin_token)).json()
    assert {i["id"] for i in body["items"]}.isdisjoint({i["id"] for i in page2["items"]})
    kinds = {i["source_key"]: i for i in body["items"] + page2["items"]}
    assert kinds["new1"]["status"] == "new" and kinds["new1"]["pending_status"] == "pending"
    assert kinds["amb"]["status"] == "review" and kinds["amb"]["candidate_code"]


def test_approve_activates_the_pending_address_with_history(http, make_user, auth, queue):
    op = make_user("district_operator", "440104")
    rid = queue["ids"]["new1"]
    res = http.post(f"/api/v1/address/review/{rid}/approve", json={"reason": "现场核实"}, headers=auth(op))
    assert res.status_code == 200, res.text
    a = res.json()
    assert a["status"] == "active" and a["level"] == "room" and a["code"].startswith(queue["unit"].code)
    full = http.get(f"/api/v1/address/{a['code']}", headers=auth(op)).json()
    approve = [h for h in full["history"] if h["action"] == "approve"]
    assert approve and approve[0]["actor"] == op["username"] and approve[0]["reason"] == "现场核实"
    again = http.post(f"/api/v1/address/review/{rid}/approve", json={}, headers=auth(op))
    assert again.status_code == 409


def test_merge_a_new_record_into_an_existing_address_keeps_both_texts(http, admin_token, auth, queue, engine):
    rid = queue["ids"]["new2"]
    target = queue["other"].code
    with engine.connect() as conn:
        pending_code, raw = conn.execute(text("SELECT s.code, d.raw_text FROM dept_records d JOIN std_addresses s "
                                              "ON s.id = d.address_id WHERE d.id = :i"), {"i": rid}).one()
        pending_text = conn.execute(text("SELECT full_text FROM std_addresses WHERE code = :c"),
                                    {"c": pending_code}).scalar()
    res = http.post(f"/api/v1/address/review/{rid}/merge", json={"target_code": target, "reason": "同一地址"},
                    headers=auth(admin_token))
    assert res.status_code == 200, res.text
    merged = http.get(f"/api/v1/address/{target}", headers=auth(admin_token)).json()
    aliases = {a["text"] for a in merged["aliases"]}
    assert raw in aliases and pending_text in aliases
    dup = http.get(f"/api/v1/address/{pending_code}", headers=auth(admin_token)).json()
    assert dup["status"] == "retired" and dup["replaced_by_code"] == target
    assert dup["history"][-1]["action"] == "merge" and dup["history"][-1]["reason"] == "同一地址"
    # The alias now matches directly.
    g = http.get("/api/v1/address/geocode", params={"q": raw}, headers=auth(admin_token)).json()
    assert g["code"] == target and g["method"] == "alias"


def test_merge_a_review_record_into_its_candidate(http, admin_token, auth, queue):
    rid = queue["ids"]["amb"]
    item = next(i for i in http.get("/api/v1/address/review", params={"source": SOURCE},
                                    headers=auth(admin_token)).json()["items"] if i["id"] == rid)
    res = http.post(f"/api/v1/address/review/{rid}/merge", json={}, headers=auth(admin_token))
    assert res.status_code == 200 and res.json()["code"] == item["candidate_code"]


def test_reject_needs_a_reason_and_removes_the_record_from_the_queue(http, admin_token, auth, queue):
    rid = queue["ids"]["unknown"]
    assert http.post(f"/api/v1/address/review/{rid}/reject", json={}, headers=auth(admin_token)).status_code == 422
    res = http.post(f"/api/v1/address/review/{rid}/reject", json={"reason": "查无此路"}, headers=auth(admin_token))
    assert res.status_code == 200 and res.json()["status"] == "rejected"
    left = http.get("/api/v1/address/review", params={"source": SOURCE}, headers=auth(admin_token)).json()
    assert left["total"] == 0


def test_cli_review_list(engine, queue):
    from typer.testing import CliRunner

    from gridserver.address.cli import app

    res = CliRunner().invoke(app, ["review", "list", "--source", SOURCE, "--limit", "50"])
    assert res.exit_code == 0, res.output
    assert "review queue" in res.output
    res = CliRunner().invoke(app, ["review", "reject", "999999999", "--reason", "x"])
    assert res.exit_code == 2 and "no departmental record" in res.output
