"""The incident loop over HTTP on the small city: routing at intake, every path of the state machine,
the event log, 409/403, escalation, supervision, merge, rating and reopen, relocation, tracking."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import text

GRID = "440104001001001"
STREET = "440104001"
IN_GRID = (113.255, 23.146)
IN_OTHER_STREET = (113.285, 23.146)  # 440104003001002
ITEM = "city_appearance_01"  # 暴露垃圾: street level → 街道环卫站 (s_hw), then district 城管执法局 (d_cgzf)


@pytest.fixture(scope="module")
def people(make_user, small_city):
    return {
        "citizen": make_user("citizen"),
        "street_op": make_user("street_operator", STREET),
        "other_street_op": make_user("street_operator", "440104003"),
        "district_op": make_user("district_operator", "440104"),
        "handler": make_user("dept_handler", STREET, department="s_hw"),
        "other_handler": make_user("dept_handler", "440104003", department="s_hw"),
        "worker": make_user("grid_worker", GRID),
    }


def report(http, auth, who, lon=IN_GRID[0], lat=IN_GRID[1], category=ITEM, description="路口生活垃圾堆放两天未清运", **extra):
    r = http.post("/api/v1/incidents", headers=auth(who),
                  json={"lon": lon, "lat": lat, "category": category, "description": description, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def act(http, auth, who, incident_id, action, expect=200, **body):
    r = http.post(f"/api/v1/incidents/{incident_id}/actions/{action}", headers=auth(who), json=body)
    assert r.status_code == expect, r.text
    return r.json()


def test_report_is_routed_with_department_due_time_and_rule(http, auth, people):
    before = datetime.now(timezone.utc)
    body = report(http, auth, people["citizen"])
    assert body["department"] == "s_hw" and body["department_name"] == "街道环卫站"
    assert body["route_level"] == "street" and body["route_area_code"] == STREET
    assert body["route_rule"]["rule"] == f"{ITEM}@street" and body["route_rule"]["item"] == ITEM
    assert body["category"] == "city_appearance" and body["item_code"] == ITEM and body["item_label"] == "暴露垃圾"
    due = datetime.fromisoformat(body["due_at"])
    assert timedelta(minutes=29) < due - before < timedelta(minutes=31)  # dispatch within 30 minutes
    assert datetime.fromisoformat(body["deadline_at"]) > due
    assert body["tracking_code"].startswith("YX") and len(body["tracking_code"]) == 10
    assert body["channel"] == "citizen" and body["manual_reason"] is None and body["status"] == "reported"
    shop = report(http, auth, people["citizen"], category="market_07", description="商铺门前施工影响经营", channel="business")
    assert shop["channel"] == "business" and shop["department"] == "s_jj"
    r = http.post("/api/v1/incidents", headers=auth(people["citizen"]),
                  json={"lon": IN_GRID[0], "lat": IN_GRID[1], "category": ITEM, "channel": "fax"})
    assert r.status_code == 422 and "channel" in r.json()["detail"]


def test_normal_path_through_every_step_with_event_log(http, auth, people):
    inc = report(http, auth, people["citizen"])
    i = inc["id"]
    assert act(http, auth, people["street_op"], i, "accept")["status"] == "accepted"
    out = act(http, auth, people["street_op"], i, "dispatch", note="请环卫站处理")
    assert out["status"] == "dispatched" and out["department"] == "s_hw"
    assert datetime.fromisoformat(out["due_at"]) > datetime.now(timezone.utc) + timedelta(hours=1)
    assert act(http, auth, people["handler"], i, "start")["status"] == "in_progress"
    assert act(http, auth, people["handler"], i, "resolve", note="已清运")["status"] == "resolved"
    assert act(http, auth, people["worker"], i, "verify", note="回访已清理")["status"] == "verified"
    assert act(http, auth, people["street_op"], i, "close")["status"] == "closed"
    out = act(http, auth, people["citizen"], i, "rate", rating="satisfied", note="很及时")
    assert out["status"] == "rated" and out["rating"] == "satisfied" and out["allowed_actions"] == []
    ev = http.get(f"/api/v1/incidents/{i}/events", headers=auth(people["street_op"])).json()["events"]
    assert [e["action"] for e in ev] == ["report", "accept", "dispatch", "start", "resolve", "verify", "close", "rate"]
    assert [e["actor"] for e in ev] == [people[k]["username"] for k in
                                        ("citizen", "street_op", "street_op", "handler", "handler", "worker",
                                         "street_op", "citizen")]
    assert ev[4]["note"] == "已清运" and ev[4]["from_status"] == "in_progress" and ev[4]["to_status"] == "resolved"
    times = [e["at"] for e in ev]
    assert times == sorted(times)


def test_illegal_transition_is_409_listing_allowed_actions(http, auth, people):
    inc = report(http, auth, people["citizen"])
    r = http.post(f"/api/v1/incidents/{inc['id']}/actions/resolve", headers=auth(people["street_op"]),
                  json={"note": "x"})
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["code"] == "illegal_transition" and body["status"] == "reported"
    assert set(body["allowed_actions"]) == {"accept", "escalate", "supervise", "merge", "relocate", "recategorize",
                                            "comment"}
    assert "resolve" in body["detail"] and "reported" in body["detail"]
    r = http.post(f"/api/v1/incidents/{inc['id']}/actions/fly", headers=auth(people["street_op"]), json={})
    assert r.status_code == 422 and "fly" in r.json()["detail"]


def test_roles_and_scopes_may_not_act_outside_their_remit(http, auth, people):
    inc = report(http, auth, people["citizen"])
    i = inc["id"]
    r = http.post(f"/api/v1/incidents/{i}/actions/accept", headers=auth(people["worker"]), json={})
    assert r.status_code == 403 and "grid_worker" in r.json()["detail"]
    r = http.post(f"/api/v1/incidents/{i}/actions/accept", headers=auth(people["other_street_op"]), json={})
    assert r.status_code == 403 and people["other_street_op"]["username"] in r.json()["detail"]
    act(http, auth, people["street_op"], i, "accept")
    act(http, auth, people["street_op"], i, "dispatch")
    r = http.post(f"/api/v1/incidents/{i}/actions/start", headers=auth(people["other_handler"]), json={})
    assert r.status_code == 403
    r = http.post(f"/api/v1/incidents/{i}/actions/resolve", headers=auth(people["handler"]), json={})
    assert r.status_code == 409  # not started yet
    act(http, auth, people["handler"], i, "start")
    r = http.post(f"/api/v1/incidents/{i}/actions/resolve", headers=auth(people["handler"]), json={})
    assert r.status_code == 422 and "note" in r.json()["detail"]
    ev = http.get(f"/api/v1/incidents/{i}/events", headers=auth(people["street_op"])).json()["events"]
    assert [e["action"] for e in ev] == ["report", "accept", "dispatch", "start"]  # refusals leave no trace


def test_declined_is_escalated_one_level_up_exactly_once(http, auth, people, engine):
    from gridserver.incidents.escalation import escalate_due

    inc = report(http, auth, people["citizen"])
    i = inc["id"]
    act(http, auth, people["street_op"], i, "accept")
    act(http, auth, people["street_op"], i, "dispatch")
    r = http.post(f"/api/v1/incidents/{i}/actions/decline", headers=auth(people["handler"]), json={})
    assert r.status_code == 422  # a reason is required
    assert act(http, auth, people["handler"], i, "decline", note="涉及多部门，街道无法单独处置")["status"] == "declined"
    with engine.connect() as conn:
        done = escalate_due(conn)
        again = escalate_due(conn)
    mine = [d for d in done if d["incident_id"] == i]
    assert len(mine) == 1 and mine[0]["reason"] == "declined" and mine[0]["to_level"] == "district"
    assert not [d for d in again if d["incident_id"] == i]
    got = http.get(f"/api/v1/incidents/{i}", headers=auth(people["district_op"])).json()
    assert got["status"] == "escalated" and got["department"] == "d_cgzf" and got["route_level"] == "district"
    assert got["escalation_level"] == 1 and got["route_area_code"] == "440104"
    out = act(http, auth, people["district_op"], i, "dispatch", note="区城管局牵头")
    assert out["status"] == "dispatched" and out["department"] == "d_cgzf"
    ev = http.get(f"/api/v1/incidents/{i}/events", headers=auth(people["district_op"])).json()["events"]
    esc = [e for e in ev if e["action"] == "escalate"]
    assert len(esc) == 1 and esc[0]["actor"] == "system" and esc[0]["data"]["from_level"] == "street"


def test_overdue_is_listed_and_escalated(http, auth, people, engine):
    from gridserver.incidents.escalation import escalate_due

    inc = report(http, auth, people["citizen"], description="垃圾桶旁堆放大件家具")
    i = inc["id"]
    # a supervisor sets a deadline that has already passed: the incident is overdue now
    past = (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
    out = act(http, auth, people["district_op"], i, "supervise", note="督办：限期处理", due_at=past)
    assert out["supervised"] and out["supervision_note"] == "督办：限期处理" and out["overdue"] is True
    listed = http.get("/api/v1/incidents", params={"overdue": "true", "limit": 1000},
                      headers=auth(people["district_op"])).json()
    assert i in [x["id"] for x in listed["items"]] and all(x["overdue"] for x in listed["items"])
    not_listed = http.get("/api/v1/incidents", params={"overdue": "false", "limit": 1000},
                          headers=auth(people["district_op"])).json()
    assert i not in [x["id"] for x in not_listed["items"]]
    with engine.connect() as conn:
        done = [d for d in escalate_due(conn) if d["incident_id"] == i]
    assert len(done) == 1 and done[0]["reason"] == "overdue"
    got = http.get(f"/api/v1/incidents/{i}", headers=auth(people["district_op"])).json()
    assert got["status"] == "escalated" and got["department"] == "d_cgzf"
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM incident_notifications WHERE incident_id = :i AND channel = 'handler'"),
                         {"i": i}).scalar_one()
    assert n == 2  # the handler was told of the supervision and of the escalation


def test_duplicate_found_at_intake_merged_and_followed(http, auth, people, make_user):
    first = report(http, auth, people["citizen"], lon=113.2575, lat=23.1440, description="菜市场东门生活垃圾堆放很久没人清运")
    other = make_user("citizen")
    second = report(http, auth, other, lon=113.2577, lat=23.1440, description="菜市场东门垃圾堆放没人清运，很臭")
    mine = [c for c in second["duplicates"] if c["id"] == first["id"]]
    assert mine and mine[0]["likely"] and 15 < mine[0]["distance_m"] < 30
    chk = http.post("/api/v1/duplicates/check", headers=auth(other),
                    json={"lon": 113.2576, "lat": 23.1440, "category": ITEM, "description": "菜市场东门垃圾堆放"})
    assert chk.status_code == 200 and first["id"] in [c["id"] for c in chk.json()["candidates"]]
    out = act(http, auth, people["street_op"], second["id"], "merge", into=first["id"], note="同一问题")
    assert out["status"] == "merged" and out["merged_into"] == first["id"]
    act(http, auth, people["street_op"], first["id"], "accept")
    act(http, auth, people["street_op"], first["id"], "dispatch")
    view = http.get(f"/api/v1/track/{second['tracking_code']}").json()
    assert view["merged"] and view["status"] == "dispatched" and view["status_text"] == "已转交责任部门处理"
    r = http.post(f"/api/v1/incidents/{second['id']}/actions/accept", headers=auth(people["street_op"]), json={})
    assert r.status_code == 409 and r.json()["allowed_actions"] == ["comment"]


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_unsatisfied_rating_reopens_and_citizen_is_notified(http, auth, people, engine):
    from gridserver.incidents.notify import deliver_pending

    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_port}/notify"
    try:
        inc = report(http, auth, people["citizen"], webhook_url=hook, contact={"name": "张三", "phone": "13800000000"})
        i, code = inc["id"], inc["tracking_code"]
        for who, action, body in [("street_op", "accept", {}), ("street_op", "dispatch", {}), ("handler", "start", {}),
                                  ("handler", "resolve", {"note": "已处理"}), ("worker", "verify", {}),
                                  ("street_op", "close", {})]:
            act(http, auth, people[who], i, action, **body)
        view = http.get(f"/api/v1/track/{code.lower()}").json()
        assert view["status"] == "closed" and view["can_rate"] and view["status_text"] == "已办结，欢迎评价"
        text_dump = json.dumps(view, ensure_ascii=False)
        assert "张三" not in text_dump and "13800000000" not in text_dump and "reporter" not in view
        assert "description" not in view and view["department"] == "街道环卫站"
        r = http.post(f"/api/v1/track/{code}/rating", json={"rating": "unsatisfied", "comment": "还有垃圾"})
        assert r.status_code == 200, r.text
        assert r.json()["reopened"] and r.json()["status"] == "dispatched"
        got = http.get(f"/api/v1/incidents/{i}", headers=auth(people["street_op"])).json()
        assert got["reopen_count"] == 1 and got["rating"] == "unsatisfied" and got["department"] == "s_hw"
        with engine.connect() as conn:
            deliver_pending(conn)
        statuses = [m["status"] for m in _Hook.received if m["tracking_code"] == code]
        assert statuses == ["accepted", "dispatched", "in_progress", "resolved", "verified", "closed", "rated",
                            "dispatched"]
        bad = http.post(f"/api/v1/track/{code}/rating", json={"rating": "great"})
        assert bad.status_code == 409  # reopened: nothing to rate now
    finally:
        server.shutdown()


def test_near_boundary_is_flagged_and_relocation_reroutes(http, auth, people):
    near = report(http, auth, people["citizen"], lon=113.25998, lat=23.146)  # ~2 m west of the grid edge
    nb = near["near_boundary"]
    assert nb and nb["neighbours"][0]["code"] == "440104001001002" and nb["neighbours"][0]["distance_m"] < 5
    assert report(http, auth, people["citizen"])["near_boundary"] is None
    confirmed = report(http, auth, people["citizen"], lon=113.25998, lat=23.146, confirm_grid="440104001001002")
    assert confirmed["grid_code"] == "440104001001002" and confirmed["community_code"] == "440104001001"
    r = http.post("/api/v1/incidents", headers=auth(people["citizen"]),
                  json={"lon": 113.255, "lat": 23.146, "category": ITEM, "confirm_grid": "440104001001002"})
    assert r.status_code == 422 and "m from the point" in r.json()["detail"]
    i = near["id"]
    out = act(http, auth, people["street_op"], i, "relocate", lon=IN_OTHER_STREET[0], lat=IN_OTHER_STREET[1],
              note="现场核实位置在北京街")
    assert out["grid_code"] == "440104003001002" and out["route_area_code"] == "440104003"
    ev = http.get(f"/api/v1/incidents/{i}/events", headers=auth(people["district_op"])).json()["events"][-1]
    assert ev["action"] == "relocate" and ev["data"]["rerouted"] and ev["data"]["to_grid"] == "440104003001002"
    out = act(http, auth, people["district_op"], i, "recategorize", category="public_facility_01", note="实为路灯")
    assert out["item_code"] == "public_facility_01" and out["department"] == "d_cgzf" and out["route_level"] == "district"
    ev = http.get(f"/api/v1/incidents/{i}/events", headers=auth(people["district_op"])).json()["events"][-1]
    assert ev["data"]["from_department"] == "s_hw" and ev["data"]["to_department"] == "d_cgzf"


def test_tasks_list_what_each_role_must_do_next(http, auth, people):
    inc = report(http, auth, people["citizen"])
    i = inc["id"]
    ids = lambda who: [x["id"] for x in http.get("/api/v1/tasks", headers=auth(people[who])).json()["items"]]  # noqa: E731
    assert i in ids("street_op") and i not in ids("handler") and i not in ids("other_street_op")
    act(http, auth, people["street_op"], i, "accept")
    act(http, auth, people["street_op"], i, "dispatch")
    assert i in ids("handler") and i not in ids("other_handler") and i not in ids("street_op")
    act(http, auth, people["handler"], i, "start")
    act(http, auth, people["handler"], i, "resolve", note="ok")
    assert i in ids("worker") and i not in ids("handler")
    items = http.get("/api/v1/tasks", headers=auth(people["street_op"])).json()["items"]
    dues = [x["due_at"] for x in items if x["due_at"]]
    assert dues == sorted(dues)
    assert http.get("/api/v1/tasks", headers=auth(people["citizen"])).status_code == 403


def test_simple_workflow_skips_dispatch_and_return_visit(http, auth, people):
    inc = report(http, auth, people["worker"], category="city_appearance_03", description="电线杆上小广告")
    assert inc["workflow"] == "simple" and inc["route_level"] == "grid" and inc["department"] == "g_wgy"
    i = inc["id"]
    act(http, auth, people["street_op"], i, "accept")
    assert act(http, auth, people["worker"], i, "start")["status"] == "in_progress"
    act(http, auth, people["worker"], i, "resolve", note="已清除")
    r = http.post(f"/api/v1/incidents/{i}/actions/verify", headers=auth(people["worker"]), json={})
    assert r.status_code == 409
    assert act(http, auth, people["street_op"], i, "close")["status"] == "closed"


def test_manual_dispatch_queue_for_unplaceable_reports(http, auth, people, engine, admin_token):
    from gridserver.auth.users import get_user
    from gridserver.incidents.service import create_incident

    with engine.begin() as conn:
        user = get_user(conn, people["citizen"]["username"])
        out = create_incident(conn, {"lon": 113.40, "lat": 23.13, "category": ITEM, "description": "区外"}, user,
                              source="hotline", outside="manual")
    assert out["department"] is None and "outside every grid" in out["manual_reason"] and out["grid_code"] is None
    queue = http.get("/api/v1/incidents", params={"manual": "true", "limit": 1000}, headers=auth(admin_token)).json()
    assert out["id"] in [x["id"] for x in queue["items"]] and all(x["manual_reason"] for x in queue["items"])
    act(http, auth, admin_token, out["id"], "accept")
    r = http.post(f"/api/v1/incidents/{out['id']}/actions/dispatch", headers=auth(admin_token), json={})
    assert r.status_code == 422 and "department" in r.json()["detail"]
    done = act(http, auth, admin_token, out["id"], "dispatch", department="d_cgzf", note="人工派遣")
    assert done["department"] == "d_cgzf" and done["manual_reason"] is None and done["route_rule"]["rule"] == "manual"
    queue = http.get("/api/v1/incidents", params={"manual": "true", "limit": 1000}, headers=auth(admin_token)).json()
    assert out["id"] not in [x["id"] for x in queue["items"]]
