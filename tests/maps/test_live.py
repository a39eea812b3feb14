"""GET /api/v1/events/incidents: Server-Sent Events fed by the incidents NOTIFY trigger, filtered per caller."""

from __future__ import annotations

import json
import logging
import queue
import threading

import httpx
import pytest
from sqlalchemy import text

from gridserver.maps import live


def _insert(engine, grid, lon, lat, category="construction", reporter=None):
    with engine.begin() as conn:
        return conn.execute(text(
            """INSERT INTO incidents (category, description, status, geom, grid_code, reporter_id, source)
               VALUES (:c, 'sse', 'reported', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :g, :r, 'sse_test')
               RETURNING id"""), {"c": category, "lon": lon, "lat": lat, "g": grid, "r": reporter}).scalar_one()


class Listener:
    """Reads an SSE stream in a thread; events land in a queue; ``ready`` is set on the server's ready event."""

    def __init__(self, url, **kw):
        self.events: queue.Queue = queue.Queue()
        self.ready = threading.Event()
        self.client = httpx.Client(timeout=httpx.Timeout(30, read=60))
        self.thread = threading.Thread(target=self._run, args=(url, kw), daemon=True)
        self.thread.start()

    def _run(self, url, kw):
        try:
            with self.client.stream("GET", url, **kw) as r:
                self.status = r.status_code
                if r.status_code != 200:
                    self.ready.set()
                    return
                kind = None
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:") and kind == "ready":
                        self.ready.set()
                    elif line.startswith("data:") and kind == "incident":
                        self.events.put(json.loads(line[5:]))
        except (httpx.HTTPError, RuntimeError):
            pass

    def ids(self, wait=2.0):
        out, deadline = [], wait
        try:
            while True:
                out.append(self.events.get(timeout=deadline)["id"])
                deadline = 0.3
        except queue.Empty:
            return out

    def close(self):
        self.client.close()


@pytest.fixture
def cleanup(engine):
    yield
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incidents WHERE source = 'sse_test'"))


def test_stream_needs_a_token(http, small_city):
    r = http.get("/api/v1/events/incidents")
    assert r.status_code == 401
    assert http.get("/api/v1/events/incidents", params={"access_token": "forged"}).status_code == 401


def test_events_arrive_filtered_by_scope(live_url, engine, small_city, make_user, admin_token, cleanup):
    worker = make_user("street_operator", "440104003")
    citizen = make_user("citizen")
    admin = Listener(live_url + "/api/v1/events/incidents", headers={"Authorization": f"Bearer {admin_token}"})
    staff = Listener(live_url + f"/api/v1/events/incidents?access_token={worker['token']}")
    public = Listener(live_url + f"/api/v1/events/incidents?access_token={citizen['token']}")
    try:
        for l in (admin, staff, public):
            assert l.ready.wait(20) and l.status == 200
        west = _insert(engine, "440104001001001", 113.255, 23.146)
        east = _insert(engine, "440104003002004", 113.285, 23.123)
        own = _insert(engine, "440104001001002", 113.265, 23.146, reporter=citizen["id"])
        with engine.begin() as conn:
            conn.execute(text("UPDATE incidents SET status = 'dispatched' WHERE id = :id"), {"id": east})
        assert sorted(admin.ids()) == sorted([west, east, own, east])
        assert staff.ids() == [east, east]
        assert public.ids() == [own]
        status = httpx.get(live_url + "/api/v1/events/status").json()
        assert status["subscribers"] >= 3
        assert status["listen_connections_made"] == 1, "one LISTEN connection shared by all subscribers"
    finally:
        for l in (admin, staff, public):
            l.close()


def test_event_payload_has_position_and_status(live_url, engine, small_city, admin_token, cleanup):
    l = Listener(live_url + "/api/v1/events/incidents", headers={"Authorization": f"Bearer {admin_token}"})
    try:
        assert l.ready.wait(20)
        iid = _insert(engine, "440104001001001", 113.255, 23.146, category="road_traffic")
        ev = l.events.get(timeout=5)
        assert ev["id"] == iid and ev["op"] == "insert" and ev["status"] == "reported"
        assert ev["category"] == "road_traffic" and ev["grid_code"] == "440104001001001"
        assert abs(ev["lon"] - 113.255) < 1e-9 and abs(ev["lat"] - 23.146) < 1e-9
        assert "reporter_id" not in ev
    finally:
        l.close()


def test_access_token_never_reaches_the_access_log(caplog):
    # the filter live.py puts on uvicorn's access logger drops query strings
    logger = logging.getLogger("uvicorn.access")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:1", "GET",
                    "/api/v1/events/incidents?access_token=SECRET123", "1.1", 200)
    assert caplog.records and "SECRET123" not in caplog.text
    assert "/api/v1/events/incidents" in caplog.text
    assert live.CHANNEL == "gridserver_incidents"
