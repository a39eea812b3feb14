"""Incident intake under load, and the KPI query on a year of data.

Builds a temporary database (embedded PostGIS or DATABASE_URL's server) with ~2,000 Yuexiu grids
(the tiles bench's city: real OSM street polygons cut into Voronoi cells, ~50 vertices each) and
5,000 older incidents, starts the server **as a user does** (``gridserver serve --workers N``, default
one per core) in a subprocess, and drives it from a **load generator in its own process** (32
keep-alive ``http.client`` connections on a fixed schedule, open loop: latency counts from the scheduled time, so a
slow server cannot hide queueing):

* **baseline**: ``GET /api/v1/locate`` (the covering-grid lookup alone) at the same rate;
* **intake**: ``POST /api/v1/incidents`` — token check, locate, route, deadlines, near-boundary and
  duplicate checks, insert, first event, commit; half the requests carry an ``Idempotency-Key`` — at
  ``--rate`` req/s (default 300) for ``--seconds``;
* **saturation**: closed loop, ``--clients`` (32) clients posting as fast as answers come back: the
  most intake can do here;
* the **CPU cost per report**: CPU seconds of the server processes and of their PostgreSQL backends
  during the intake phase / requests (what decides the rate 2 cores can sustain, and much less
  sensitive than latency to what else runs on the machine).

``--compare-tree DIR`` runs the same phases, on the same database, against another checkout (e.g.
``git archive <commit> | tar -x -C DIR``: the code before a change) started the same way, one
worker unless ``--compare-workers``: before/after side by side in one run.

Then ``--year`` incidents (default 300,000 ≈ a year of a big district) with a full set of step
timestamps are COPYed in and ``stats.incident_stats`` (the ``GET /api/v1/stats/incidents`` body) is
timed over the whole year and one street, against a bare ``count(*)`` over the same rows.

    .venv/bin/python bench/incident_intake.py [--rate 300] [--seconds 20] [--workers 2] [--year 300000]

Prints p50/p90/p99 and achieved rate, ratios to the baseline, the load average, and a final JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)


def _load_generator(base: str, token: str, kind: str, rate: float, seconds: float, points, out, threads: int = 32):
    """Child process: requests on a fixed schedule (request i is due at start + i/rate), sent by
    ``threads`` keep-alive clients (``http.client``: light, so the generator leaves the cores to the server); latency counts from the *scheduled* time, so queueing behind a
    slow server is measured, not hidden. ``rate`` 0 = closed loop (each client sends its next request
    when the answer came, for ``seconds``). Puts (latencies ms, errors, achieved rate) on ``out``."""
    import http.client
    import threading
    import uuid
    from urllib.parse import urlsplit

    closed = rate <= 0
    n = 10**9 if closed else int(rate * seconds)
    start = time.perf_counter() + 0.5
    stop = start + seconds
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    cats = ["city_appearance_01", "street_facility_01", "public_facility_01", "road_traffic_01"]
    run = uuid.uuid4().hex[:8]

    u = urlsplit(base)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def worker(t):
        mine, bad = [], 0
        conn = None
        for i in range(t, n, threads):
            if closed:
                due = time.perf_counter()
                if due >= stop:
                    break
            else:
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            lon, lat_ = points[i % len(points)]
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                if kind == "intake":
                    headers = {**auth, "Idempotency-Key": f"{run}-{i}"} if i % 2 else auth
                    conn.request("POST", "/api/v1/incidents", headers=headers, body=json.dumps(
                        {"lon": lon, "lat": lat_, "category": cats[i % 4],
                         "description": f"压测上报 {i} 路面垃圾堆放"}).encode())
                    r = conn.getresponse()
                    r.read()
                    ok = r.status == 201
                else:
                    conn.request("GET", f"/api/v1/locate?lon={lon}&lat={lat_}")
                    r = conn.getresponse()
                    r.read()
                    ok = r.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                if conn is not None:
                    conn.close()
                conn = None
            mine.append((time.perf_counter() - due) * 1000)
            bad += not ok
        if conn is not None:
            conn.close()
        with lock:
            lat.extend(mine)
            errors[0] += bad

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    out.put((lat, errors[0], len(lat) / (time.perf_counter() - max(t0, start))))


def _cpu_seconds(pids) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _server_pids(proc) -> list[int]:
    import psutil

    try:
        return [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        return [proc.pid]


def _backend_pids(conninfo: str, name: str) -> list[int]:
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as c:
        return [r[0] for r in c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> "
                                        "pg_backend_pid()", (name,))]


class _BackendCPU:
    """CPU seconds used by the PostgreSQL backends of database ``name`` while running: sampled every
    0.2 s (psutil), so backends that come and go between samples lose at most their last 0.2 s."""

    def __init__(self, conninfo: str, name: str):
        import threading

        self.conninfo, self.name = conninfo, name
        self.start: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._sample(first=True)
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _sample(self, first=False):
        import psutil

        for pid in _backend_pids(self.conninfo, self.name):
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            self.start.setdefault(pid, t.user + t.system if first else 0.0)
            self.last[pid] = t.user + t.system

    def _loop(self):
        while not self._stop.wait(0.2):
            self._sample()

    def stop(self) -> float:
        self._stop.set()
        self._t.join()
        self._sample()
        return sum(self.last[p] - self.start[p] for p in self.last)


def drive(base, token, kind, rate, seconds, points, cpu=None) -> dict:
    """One phase; ``cpu`` = (server proc, conninfo, db name) adds CPU ms per request (server, database)."""
    q = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=_load_generator, args=(base, token, kind, rate, seconds, points, q))
    if cpu:
        proc, conninfo, name = cpu
        app_pids = _server_pids(proc)
        app0, db = _cpu_seconds(app_pids), _BackendCPU(conninfo, name)
    p.start()
    lat, errors, achieved = q.get()
    p.join()
    a = np.array(lat)
    out = {"p50_ms": round(float(np.percentile(a, 50)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2),
           "p95_ms": round(float(np.percentile(a, 95)), 2),
           "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 1),
           "requests": len(a), "errors": errors, "rate": round(achieved, 1)}
    if cpu:
        app_s, db_s = _cpu_seconds(app_pids) - app0, db.stop()
        out.update(app_cpu_ms=round(app_s * 1000 / len(a), 2), db_cpu_ms=round(db_s * 1000 / len(a), 2))
    return out


def start_cli_server(db_url: str, workers: int, tree: str | None = None):
    """``gridserver serve --port P [--workers N]`` as a user starts it (``tree``: run that checkout's code)."""
    import secrets
    import subprocess

    from tiles import free_port

    port = free_port()
    env = dict(os.environ, DATABASE_URL=db_url.replace("postgresql+psycopg://", "postgresql://"),
               GRIDSERVER_JWT_SECRET=secrets.token_hex(32))
    cmd = [sys.executable, "-c", "from gridserver.cli import main; main()", "serve", "--port", str(port)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    if tree:
        env["PYTHONPATH"] = os.path.abspath(tree)
    proc = subprocess.Popen(cmd, env=env, cwd=tree or ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    from common import wait_healthz

    wait_healthz(proc, port, 90, f"gridserver serve ({tree or 'this tree'})", every=0.3)
    return proc, base


def stop_server(proc) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except Exception:  # noqa: BLE001
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def phases(label: str, proc, base: str, token: str, args, pts, cpu) -> dict:
    """locate baseline, intake at the rate, intake saturated; printed and returned."""
    drive(base, token, "intake", 50, 2, pts)  # warm up
    base_r = drive(base, token, "locate", args.rate, args.seconds, pts)
    print(f"[{label}] baseline GET /api/v1/locate   {base_r}", flush=True)
    intake = drive(base, token, "intake", args.rate, args.seconds, pts, cpu=(proc, *cpu))
    print(f"[{label}] intake POST /api/v1/incidents {intake}", flush=True)
    sat = drive(base, token, "intake", 0, args.seconds / 2, pts)
    print(f"[{label}] saturated intake ({32} clients, closed loop) {sat}", flush=True)
    return {"locate": base_r, "intake": intake, "saturated": sat}


def year_of_incidents(conninfo: str, n: int, areas: list[dict], rng) -> None:
    """n incidents over the last 365 days with realistic step timestamps, COPYed in."""
    import psycopg

    grids = [a for a in areas if a["level"] == "grid"]
    cats = ["city_appearance", "street_facility", "public_facility", "road_traffic", "landscaping", "water_drainage"]
    deps = ["s_hw", "s_zf", "d_cgzf", "d_zj", "d_sw", "c_jwh"]
    now = datetime.now(timezone.utc)
    buf = io.StringIO()
    gi = rng.integers(len(grids), size=n)
    created = now - timedelta(days=365) * rng.random(n)
    for k in range(n):
        g = grids[gi[k]]
        c = g["geom"].representative_point()
        t0 = created[k]
        steps = [t0 + timedelta(minutes=float(m)) for m in np.cumsum(rng.lognormal([2, 1.6, 5, 3.7, 3], 0.8))]
        closed = steps[4] < now and rng.random() < 0.95
        ts = [s if s < now else None for s in steps]
        if not closed:
            ts[4] = None
        status = "closed" if ts[4] else ("resolved" if ts[2] else "dispatched" if ts[1] else "reported")
        rating = rng.choice(["satisfied", "basic", "unsatisfied", "\\N"], p=[0.4, 0.05, 0.02, 0.53]) if closed else "\\N"
        code = g["code"]
        row = [cats[k % 6], status, f"SRID=4326;POINT({c.x} {c.y})", code, code[:12], code[:9], code[:6],
               deps[k % 6], t0.isoformat(), t0.isoformat()] + [t.isoformat() if t else "\\N" for t in ts] + [
               "t" if rng.random() < 0.97 else "f", "t" if rng.random() < 0.9 else "f", rating,
               "\\N" if closed else (t0 + timedelta(days=3)).isoformat()]
        buf.write("\t".join(row) + "\n")
    with psycopg.connect(conninfo) as conn:
        with conn.cursor() as cur:
            with cur.copy("COPY incidents (category, status, geom, grid_code, community_code, street_code, district_code,"
                          " department, created_at, updated_at, accepted_at, dispatched_at, resolved_at, verified_at,"
                          " closed_at, auto_dispatched, on_time, rating, due_at) FROM STDIN") as copy:
                copy.write(buf.getvalue())
        conn.execute("ANALYZE incidents")


def time_it(fn, repeat=5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=300)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--year", type=int, default=300_000)
    ap.add_argument("--grids", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="gridserver serve --workers (default: cores)")
    ap.add_argument("--compare-tree", help="another checkout to measure the same way (before/after)")
    ap.add_argument("--compare-workers", type=int, default=1)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    from common import admin_url
    from tiles import build_city, load

    from gridserver.db import embedded, migrate
    from gridserver.settings import get_settings

    admin = admin_url()
    name = f"gs_bench_intake_{os.getpid()}"
    db_url = admin.rsplit("/", 1)[0] + "/" + name
    conninfo = db_url.replace("postgresql+psycopg://", "postgresql://")
    embedded.ensure_database(admin, name)
    proc = None
    result = {}
    try:
        migrate.upgrade(db_url)
        rng = np.random.default_rng(7)
        areas, incidents = build_city(args.grids, 5000, rng)
        load(conninfo, areas, incidents)
        from sqlalchemy import create_engine

        from gridserver.auth.users import create_user

        eng = create_engine(db_url)
        with eng.begin() as c:
            create_user(c, "bench_citizen", "bench-password-2026", "citizen")
        eng.dispose()
        import httpx
        import shapely

        grids = [a for a in areas if a["level"] == "grid"]
        pts = []
        for k in range(2000):
            g = grids[k % len(grids)]["geom"]
            x0, y0, x1, y1 = g.bounds
            for _ in range(50):
                p = (random.uniform(x0, x1), random.uniform(y0, y1))
                if g.contains(shapely.Point(p)):
                    pts.append(p)
                    break
        random.shuffle(pts)
        print(f"data: {len(grids)} grids; {args.rate:g} req/s for {args.seconds:g}s, open loop, load generator in its "
              f"own process; load average before: {os.getloadavg()}", flush=True)
        runs = [("this tree", None, args.workers)]
        if args.compare_tree:
            runs.insert(0, (f"compare {args.compare_tree}", args.compare_tree, args.compare_workers))
        measured = {}
        for label, tree, workers in runs:
            proc, base = start_cli_server(db_url, workers, tree)
            token = httpx.post(base + "/api/v1/auth/token", data={"username": "bench_citizen",
                                                                  "password": "bench-password-2026"}).json()["access_token"]
            print(f"[{label}] gridserver serve --workers {workers}", flush=True)
            measured[label] = phases(label, proc, base, token, args, pts, (conninfo, name))
            stop_server(proc)
            proc = None
        m = measured["this tree"]
        intake, base_r, sat = m["intake"], m["locate"], m["saturated"]
        print(f"intake p99 = {intake['p99_ms'] / base_r['p99_ms']:.2f}× the locate p99; p50 "
              f"{intake['p50_ms'] / base_r['p50_ms']:.2f}×; load average after: {os.getloadavg()}")
        result.update(workers=args.workers, intake_p50_ms=intake["p50_ms"], intake_p95_ms=intake["p95_ms"],
                      intake_p99_ms=intake["p99_ms"], intake_rate=intake["rate"], intake_errors=intake["errors"],
                      intake_app_cpu_ms=intake.get("app_cpu_ms"), intake_db_cpu_ms=intake.get("db_cpu_ms"),
                      saturated_rate=sat["rate"], saturated_p99_ms=sat["p99_ms"], locate_p99_ms=base_r["p99_ms"],
                      p99_ratio=round(intake["p99_ms"] / base_r["p99_ms"], 2), loadavg=os.getloadavg()[0])
        if args.compare_tree:
            c = measured[f"compare {args.compare_tree}"]
            result.update(compare_intake_p99_ms=c["intake"]["p99_ms"], compare_intake_rate=c["intake"]["rate"],
                          compare_saturated_rate=c["saturated"]["rate"],
                          compare_app_cpu_ms=c["intake"].get("app_cpu_ms"), compare_db_cpu_ms=c["intake"].get("db_cpu_ms"))

        if args.year:
            t0 = time.perf_counter()
            year_of_incidents(conninfo, args.year, areas, rng)
            print(f"year: {args.year} incidents loaded in {time.perf_counter() - t0:.1f}s")
            os.environ["DATABASE_URL"] = conninfo
            get_settings.cache_clear()
            from gridserver.db import engine as eng_mod
            from gridserver.incidents import stats

            eng_mod.reset()
            e = eng_mod.get_engine()
            frm = datetime.now(timezone.utc) - timedelta(days=365)
            street = next(a["code"] for a in areas if a["level"] == "street")
            with e.connect() as c:
                stats.incident_stats(c, None, frm, None)
                t_year = time_it(lambda: stats.incident_stats(c, None, frm, None))
                t_street = time_it(lambda: stats.incident_stats(c, street, frm, None))
                t_cards = time_it(lambda: stats.scorecards(c, "department", None, frm, None))
                t_count = time_it(lambda: c.exec_driver_sql(
                    "SELECT count(*) FROM incidents WHERE created_at >= now() - interval '365 days'").scalar())
            print(f"KPIs over a year ({args.year} incidents): {t_year * 1000:.0f} ms (street {t_street * 1000:.0f} ms, "
                  f"department scorecards {t_cards * 1000:.0f} ms); bare count(*) {t_count * 1000:.0f} ms "
                  f"→ {t_year / t_count:.1f}× a plain scan")
            result.update(stats_year_ms=round(t_year * 1000, 1), stats_street_ms=round(t_street * 1000, 1),
                          scorecards_ms=round(t_cards * 1000, 1), count_ms=round(t_count * 1000, 1),
                          stats_ratio=round(t_year / t_count, 2), year_incidents=args.year)
            eng_mod.reset()
    finally:
        if proc is not None:
            stop_server(proc)
        if not args.keep:
            embedded.drop_database(admin, name)
    print(json.dumps({"bench": "incident_intake", **result}))


if __name__ == "__main__":
    main()
