"""Vector tile throughput: our HTTP endpoint against PostGIS making the same tiles directly.

Builds a temporary database (on the embedded PostGIS, or DATABASE_URL's server) holding ~2,000
grids of ~50 vertices (the real Yuexiu OSM street polygons cut into Voronoi cells), their streets
and district, and 5,000 incidents. Then, side by side in one run and at the same concurrency:

* **PostGIS direct** (the baseline): C threads, each with its own psycopg connection, run the very
  SQL the endpoint runs (gridserver.maps.tiles.render_tile) for every tile in the list.
* **HTTP**: the real app (gridserver.api.create_app, plain-``def`` tile handler in FastAPI's
  thread pool) under uvicorn in a subprocess, fetched by C client threads over keep-alive HTTP.
* **HTTP async**: the same SQL in an ``async def`` handler on a psycopg AsyncConnectionPool, to
  decide which handler style the endpoint uses.

The tile list is every z14, z15 and z16 tile over the data for the grids, streets and incidents
layers. It prints tiles/s per zoom and the ratio HTTP / direct.

Then **tipg side by side** (developmentseed's OGC Features/Tiles server, measured, not quoted): tipg
lives only in a bench-only virtualenv ``bench/.venv-tipg`` (created on first use with
``python3 -m venv`` + ``pip install tipg uvicorn``; never a project dependency) and runs as its own
uvicorn process on the same scratch database, publishing a view of the current grids with the
columns our grid tiles carry (code, name, level, parent_code, geom_3857). The z14 and z16 grid tiles
are fetched from gridserver (as served, i.e. from its area tile cache, and rendered, cache off),
from tipg, and made by the plain-SQL floor, with the same client threads and concurrency; it prints
req/s, ratios and tile bytes. If tipg cannot be installed or started, it says so and goes on.

    .venv/bin/python bench/tiles.py [--clients 4] [--rounds 2] [--grids 2000] [--no-tipg] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import timedelta

import numpy as np
import shapely
from fastapi import Request  # module level: the async handler's annotation must resolve
from common import admin_url, machine, voronoi_split, wait_healthz, wrk_rate  # bench/common.py (the script directory is on sys.path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from gridserver.incidents.categories import CATEGORIES  # noqa: E402
from gridserver.maps import tiles  # noqa: E402
from gridserver.settings import get_settings  # noqa: E402

ZOOMS = (14, 15, 16)
LAYERS = ("grids", "streets", "incidents")
#: Incident tiles are per caller: the bench reads them as a city-wide admin would.
ALL = tiles.Viewer("TRUE", {})
TOKEN: dict[str, str] = {}


# --- data ----------------------------------------------------------------------------------------

def build_city(n_grids: int, n_incidents: int, rng) -> tuple[list[dict], list[tuple]]:
    """Areas (district, streets, communities, grids) and incident rows over Yuexiu."""
    import geopandas as gpd

    path = get_settings().yuexiu_dir / "yuexiu_subdistricts_osm_wgs84.geojson"
    if path.exists():
        df = gpd.read_file(path)
        streets = list(df.geometry.values)
        scodes = [str(c) for c in df["ref:admin:CN:nbs"]]
        names = list(df.get("name", scodes))
    else:  # no ../shared: a generated outline of Yuexiu's size cut into 18 streets (as bench/locate_batch.py)
        from gridserver.demo.synthetic import synthetic_outline

        print(f"{path} not found: using a generated city of the same size", flush=True)
        streets = voronoi_split(synthetic_outline(rng, 33.8), 18, rng)
        scodes = [f"440104{i + 1:03d}" for i in range(len(streets))]
        names = [f"街道{i + 1:02d}" for i in range(len(streets))]
    district = shapely.union_all(streets)
    areas = [dict(level="district", code="440104", name="越秀区", parent_code=None, geom=district)]
    total = sum(s.area for s in streets)
    for scode, street, name in zip(scodes, streets, names):
        areas.append(dict(level="street", code=scode, name=str(name), parent_code="440104", geom=street))
        k = max(1, round(n_grids * street.area / total))
        parts = voronoi_split(street, k, rng)
        parts.sort(key=lambda p: (-round(p.centroid.y, 3), p.centroid.x))
        per_comm = 25
        for ci in range(0, len(parts), per_comm):
            ccode = f"{scode}{ci // per_comm + 1:03d}"
            block = parts[ci:ci + per_comm]
            areas.append(dict(level="community", code=ccode, name=f"社区{ccode[-3:]}", parent_code=scode,
                              geom=shapely.union_all(block)))
            for gi, p in enumerate(block):
                areas.append(dict(level="grid", code=f"{ccode}{gi + 1:03d}", name=f"网格{gi + 1:03d}",
                                  parent_code=ccode, geom=p))
    grid_geoms = np.array([a["geom"] for a in areas if a["level"] == "grid"], dtype=object)
    step = shapely.length(grid_geoms).sum() / (50 * len(grid_geoms))  # ~50 vertices per grid
    for a in areas:
        a["geom"] = shapely.segmentize(a["geom"], step)
    x0, y0, x1, y1 = district.bounds
    pts = []
    while len(pts) < n_incidents:
        c = rng.uniform([x0, y0], [x1, y1], (n_incidents, 2))
        pts.extend(c[shapely.contains_xy(district, c[:, 0], c[:, 1])].tolist())
    cats, statuses = list(CATEGORIES), ["reported", "assigned", "processing", "resolved", "closed"]
    incidents = [(random.choice(cats), random.choice(statuses), x, y) for x, y in pts[:n_incidents]]
    return areas, incidents


def load(conninfo: str, areas: list[dict], incidents: list[tuple]) -> None:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO admin_areas (level, code, name, parent_code, geom, source)
                   VALUES (%s, %s, %s, %s, ST_Multi(ST_GeomFromText(%s, 4326)), 'bench')""",
                [(a["level"], a["code"], a["name"], a["parent_code"], shapely.to_wkt(a["geom"], rounding_precision=7))
                 for a in areas])
            cur.executemany(
                "INSERT INTO incidents (category, status, geom) VALUES (%s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
                incidents)
        conn.execute("ANALYZE admin_areas")
        conn.execute("ANALYZE incidents")


