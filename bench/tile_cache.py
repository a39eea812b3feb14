"""Area tiles from the revision-keyed cache (gridserver/maps/tile_cache.py) vs rendered by PostGIS.

Builds a scratch database (DATABASE_URL's server or the embedded PostGIS) with ~1,000 grids (a
generated district cut into streets, communities and grids), starts ``gridserver`` (uvicorn) on it
and requests every z14–z16 tile of the grids and communities layers over HTTP with N clients:

* cold: the first pass, every tile rendered by ST_AsMVT (cache misses);
* warm: the same tiles again, served from the cache (gridserver/maps/fast_tiles.py: no database
  access while the areas revision read less than ``tile_revision_ttl`` ago holds);
* floor: the same tile SQL looped on N plain psycopg connections (no HTTP), the uncached ceiling.

Warm is measured with the Python client threads and, when the C load generator ``wrk`` is installed
(Debian: ``apt-get install -y wrk``; otherwise the bench says so and reports the Python client only),
with wrk against one worker and against ``gridserver serve --workers W`` (default: one per core).

    .venv/bin/python bench/tile_cache.py [--clients 4] [--grids 1000] [--rounds 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import shapely

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from common import emit, scratch_database, voronoi_split, wait_healthz, wrk_rate  # noqa: E402  (bench/common.py)

ZOOMS = (14, 15, 16)
LAYERS = ("grids", "communities")


def city(n_grids: int, rng) -> list[dict]:
    from gridserver.demo.synthetic import synthetic_outline

    district = synthetic_outline(rng, 20.0)
    areas = [dict(level="district", code="440104", name="区", parent_code=None, geom=district)]
    for s, street in enumerate(voronoi_split(district, 8, rng)):
        scode = f"440104{s + 1:03d}"
        areas.append(dict(level="street", code=scode, name=f"街{s}", parent_code="440104", geom=street))
        for c, comm in enumerate(voronoi_split(street, 8, rng)):
            ccode = f"{scode}{c + 1:03d}"
            areas.append(dict(level="community", code=ccode, name=f"社{ccode}", parent_code=scode, geom=comm))
            for g, cell in enumerate(voronoi_split(comm, max(1, n_grids // 64), rng)):
                areas.append(dict(level="grid", code=f"{ccode}{g + 1:03d}", name=f"格{g}", parent_code=ccode,
                                  geom=shapely.segmentize(cell, 0.0003)))
    return areas


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(n: int, work: list, fn) -> float:
    chunks = [work[i::n] for i in range(n)]
    errors: list = []
    barrier = threading.Barrier(n + 1)

    def worker(chunk):
        state: dict = {}
        barrier.wait()
        try:
            for item in chunk:
                fn(state, item)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--grids", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="worker processes for the wrk run")
    ap.add_argument("--seconds", type=float, default=4.0, help="duration of each wrk run")
    a = ap.parse_args()

    from conftest import load_areas
    from gridserver.db.engine import conninfo, get_engine
    from gridserver.maps import tiles

    with scratch_database("gs_bench_tile_cache") as url:
        areas = city(a.grids, np.random.default_rng(5))
        load_areas(get_engine(), areas)
        bounds = areas[0]["geom"].bounds
        work = [(layer, z, t.x, t.y) for z in ZOOMS for t in tiles.TMS.tiles(*bounds, [z]) for layer in LAYERS]
        print(f"{sum(x['level'] == 'grid' for x in areas)} grids; {len(work)} tiles ({', '.join(LAYERS)} at "
              f"z{ZOOMS[0]}–{ZOOMS[-1]}); {a.clients} clients")
        env = dict(os.environ, DATABASE_URL=url.replace("postgresql+psycopg://", "postgresql://"))
        paths = [f"/tiles/{layer}/{z}/{x}/{y}.mvt" for layer, z, x, y in work]
        proc, port = start(env, 1)
        try:

            def over_http(state, item):
                if "c" not in state:
                    state["c"] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                layer, z, x, y = item
                state["c"].request("GET", f"/tiles/{layer}/{z}/{x}/{y}.mvt")
                r = state["c"].getresponse()
                r.read()
                if r.status not in (200, 204):
                    raise RuntimeError(f"{r.status} for {item}")

            def direct(state, item):
                import psycopg

                if "c" not in state:
                    state["c"] = psycopg.connect(conninfo(), autocommit=True)
                layer, z, x, y = item
                tiles.render_tile(state["c"], tiles.LAYERS[layer], z, x, y)

            cold = run(a.clients, work, over_http)  # every tile rendered once (cache misses)
            warm = min(run(a.clients, work, over_http) for _ in range(a.rounds))
            floor = min(run(a.clients, work, direct) for _ in range(a.rounds))
            wrk1 = wrk_rate(f"http://127.0.0.1:{port}", paths, a.clients, a.seconds)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        wrk_n = None
        if wrk1 is not None and a.workers > 1:
            proc, port = start(env, a.workers)
            try:
                wrk_rate(f"http://127.0.0.1:{port}", paths, 2 * a.workers, 1.0)  # every worker fills its cache
                wrk_n = wrk_rate(f"http://127.0.0.1:{port}", paths, max(a.clients, 2 * a.workers), a.seconds)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
    n = len(work)
    print(f"cold (rendered) over HTTP : {n / cold:8.0f} tiles/s")
    print(f"warm (cached)   over HTTP : {n / warm:8.0f} tiles/s  = {cold / warm:.1f}x cold, "
          f"{floor / warm:.2f}x the floor (Python client, {a.clients} threads)")
    print(f"floor: tile SQL on {a.clients} plain connections: {n / floor:8.0f} tiles/s")
    if wrk1 is None:
        print("wrk: not installed (Debian: apt-get install -y wrk) — warm rate from the Python client only")
    else:
        print(f"warm (cached), wrk        : {wrk1:8.0f} tiles/s, 1 worker, {a.clients} connections")
        if wrk_n is not None:
            print(f"warm (cached), wrk        : {wrk_n:8.0f} tiles/s, {a.workers} workers, "
                  f"{max(a.clients, 2 * a.workers)} connections")
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()
    print(f"load average while measuring: {load}")
    emit("tile_cache", tiles=n, clients=a.clients, cold_tiles_s=round(n / cold), warm_tiles_s=round(n / warm),
         floor_tiles_s=round(n / floor), warm_vs_cold=round(cold / warm, 2), warm_vs_floor=round(floor / warm, 2),
         wrk_warm_tiles_s=wrk1 and round(wrk1), wrk_workers=a.workers if wrk_n is not None else None,
         wrk_warm_workers_tiles_s=wrk_n and round(wrk_n), load_average=load)


def start(env: dict, workers: int) -> tuple[subprocess.Popen, int]:
    """``gridserver serve --workers N`` (its own CLI; a throwaway JWT secret) on a free port; waits for /healthz."""
    import secrets

    import tempfile

    port = free_port()
    env = dict(env, GRIDSERVER_JWT_SECRET=secrets.token_urlsafe(32))
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "gridserver.cli", "serve", "--port", str(port), "--workers",
                             str(workers), "--no-access-log"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthz(proc, port, 180, "gridserver serve", log=log)
    except RuntimeError as exc:
        proc.terminate()
        raise SystemExit(str(exc)) from None
    return proc, port


if __name__ == "__main__":
    main()
