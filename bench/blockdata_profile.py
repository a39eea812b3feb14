"""Area profile latency (网格画像): roll-ups against recounting the base tables, per area level.

By default it makes a scratch database (``bench/common.py``: DATABASE_URL's server, or the embedded
PostGIS; dropped at the end unless ``--keep``) and builds the demo city with block data there at
``--scale`` (the same ``build_demo`` as ``gridserver demo --scale …``; a generated city when
``../shared`` is absent). ``--db NAME`` uses an existing database on that server instead (e.g. one
built with ``gridserver demo --scale full``; the demo is built there first when it has no people yet).
Then, in one run, for random grids, communities, all streets and the district:

* **roll-up** (what ``GET /api/v1/areas/{code}/profile`` does): ``service.profile`` over
  ``bd_rollup`` + the live 30-day incident counts and the grid workers;
* **HTTP**: the same through the real app under uvicorn (an admin token, keep-alive client);
* **recount** (the baseline): the same figures counted from buildings/households/people/businesses.

Prints p50/p95 per level and the ratio recount / roll-up, then one JSON line.
Targets (issue 9): grid < 50 ms, district < 1 s at full scale.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/blockdata_profile.py [--scale tiny|small|full] [--grids 200]
    .venv/bin/python bench/blockdata_profile.py --db demo          # an existing demo database on DATABASE_URL's server
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sqlalchemy import text  # noqa: E402

RECOUNT = """
SELECT (SELECT count(*) FROM buildings WHERE grid_code LIKE :p),
       (SELECT count(*) FROM households WHERE grid_code LIKE :p),
       (SELECT json_agg(x) FROM (SELECT sex, CASE WHEN :y - birth_year <= 14 THEN '0-14' WHEN :y - birth_year <= 34 THEN '15-34'
               WHEN :y - birth_year <= 59 THEN '35-59' WHEN :y - birth_year <= 79 THEN '60-79' ELSE '80+' END AS band,
               residence, count(*) FROM people WHERE grid_code LIKE :p GROUP BY 1, 2, 3) x),
       (SELECT json_agg(x) FROM (SELECT category, count(*) FROM businesses WHERE grid_code LIKE :p GROUP BY 1) x),
       (SELECT json_agg(x) FROM (SELECT t.tag, count(*) FROM person_tags t JOIN people p ON p.id = t.person_id
               WHERE t.removed_at IS NULL AND p.grid_code LIKE :p GROUP BY 1) x),
       (SELECT json_agg(x) FROM (SELECT source, count(*), max(confirmed_at) FROM people WHERE grid_code LIKE :p GROUP BY 1) x)
"""


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grids", type=int, default=200)
    ap.add_argument("--communities", type=int, default=50)
    ap.add_argument("--district-rounds", type=int, default=10)
    ap.add_argument("--recount", type=int, default=5, help="areas per level for the (slow) recount baseline")
    ap.add_argument("--scale", default="small", choices=("tiny", "small", "full"),
                    help="demo block-data scale to build (full: Yuexiu size, ~1.17 M people; minutes)")
    ap.add_argument("--db", help="existing database on DATABASE_URL's server (default: a scratch one)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = ap.parse_args()

    from common import bench_database  # bench/common.py

    with bench_database("gs_bench_profile", args.db, keep=args.keep):
        run(args)


def run(args) -> None:

    from gridserver.blockdata import service
    from gridserver.db import migrate
    from gridserver.db.engine import get_engine

    migrate.upgrade()
    engine = get_engine()
    with engine.connect() as conn:
        people = conn.execute(text("SELECT count(*) FROM people")).scalar()
    built = not people
    if built:
        from gridserver.demo.build import build_demo

        print(f"no block data: building the demo at scale {args.scale} …", flush=True)
        t = time.perf_counter()
        build_demo(scale=args.scale, addresses=False)
        print(f"demo built in {time.perf_counter() - t:.0f} s", flush=True)
    with engine.connect() as conn:
        counts = dict(conn.execute(text(
            "SELECT 'people', count(*) FROM people UNION ALL SELECT 'households', count(*) FROM households "
            "UNION ALL SELECT 'buildings', count(*) FROM buildings UNION ALL SELECT 'businesses', count(*) FROM businesses")).all())
        areas = {lvl: [r[0] for r in conn.execute(text("SELECT code FROM admin_areas WHERE level = :l AND valid_to IS NULL "
                                                        "ORDER BY code"), {"l": lvl})]
                 for lvl in ("grid", "community", "street", "district")}
    rng = random.Random(7)
    sample = {"grid": rng.sample(areas["grid"], min(args.grids, len(areas["grid"]))),
              "community": rng.sample(areas["community"], min(args.communities, len(areas["community"]))),
              "street": areas["street"],
              "district": areas["district"] * args.district_rounds}
    print(f"data: {counts}; areas: " + ", ".join(f"{k} {len(v)}" for k, v in areas.items()), flush=True)

    # the live server and a token
    import httpx
    import uvicorn

    from gridserver.api import create_app
    from gridserver.auth.users import create_user, get_user

    user, pw = "bench_profile_admin", "bench-profile-pw-1"
    with engine.begin() as conn:
        if get_user(conn, user) is None:
            create_user(conn, user, pw, "admin", full_name="bench")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.05)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    token = client.post("/api/v1/auth/token", data={"username": user, "password": pw}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    year = time.localtime().tm_year
    results = {}
    for level, codes in sample.items():
        roll, http_ms, recount = [], [], []
        with engine.connect() as conn:
            service.profile(conn, codes[0])  # warm
            for code in codes:
                t = time.perf_counter()
                service.profile(conn, code)
                roll.append((time.perf_counter() - t) * 1000)
            for code in list(dict.fromkeys(codes))[: args.recount]:   # the random sample's first areas
                t = time.perf_counter()
                conn.execute(text(RECOUNT), {"p": code + "%", "y": year}).first()
                recount.append((time.perf_counter() - t) * 1000)
        for code in codes:
            t = time.perf_counter()
            r = client.get(f"/api/v1/areas/{code}/profile", headers=headers)
            http_ms.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
        results[level] = {"n": len(codes), "rollup_p50_ms": round(_pct(roll, 0.5), 2), "rollup_p95_ms": round(_pct(roll, 0.95), 2),
                          "http_p50_ms": round(_pct(http_ms, 0.5), 2), "http_p95_ms": round(_pct(http_ms, 0.95), 2),
                          "recount_p50_ms": round(_pct(recount, 0.5), 2),
                          "recount_over_rollup": round(_pct(recount, 0.5) / max(_pct(roll, 0.5), 1e-9), 1)}
        r = results[level]
        print(f"{level:<10} n={r['n']:<4} roll-up p50 {r['rollup_p50_ms']:8.2f} ms  p95 {r['rollup_p95_ms']:8.2f} ms | "
              f"HTTP p50 {r['http_p50_ms']:8.2f} ms  p95 {r['http_p95_ms']:8.2f} ms | recount p50 {r['recount_p50_ms']:9.2f} ms "
              f"({r['recount_over_rollup']}× slower)", flush=True)
    server.should_exit = True
    th.join(timeout=10)
    ok = results["grid"]["http_p95_ms"] < 50 and results["district"]["http_p95_ms"] < 1000
    from common import emit

    emit("blockdata_profile", scale=args.scale if built else "existing", data=counts, levels=results, targets_met=ok)


if __name__ == "__main__":
    main()