def tile_list(bounds) -> list[tuple[str, int, int, int]]:
    out = []
    for z in ZOOMS:
        for t in tiles.TMS.tiles(*bounds, [z]):
            for layer in LAYERS:
                out.append((layer, z, t.x, t.y))
    return out


# --- runners -------------------------------------------------------------------------------------

def run_threads(n: int, work: list, fn) -> tuple[float, dict]:
    """Split ``work`` over n threads running fn(state, item) -> ok; wall time and per-zoom counts."""
    chunks = [work[i::n] for i in range(n)]
    counts: dict[int, int] = defaultdict(int)
    lock = threading.Lock()
    barrier = threading.Barrier(n + 1)
    errors: list[BaseException] = []

    def worker(chunk):
        state = {}
        barrier.wait()
        local = defaultdict(int)
        try:
            for item in chunk:
                fn(state, item)
                local[item[1]] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
        with lock:
            for k, v in local.items():
                counts[k] += v
        if "close" in state:
            state["close"]()

    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed") from errors[0]
    return wall, dict(counts)


def direct_fn(conninfo):
    import psycopg

    def fn(state, item):
        if "conn" not in state:
            state["conn"] = psycopg.connect(conninfo, autocommit=True)
            state["close"] = state["conn"].close
        layer, z, x, y = item
        spec = tiles.LAYERS[layer]
        tiles.render_tile(state["conn"], spec, z, x, y, viewer=ALL if spec.kind == "incidents" else None)
    return fn


