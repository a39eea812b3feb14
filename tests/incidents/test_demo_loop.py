"""The demo's simulated month: every incident's event chain is a legal walk of the state machine
ending in its stored status, and the KPIs come out with real values."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

import geopandas as gpd
import pytest
import shapely
from sqlalchemy import text

from gridserver.incidents.workflow import ACTIONS

LEGAL = {(a.name, s, a.target) for a in ACTIONS for s in a.sources if a.target}
LEGAL |= {("reopen", "rated", "dispatched"), ("report", None, "reported")}


@pytest.fixture(scope="module")
def demo_rows(engine, small_city):
    from gridserver.demo.incident_loop import load_loop
    from gridserver.demo.incidents import demo_incidents

    grids = [a for a in small_city.values() if a["level"] == "grid"]
    gdf = gpd.GeoDataFrame({"code": [g["code"] for g in grids], "name": [g["name"] for g in grids]},
                           geometry=[g["geom"] for g in grids], crs=4326)
    now = datetime.now(timezone(timedelta(hours=8))).replace(minute=0, second=0, microsecond=0)
    inc = demo_incidents(gdf, n=600, seed=3, now=now)

    def codes(lon, lat):
        p = shapely.Point(lon, lat)
        g = min(c for c, a in small_city.items() if a["level"] == "grid" and a["geom"].covers(p))
        return g, g[:12], g[:9], g[:6]

    found = [codes(x, y) for x, y in zip(inc["lon"], inc["lat"])]
    n = load_loop(engine, inc, found, seed=3, now=now)
    yield n
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incidents WHERE source = 'demo'"))


def test_every_event_chain_is_a_legal_walk_ending_in_the_stored_status(engine, demo_rows):
    assert demo_rows == 600
    with engine.connect() as conn:
        status = dict(conn.execute(text("SELECT id, status FROM incidents WHERE source = 'demo'")).all())
        events = conn.execute(text(
            "SELECT e.incident_id, e.action, e.from_status, e.to_status, e.at FROM incident_events e "
            "JOIN incidents i ON i.id = e.incident_id WHERE i.source = 'demo' ORDER BY e.incident_id, e.id")).all()
        esc = conn.execute(text("SELECT count(*), count(DISTINCT (incident_id, step)) FROM incident_escalations s "
                                "JOIN incidents i ON i.id = s.incident_id WHERE i.source = 'demo'")).one()
    chains = defaultdict(list)
    for e in events:
        chains[e.incident_id].append(e)
    assert set(chains) == set(status)
    seen = set()
    for iid, chain in chains.items():
        state = None
        for e in chain:
            assert e.from_status == state, (iid, [c.action for c in chain])
            assert (e.action, e.from_status, e.to_status) in LEGAL or e.action == "escalate", (iid, e)
            seen.add(e.action)
            state = e.to_status
        assert state == status[iid]
        assert [c.at for c in chain] == sorted(c.at for c in chain), [(c.action, c.at) for c in chain]
    assert {"accept", "dispatch", "start", "resolve", "verify", "close", "rate", "return", "decline", "escalate",
            "reopen"} <= seen
    assert esc[0] == esc[1] > 0


def test_kpis_over_the_simulated_period_have_real_values(http, auth, make_user, demo_rows):
    s = http.get("/api/v1/stats/incidents", params={"from": (datetime.now() - timedelta(days=30)).date().isoformat()},
                 headers=auth(make_user("analyst"))).json()
    assert s["total"] >= 250
    for k in ("same_day_closure_rate", "auto_dispatch_rate", "on_time_rate", "satisfaction_rate"):
        assert 0.5 < s[k] < 1.0, (k, s[k])
    assert 0 < s["returned_rate"] < 0.2 and s["escalated"] > 0
    assert s["step_minutes"]["handle"]["median"] < s["step_minutes"]["handle"]["p90"]


def test_rollup_gives_the_live_answer_and_follows_changes(engine, demo_rows, http, auth, admin_token):
    from gridserver.incidents import stats

    to = datetime.now(timezone(timedelta(hours=8)))
    frm = (to - timedelta(days=75)).replace(hour=10)  # spans whole months (monthly roll-up) and days
    with engine.begin() as conn:
        rolled = stats.incident_stats(conn, "440104001", frm, to)
        live = stats.incident_stats(conn, "440104001", frm, to, use_rollup=False)
    assert rolled["rolled_up_days"] >= 70 and live["rolled_up_days"] == 0
    rolled.pop("rolled_up_days"), live.pop("rolled_up_days")
    assert rolled == live
    # an old incident changes: the next answer includes it
    with engine.connect() as conn:
        old = conn.execute(text("SELECT id FROM incidents WHERE source = 'demo' AND status = 'closed' AND street_code = "
                                "'440104001' AND created_at BETWEEN :a AND now() - interval '20 days' ORDER BY id LIMIT 1"),
                           {"a": frm + timedelta(days=2)}).scalar()
    r = http.post(f"/api/v1/incidents/{old}/actions/rate", headers=auth(admin_token), json={"rating": "satisfied"})
    assert r.status_code == 200, r.text
    with engine.begin() as conn:
        after = stats.incident_stats(conn, "440104001", frm, to)
    assert after["rated"] == live["rated"] + 1 and after["rolled_up_days"] >= 70
