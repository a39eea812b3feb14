"""KPIs and scorecards over incidents that went through known paths."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

STREET = "440104003"
POINT = (113.275, 23.146)  # 440104003001001
ITEM = "city_appearance_01"


def _act(http, auth, who, i, action, **body):
    r = http.post(f"/api/v1/incidents/{i}/actions/{action}", headers=auth(who), json=body)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def scenario(http, auth, make_user, small_city):
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    op = make_user("street_operator", STREET)
    boss = make_user("district_operator", "440104")
    handler = make_user("dept_handler", STREET, department="s_hw")
    worker = make_user("grid_worker", "440104003001001")
    citizen = make_user("citizen")

    def report(desc):
        r = http.post("/api/v1/incidents", headers=auth(citizen),
                      json={"lon": POINT[0], "lat": POINT[1], "category": ITEM, "description": desc})
        assert r.status_code == 201
        return r.json()

    a, b, c, d = (report(x) for x in ("甲处垃圾", "乙处垃圾桶", "丙处建筑垃圾", "丁处垃圾"))
    for who, action, body in [(op, "accept", {}), (op, "dispatch", {}), (handler, "start", {}),
                              (handler, "resolve", {"note": "ok"}), (worker, "verify", {}), (op, "close", {}),
                              (citizen, "rate", {"rating": "satisfied"})]:
        _act(http, auth, who, a["id"], action, **body)
    for who, action, body in [(op, "accept", {}), (op, "dispatch", {"department": "s_zf"}),
                              (op, "start", {}), (op, "resolve", {"note": "ok"}), (worker, "verify", {}),
                              (op, "close", {}), (citizen, "rate", {"rating": "unsatisfied"})]:
        _act(http, auth, who, b["id"], action, **body)
    _act(http, auth, boss, c["id"], "supervise", note="督办",
         due_at=(datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat())
    for who, action, body in [(op, "accept", {}), (op, "dispatch", {}), (handler, "return", {"note": "非本部门"})]:
        _act(http, auth, who, d["id"], action, **body)
    return {"start": start, "analyst": make_user("analyst"), "op": op, "citizen": citizen,
            "other_op": make_user("street_operator", "440104001")}


def test_kpis_match_the_paths_taken(http, auth, scenario):
    r = http.get("/api/v1/stats/incidents", params={"area": STREET, "from": scenario["start"].isoformat()},
                 headers=auth(scenario["analyst"]))
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["total"] == 4 and s["closed"] == 1 and s["overdue"] == 1
    assert s["same_day_closure_rate"] == 0.25
    assert s["auto_dispatch_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert s["satisfaction_rate"] == 0.5 and s["reopen_rate"] == 0.5
    assert s["returned_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert {x["status"]: x["count"] for x in s["by_status"]} == {"rated": 1, "dispatched": 1, "reported": 1,
                                                                 "returned": 1}
    assert s["by_category"] == [{"category": "city_appearance", "label": "市容环境", "count": 4}]
    deps = {x["department"]: x["count"] for x in s["by_department"]}
    assert deps == {"s_hw": 3, "s_zf": 1}
    total = s["step_minutes"]["total"]
    assert total is not None and 0 <= total["median"] <= total["p90"] < 5
    assert s["step_minutes"]["handle"]["median"] >= 0


def test_scorecards_by_department_and_street(http, auth, scenario):
    p = {"from": scenario["start"].isoformat(), "area": STREET}
    dep = http.get("/api/v1/stats/scorecards", params={**p, "by": "department"}, headers=auth(scenario["analyst"])).json()
    rows = {x["code"]: x for x in dep["items"]}
    assert rows["s_hw"]["total"] == 3 and rows["s_hw"]["returned_rate"] == 0.5 and rows["s_hw"]["satisfaction_rate"] == 1.0
    assert rows["s_zf"]["reopen_rate"] == 1.0 and rows["s_zf"]["name"] == "街道综合行政执法队"
    street = http.get("/api/v1/stats/scorecards", params={**p, "by": "street"}, headers=auth(scenario["op"])).json()
    assert [(x["code"], x["name"], x["total"]) for x in street["items"]] == [(STREET, "北京街道", 4)]


def test_stats_access_and_bad_input(http, auth, scenario):
    assert http.get("/api/v1/stats/incidents", headers=auth(scenario["citizen"])).status_code == 403
    r = http.get("/api/v1/stats/incidents", params={"area": STREET}, headers=auth(scenario["other_op"]))
    assert r.status_code == 403
    own = http.get("/api/v1/stats/incidents", params={"from": scenario["start"].isoformat()},
                   headers=auth(scenario["other_op"])).json()
    listed = http.get("/api/v1/incidents", params={"grid": "440104001", "since": scenario["start"].isoformat(),
                                                   "limit": 1000}, headers=auth(scenario["analyst"])).json()
    assert own["area"] == "440104001" and own["total"] == listed["total"]  # its own street, not 440104003
    r = http.get("/api/v1/stats/incidents", params={"area": "12"}, headers=auth(scenario["analyst"]))
    assert r.status_code == 422 and "area" in r.json()["detail"]
    r = http.get("/api/v1/stats/incidents", params={"from": "2026-11-02", "to": "2026-11-01"},
                 headers=auth(scenario["analyst"]))
    assert r.status_code == 422
    r = http.get("/api/v1/stats/scorecards", params={"by": "grid"}, headers=auth(scenario["analyst"]))
    assert r.status_code == 422