def http_fn(base):
    import http.client

    host, port = base.split("//")[1].split(":")

    def fn(state, item):
        if "conn" not in state:
            state["conn"] = http.client.HTTPConnection(host, int(port), timeout=60)
            state["close"] = state["conn"].close
        layer, z, x, y = item
        c = state["conn"]
        c.request("GET", f"/tiles/{layer}/{z}/{x}/{y}.mvt", headers=TOKEN if layer == "incidents" else {})
        r = c.getresponse()
        r.read()
        if r.status not in (200, 204):
            raise RuntimeError(f"HTTP {r.status} for {item}")
    return fn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(mode: str, db_url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, DATABASE_URL=db_url)
    proc = subprocess.Popen([sys.executable, __file__, "--serve", mode, "--port", str(port)], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    wait_healthz(proc, port, 120, f"{mode} server")
    return proc, base


def serve(mode: str, port: int) -> None:
    """Subprocess entry: the production app (sync) or a variant with an async tile handler."""
    import uvicorn

    if mode in ("sync", "nocache"):
        from gridserver.api import create_app

        if mode == "nocache":  # the production app with its area tile cache off: every tile rendered
            from gridserver.maps import tile_cache

            tile_cache.MAX_BYTES = 0
        app = create_app()
    else:
        from contextlib import asynccontextmanager

        from fastapi import FastAPI
        from psycopg_pool import AsyncConnectionPool

        from gridserver.db.engine import conninfo
        from gridserver.maps.routes import tile_response

        apool = AsyncConnectionPool(conninfo(), min_size=1, max_size=get_settings().pool_size, open=False)

        @asynccontextmanager
        async def lifespan(_):
            await apool.open()
            yield
            await apool.close()

        app = FastAPI(lifespan=lifespan)

        @app.get("/healthz")
        async def healthz():
            return {"status": "ok"}

        @app.get("/tiles/{layer}/{z}/{x}/{y}.mvt")
        async def tile(request: Request, layer: str, z: int, x: int, y: int):
            spec = tiles.get_layer(layer)
            tiles.check_tile(z, x, y)
            async with apool.connection() as aconn:
                data = await tiles.render_tile_async(aconn, spec, z, x, y,
                                                     viewer=ALL if spec.kind == "incidents" else None)
            return tile_response(data, spec.max_age, request.headers.get("if-none-match"))

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def bench_token(db_url: str) -> None:
    """An admin in the bench database and a bearer token the server subprocesses accept (shared secret)."""
    import secrets

    from sqlalchemy import create_engine

    from gridserver.auth.security import create_access_token
    from gridserver.auth.users import create_user

    secret = secrets.token_urlsafe(32)
    os.environ["GRIDSERVER_JWT_SECRET"] = secret
    get_settings().jwt_secret = secret
    eng = create_engine(db_url)
    with eng.begin() as conn:
        create_user(conn, "bench_admin", secrets.token_urlsafe(16), "admin")
    eng.dispose()
    TOKEN["Authorization"] = f"Bearer {create_access_token('bench_admin', expires_delta=timedelta(hours=12))}"


def incident_aggregation(conninfo: str, bounds, rounds: int) -> dict:
    """Incident tiles as served (clusters up to z14) against the same tiles as raw points: bytes and time."""
    import psycopg

    spec = tiles.LAYERS["incidents"]
    out: dict = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        def render(t, clustered):
            sql, params = tiles.tile_query(spec, t.z, t.x, t.y, None, ALL, clustered)
            row = conn.execute(sql, params, binary=True).fetchone()
            return bytes(row[0]) if row and row[0] else b""

        print(f"{'incident tiles':16} {'tiles':>6} {'max KB served':>14} {'max KB points':>14} {'ms/tile served':>15} "
              f"{'ms/tile points':>15}")
        for z in range(10, 17):
            ts = list(tiles.TMS.tiles(*bounds, [z]))
            served = [tiles.render_tile(conn, spec, t.z, t.x, t.y, viewer=ALL) for t in ts]
            points = [render(t, False) for t in ts]
            times = {}
            for label, fn in (("served", lambda t: tiles.render_tile(conn, spec, t.z, t.x, t.y, viewer=ALL)),
                              ("points", lambda t: render(t, False))):
                best = None
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    for t in ts:
                        fn(t)
                    wall = time.perf_counter() - t0
                    best = wall if best is None else min(best, wall)
                times[label] = 1000 * best / len(ts)
            row = {"tiles": len(ts), "max_bytes_served": max(map(len, served)), "max_bytes_points": max(map(len, points)),
                   "ms_served": round(times["served"], 2), "ms_points": round(times["points"], 2)}
            out[f"z{z}"] = row
            print(f"{'z' + str(z):16} {len(ts):6d} {row['max_bytes_served'] / 1e3:14.1f} {row['max_bytes_points'] / 1e3:14.1f} "
                  f"{row['ms_served']:15.2f} {row['ms_points']:15.2f}")
    worst = max(v["max_bytes_served"] for v in out.values())
    print(f"largest served incident tile: {worst / 1e3:.1f} KB (points-only would be "
          f"{max(v['max_bytes_points'] for v in out.values()) / 1e3:.1f} KB)")
    out["max_bytes_served"] = worst
    return out


# --- tipg, side by side ---------------------------------------------------------------------------

TIPG_VENV = os.path.join(ROOT, "bench", ".venv-tipg")
TIPG_VIEW = "bench_tipg_grids"
TIPG_ZOOMS = (14, 16)
#: Seconds of each wrk run (the C load generator, when installed).
WRK_SECONDS = 3.0


def tipg_python() -> tuple[str | None, str]:
    """The bench-only venv's python with tipg importable (created on first use); (None, why) otherwise."""
    py = os.path.join(TIPG_VENV, "bin", "python")
    check = [py, "-c", "import tipg, uvicorn; print(tipg.__version__)"]
    ok = os.path.exists(py) and subprocess.run(check, capture_output=True, text=True).returncode == 0
    if not ok:
        print(f"tipg: creating the bench-only virtualenv {os.path.relpath(TIPG_VENV, ROOT)} (pip install tipg uvicorn) …")
        for cmd in (["python3", "-m", "venv", TIPG_VENV], [py, "-m", "pip", "install", "-q", "tipg", "uvicorn"]):
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return None, f"{' '.join(cmd[:3])} failed: {exc}"
            if r.returncode != 0:
                return None, f"{' '.join(cmd[:3])} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    r = subprocess.run(check, capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"tipg is not importable in {TIPG_VENV}: {r.stderr.strip().splitlines()[-1:]}"
    return py, r.stdout.strip()


def start_tipg(py: str, conninfo: str) -> tuple[subprocess.Popen, str]:
    """tipg under uvicorn (one worker, like ours) on the bench database, publishing only the grids view."""
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"""CREATE OR REPLACE VIEW {TIPG_VIEW} AS
                         SELECT code, name, level, parent_code, geom_3857 AS geom
                         FROM admin_areas WHERE level = 'grid' AND valid_to IS NULL""")
    port = free_port()
    env = dict(os.environ, DATABASE_URL=conninfo, TIPG_DB_TABLES=f'["public.{TIPG_VIEW}"]', TIPG_DB_FUNCTIONS="[]",
               TIPG_DB_SPATIAL_EXTENT="false", TIPG_DB_DATETIME_EXTENT="false", TIPG_DEBUG="false")
    proc = subprocess.Popen([py, "-m", "uvicorn", "tipg.main:app", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning", "--no-access-log"], env=env, cwd=ROOT)
    try:
        wait_healthz(proc, port, 120, "tipg (or it does not publish the grids view)", every=0.3,
                     path=f"/collections/public.{TIPG_VIEW}")
    except RuntimeError:
        proc.terminate()
        raise
    return proc, f"http://127.0.0.1:{port}"


def fetch_fn(base: str, path, sizes: dict | None = None):
    """A client like http_fn for any URL pattern path(z, x, y), anonymous as a map fetching public
    layers; records tile bytes in ``sizes``."""
    import http.client

    host, port = base.split("//")[1].split(":")

    def fn(state, item):
        if "conn" not in state:
            state["conn"] = http.client.HTTPConnection(host, int(port), timeout=60)
            state["close"] = state["conn"].close
        _, z, x, y = item
        c = state["conn"]
        c.request("GET", path(z, x, y))
        r = c.getresponse()
        body = r.read()
        if r.status not in (200, 204):
            raise RuntimeError(f"HTTP {r.status} for {base}{path(z, x, y)}: {body[:200]!r}")
        if sizes is not None:
            sizes[item] = len(body)
    return fn


def tipg_section(conninfo: str, db_url: str, bounds, clients: int, rounds: int, servers: list) -> dict:
    """Grid tiles at z14 and z16: gridserver (cached and rendered), tipg and the plain-SQL floor."""
    print()
    py, info = tipg_python()
    if py is None:
        print(f"tipg: SKIPPED — {info}")
        return {"tipg": "skipped", "tipg_reason": info}
    try:
        proc, tipg_base = start_tipg(py, conninfo)
    except (RuntimeError, OSError) as exc:
        print(f"tipg: SKIPPED — tipg {info} could not be started: {exc}")
        return {"tipg": "skipped", "tipg_reason": str(exc)}
    servers.append(proc)
    sync_proc, sync_base = start_server("sync", db_url)
    servers.append(sync_proc)
    nocache_proc, nocache_base = start_server("nocache", db_url)
    servers.append(nocache_proc)
    ours = lambda z, x, y: f"/tiles/grids/{z}/{x}/{y}.mvt"  # noqa: E731
    theirs = lambda z, x, y: f"/collections/public.{TIPG_VIEW}/tiles/WebMercatorQuad/{z}/{x}/{y}"  # noqa: E731
    print(f"tipg {info} side by side: grid tiles z{' and z'.join(map(str, TIPG_ZOOMS))} (each tile list repeated to "
          f"≥ 400 requests per run), {clients} clients, best of {rounds} rounds")
    print(f"{'grid tiles':22} " + " ".join(f"{'z' + str(z) + ' req/s':>10} {'KB/tile':>8} {'max KB':>7}"
                                          for z in TIPG_ZOOMS))
    out: dict = {"tipg": info}
    rates: dict[str, dict[int, float]] = defaultdict(dict)
    wrk_rates: dict[str, dict[int, float | None]] = defaultdict(dict)
    for z in TIPG_ZOOMS:
        distinct = [("grids", z, t.x, t.y) for t in tiles.TMS.tiles(*bounds, [z])]
        work = distinct * -(-400 // len(distinct))  # ≥ 400 requests per run: few z14 tiles would be all noise
        random.shuffle(work)
        sizes: dict[str, dict] = {k: {} for k in ("floor", "ours", "ours_rendered", "tipg")}

        def floor_fn(state, item, _sizes=sizes["floor"]):
            import psycopg

            if "conn" not in state:
                state["conn"] = psycopg.connect(conninfo, autocommit=True)
                state["close"] = state["conn"].close
            layer, z_, x, y = item
            _sizes[item] = len(tiles.render_tile(state["conn"], tiles.LAYERS[layer], z_, x, y))

        runners = {"PostGIS floor (SQL)": ("floor", floor_fn),
                   "gridserver (served)": ("ours", fetch_fn(sync_base, ours, sizes["ours"])),
                   "gridserver (no cache)": ("ours_rendered", fetch_fn(nocache_base, ours, sizes["ours_rendered"])),
                   "tipg": ("tipg", fetch_fn(tipg_base, theirs, sizes["tipg"]))}
        bases = {"ours": (sync_base, ours), "ours_rendered": (nocache_base, ours), "tipg": (tipg_base, theirs)}
        for label, (key, fn) in runners.items():
            run_threads(clients, work, fn)  # warm-up (and the served cache filled, as in production)
            wall = min(run_threads(clients, work, fn)[0] for _ in range(rounds))
            rates[label][z] = len(work) / wall
            if key in bases:  # the same requests from a C client (None: wrk not installed)
                base_, path_ = bases[key]
                w = wrk_rate(base_, [path_(z_, x_, y_) for _, z_, x_, y_ in distinct], clients, WRK_SECONDS)
                wrk_rates[label][z] = w
                out[f"z{z}_{key}_wrk_req_s"] = w and round(w, 1)
            b = list(sizes[key].values())
            out[f"z{z}_{key}_req_s"] = round(len(work) / wall, 1)
            out[f"z{z}_{key}_bytes_mean"] = round(sum(b) / len(b))
            out[f"z{z}_{key}_bytes_max"] = max(b)
        out[f"z{z}_tiles"] = len(distinct)
        out[f"z{z}_requests"] = len(work)
        if sum(sizes["ours"].values()) and not sum(sizes["tipg"].values()):
            raise RuntimeError(f"tipg returned only empty z{z} grid tiles: it does not see the grids")
    for label in rates:
        key = runners[label][0]
        print(f"{label:22} " + " ".join(f"{rates[label][z]:10.0f} {out[f'z{z}_{key}_bytes_mean'] / 1e3:8.1f} "
                                        f"{out[f'z{z}_{key}_bytes_max'] / 1e3:7.1f}" for z in TIPG_ZOOMS))
    if any(v is not None for r in wrk_rates.values() for v in r.values()):
        for label in wrk_rates:
            print(f"{label + ', wrk':22} " + " ".join(f"{wrk_rates[label][z]:10.0f} {'':8} {'':7}" for z in TIPG_ZOOMS))
    else:
        print("wrk: not installed (Debian: apt-get install -y wrk) — HTTP rates from the Python client only")
    print()
    floor = rates["PostGIS floor (SQL)"]
    for z in TIPG_ZOOMS:
        t = rates["tipg"][z]
        r = {k: rates[lbl][z] for k, lbl in (("served", "gridserver (served)"), ("rendered", "gridserver (no cache)"))}
        out[f"z{z}_tipg_vs_floor"] = round(t / floor[z], 3)
        out[f"z{z}_ours_vs_floor"] = round(r["served"] / floor[z], 3)
        out[f"z{z}_ours_rendered_vs_floor"] = round(r["rendered"] / floor[z], 3)
        out[f"z{z}_ours_vs_tipg"] = round(r["served"] / t, 2)
        out[f"z{z}_ours_rendered_vs_tipg"] = round(r["rendered"] / t, 2)
        print(f"z{z}: tipg / floor {t / floor[z]:.2f}×   gridserver served / floor {r['served'] / floor[z]:.2f}×, "
              f"no cache / floor {r['rendered'] / floor[z]:.2f}×   gridserver / tipg: served {r['served'] / t:.2f}×, "
              f"no cache {r['rendered'] / t:.2f}×")
        w = {k: wrk_rates[lbl].get(z) for k, lbl in (("served", "gridserver (served)"),
                                                      ("rendered", "gridserver (no cache)"), ("tipg", "tipg"))}
        if all(w.values()):
            for k in ("served", "rendered", "tipg"):
                out[f"z{z}_{'ours' if k == 'served' else 'ours_rendered' if k == 'rendered' else 'tipg'}_wrk_vs_floor"] = \
                    round(w[k] / floor[z], 3)
            print(f"      wrk: gridserver served / floor {w['served'] / floor[z]:.2f}×, no cache / floor "
                  f"{w['rendered'] / floor[z]:.2f}×, tipg / floor {w['tipg'] / floor[z]:.2f}×")
    print("note: gridserver's grid tiles also carry a label-point layer (grids_label); tipg's carry the polygons only.")
    return out


# --- main ----------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--grids", type=int, default=2000)
    ap.add_argument("--incidents", type=int, default=5000)
    ap.add_argument("--keep", action="store_true", help="keep the temporary database")
    ap.add_argument("--no-tipg", action="store_true", help="skip the tipg side-by-side section")
    ap.add_argument("--serve", choices=["sync", "async", "nocache"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve, args.port)

    from gridserver.db import embedded, migrate

    admin = admin_url()
    name = f"gs_bench_tiles_{os.getpid()}"
    db_url = admin.rsplit("/", 1)[0] + "/" + name
    conninfo = db_url.replace("postgresql+psycopg://", "postgresql://")
    embedded.ensure_database(admin, name)
    servers = []
    try:
        migrate.upgrade(db_url)
        random.seed(7)
        t0 = time.perf_counter()
        areas, incidents = build_city(args.grids, args.incidents, np.random.default_rng(7))
        load(conninfo, areas, incidents)
        n_grids = sum(a["level"] == "grid" for a in areas)
        bounds = shapely.union_all([a["geom"] for a in areas if a["level"] == "district"]).bounds
        work = tile_list(bounds)
        random.shuffle(work)
        print(f"data: {n_grids} grids, {len(incidents)} incidents, loaded in {time.perf_counter() - t0:.1f}s; "
              f"{len(work)} tiles ({', '.join(LAYERS)} at z{ZOOMS[0]}–{ZOOMS[-1]}), {args.clients} clients, "
              f"best of {args.rounds} rounds")
        bench_token(db_url)
        runners = {"PostGIS direct": direct_fn(conninfo)}
        for mode in ("sync", "async"):
            proc, base = start_server(mode, db_url)
            servers.append(proc)
            runners[f"HTTP {mode}"] = http_fn(base)
        results = {}
        for label, fn in runners.items():
            run_threads(args.clients, work, fn)  # warm-up: caches, prepared statements, pool
            best = None
            for _ in range(args.rounds):
                wall, counts = run_threads(args.clients, work, fn)
                if best is None or wall < best[0]:
                    best = (wall, counts)
            results[label] = best
        per_zoom = {z: sum(1 for w in work if w[1] == z) for z in ZOOMS}
        # per-zoom rates: each zoom timed on its own
        zoom_rates: dict[str, dict[int, float]] = defaultdict(dict)
        for label, fn in runners.items():
            for z in ZOOMS:
                sub = [w for w in work if w[1] == z]
                wall = min(run_threads(args.clients, sub, fn)[0] for _ in range(args.rounds))
                zoom_rates[label][z] = len(sub) / wall
        print()
        print(f"{'':16} {'all tiles/s':>12} " + " ".join(f"{'z' + str(z) + ' tiles/s':>13}" for z in ZOOMS))
        for label, (wall, _) in results.items():
            print(f"{label:16} {len(work) / wall:12.0f} " + " ".join(f"{zoom_rates[label][z]:13.0f}" for z in ZOOMS))
        base = results["PostGIS direct"][0]
        print()
        for label in ("HTTP sync", "HTTP async"):
            ratio = base / results[label][0]
            zr = " ".join(f"z{z} {zoom_rates[label][z] / zoom_rates['PostGIS direct'][z]:.2f}×" for z in ZOOMS)
            print(f"{label} / PostGIS direct: {ratio:.2f}×   ({zr})")
        print(f"tiles per zoom: {per_zoom}")
        for p in servers:  # free the cores for the next sections
            p.terminate()
            p.wait(timeout=10)
        servers.clear()
        tipg = ({"tipg": "skipped", "tipg_reason": "--no-tipg"} if args.no_tipg
                else tipg_section(conninfo, db_url, bounds, args.clients, args.rounds, servers))
        print()
        agg = incident_aggregation(conninfo, bounds, args.rounds)
        print(json.dumps({"bench": "tiles_incident_aggregation", "incidents": len(incidents), **agg, **tipg,
                          **machine()}, ensure_ascii=False))
    finally:
        for p in servers:
            p.terminate()
            p.wait(timeout=10)
        if not args.keep:
            embedded.drop_database(admin, name)


if __name__ == "__main__":
    main()
