"""A 1 M-row people import as a background job, killed half-way and resumed; against plain COPY.

By default it makes a scratch database (``bench/common.py``: DATABASE_URL's server, or the embedded
PostGIS; dropped at the end unless ``--keep``) and builds the demo city with block data there at
``--scale`` (``build_demo``, as ``gridserver demo --scale …``; a generated city when ``../shared`` is
absent); ``--db NAME`` uses an existing demo database on that server instead (the bench rows are
removed from it afterwards unless ``--keep``). It writes a CSV of ``--rows`` new people living in existing demo households (format-valid fictitious
ID numbers, phones, names), then:

1. **baseline**: COPY of the same file into a bare text table (the floor for loading the bytes);
2. **job**: ``gridserver import people FILE --source … --detach`` queues the job, a worker process
   (``gridserver jobs worker``) runs it; at ~40 % the worker is killed with SIGKILL (as a crash or a
   server restart would), its heartbeat is aged past the stale limit (instead of waiting 60 s), and
   a new worker resumes the job from its last committed chunk.

Prints rows/s, the ratio to COPY (the baseline), where the job resumed, and one JSON line.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/blockdata_import.py [--rows 1000000] [--scale small]
    .venv/bin/python bench/blockdata_import.py --db demo       # an existing demo database on DATABASE_URL's server
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from sqlalchemy import text  # noqa: E402

from gridserver.blockdata.importer import CHUNK_ROWS  # noqa: E402  (the job's commit unit)

SOURCE = "bench-人口导入"


def write_file(engine, path: Path, n: int) -> None:
    from gridserver.demo.blockdata import _id_numbers, _names

    with engine.connect() as conn:
        hh = [r[0] for r in conn.execute(text("SELECT household_code FROM households ORDER BY id"))]
    if not hh:
        sys.exit("no households: build the demo first (gridserver demo --scale full)")
    rng = np.random.default_rng(11)
    male = rng.random(n) < 0.5
    births = np.datetime64("1940-01-01") + rng.integers(0, 30_000, n).astype("timedelta64[D]")
    ids = _id_numbers(rng, np.array(["440113"] * n), births, male)   # a district the demo never uses: no clash
    names = _names(rng, n)
    phones = rng.integers(13_000_000_000, 19_999_999_999, n)
    house = rng.integers(0, len(hh), n)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["身份证号", "姓名", "联系电话", "性别", "户号", "人口类型"])
        for i in range(n):
            w.writerow([ids[i], names[i], str(phones[i]), "男" if male[i] else "女", hh[house[i]], "流动"])


def baseline_copy(engine, path: Path) -> float:
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()
        cur.execute("CREATE TEMP TABLE bench_copy (a text, b text, c text, d text, e text, f text)")
        t = time.perf_counter()
        with open(path, "rb") as f, cur.copy("COPY bench_copy FROM STDIN (FORMAT csv, HEADER true)") as cp:
            while chunk := f.read(1 << 20):
                cp.write(chunk)
        raw.commit()
        return time.perf_counter() - t
    finally:
        raw.close()


def job_state(engine, jid: int):
    with engine.connect() as conn:
        return conn.execute(text("SELECT state, done, total, result, error FROM jobs WHERE id = :i"), {"i": jid}).first()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--kill-at", type=float, default=0.4)
    ap.add_argument("--keep", action="store_true", help="keep the scratch database (with --db: the bench rows)")
    ap.add_argument("--scale", default="small", choices=("tiny", "small", "full"),
                    help="demo block-data scale to build in the scratch database (households the rows live in)")
    ap.add_argument("--db", help="existing demo database on DATABASE_URL's server (default: a scratch one)")
    args = ap.parse_args()

    from common import bench_database  # bench/common.py

    with bench_database("gs_bench_bdimport", args.db, keep=args.keep):
        run(args)


def run(args) -> None:
    from gridserver.db.engine import get_engine

    engine = get_engine()
    with engine.connect() as conn:
        has_households = conn.execute(text("SELECT EXISTS (SELECT 1 FROM households)")).scalar()
    if not has_households:
        from gridserver.demo.build import build_demo

        print(f"no block data: building the demo at scale {args.scale} …", flush=True)
        t = time.perf_counter()
        build_demo(scale=args.scale, addresses=False)
        print(f"demo built in {time.perf_counter() - t:.0f} s", flush=True)
    cleanup(engine)
    tmp = Path(tempfile.mkdtemp(prefix="bench-bd-"))
    path = tmp / "people.csv"
    t = time.perf_counter()
    write_file(engine, path, args.rows)
    print(f"wrote {args.rows} rows ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s", flush=True)
    copy_s = baseline_copy(engine, path)
    print(f"baseline COPY: {copy_s:.1f} s ({args.rows / copy_s:,.0f} rows/s)", flush=True)

    env = {**os.environ}
    cli = [sys.executable, "-m", "gridserver.cli"]
    out = subprocess.run(cli + ["import", "people", str(path), "--source", SOURCE, "--detach"], env=env,
                         capture_output=True, text=True, check=True).stdout
    jid = int(out.split("job", 1)[1].split()[0])
    t0 = time.perf_counter()
    w = subprocess.Popen(cli + ["jobs", "worker", "--poll", "0.5"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    while True:
        s = job_state(engine, jid)
        if s.total and s.done >= args.kill_at * s.total:
            break
        if s.state in ("done", "failed"):
            break
        time.sleep(0.5)
    os.killpg(w.pid, signal.SIGKILL)
    w.wait()
    t_killed = time.perf_counter()
    killed_at = job_state(engine, jid).done
    print(f"worker killed at {killed_at} rows ({t_killed - t0:.0f} s)", flush=True)
    if killed_at >= args.rows:
        print(f"note: the job finished before the kill — it commits chunks of {CHUNK_ROWS:,} rows, so --rows below "
              f"~{int(CHUNK_ROWS / args.kill_at):,} measures no resume", flush=True)
    with engine.begin() as conn:  # as if the stale limit (60 s) had passed
        conn.execute(text("UPDATE jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = :i AND state = 'running'"),
                     {"i": jid})
    t1 = time.perf_counter()
    w = subprocess.Popen(cli + ["jobs", "worker", "--poll", "0.5"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:
            s = job_state(engine, jid)
            if s.state in ("done", "failed", "cancelled"):
                break
            time.sleep(1)
    finally:
        os.killpg(w.pid, signal.SIGKILL)
        w.wait()
    t_end = time.perf_counter()
    s = job_state(engine, jid)
    if s.state != "done":
        sys.exit(f"job {jid} {s.state}: {s.error}")
    run_s = (t_killed - t0) + (t_end - t1)
    res = s.result
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM people WHERE source = :s AND grid_code IS NOT NULL"), {"s": SOURCE}).scalar()
    print(f"job {jid}: {res['inserted']} inserted, {res['rejected']} rejected, resumed at row {res.get('resumed_at_row')}; "
          f"{n} linked to a grid; {run_s:.0f} s running ({args.rows / run_s:,.0f} rows/s), {run_s / copy_s:.0f}× COPY", flush=True)
    if not args.keep and args.db:
        cleanup(engine, jid)
    from common import emit

    emit("blockdata_import", scale=args.scale if not has_households else "existing", rows=args.rows,
         copy_s=round(copy_s, 2), job_s=round(run_s, 2), rows_per_s=round(args.rows / run_s),
         vs_copy=round(run_s / copy_s, 1), killed_at_row=killed_at, resumed_at_row=res.get("resumed_at_row"),
         inserted=res["inserted"], linked=n, resumed_mid_job=killed_at < args.rows)
    shutil.rmtree(tmp, ignore_errors=True)
    engine.dispose()


def cleanup(engine, jid=None) -> None:
    """Remove the bench rows (and any earlier, interrupted bench import) so runs start clean."""
    with engine.begin() as conn:
        if True:  # noqa: SIM102
            conn.execute(text("DELETE FROM person_tags WHERE person_id IN (SELECT id FROM people WHERE source = :s)"), {"s": SOURCE})
            conn.execute(text("DELETE FROM people WHERE source = :s"), {"s": SOURCE})
            conn.execute(text("DELETE FROM bd_review WHERE source = :s"), {"s": SOURCE})
            conn.execute(text("UPDATE jobs SET state = 'cancelled' WHERE task = 'blockdata.import' AND state IN ('queued', 'running')"))
            # raw rows stay (imports keep their raw rows); the import runs are closed so a new run starts afresh
            conn.execute(text("UPDATE bd_imports SET status = 'failed' WHERE source = :s"), {"s": SOURCE})
            conn.execute(text("DELETE FROM bd_datasets WHERE name = :n"), {"n": f"people:{SOURCE}"})
            from gridserver.blockdata.service import refresh_rollups

            refresh_rollups(conn)



if __name__ == "__main__":
    main()
