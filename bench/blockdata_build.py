"""The full-scale demo build (``gridserver demo --scale full``): wall time and where the CPU went.

Runs the build as a child process against its own database ``gs_blockdata_<pid>`` on DATABASE_URL's
server (dropped afterwards unless ``--keep``) and samples ``/proc`` every 0.2 s for

* the CPU seconds (user + system) of the build's Python process tree, and
* the CPU seconds of the PostgreSQL processes working for it: the backends connected to that
  database and the parallel workers (index builds) they start.

The machine is shared: next to the wall time it prints the load average before and after, and the
ratio of CPU to wall (how many of the cores the build kept busy). ``--blockdata-only`` builds the
demo city once without block data (``--scale none``, not timed) and then times only the block-data
step (``gridserver.demo.blockdata``) on it; ``--db NAME`` reuses such a database.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/blockdata_build.py [--scale full]
    DATABASE_URL=… .venv/bin/python bench/blockdata_build.py --blockdata-only --db gs_blockdata_base --keep
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import admin_url, emit  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")
_BLOCKDATA_ONLY = """
import json, sys, time
from rich.console import Console
from gridserver.db.engine import get_engine
from gridserver.demo.blockdata import build_demo_blockdata
from gridserver.demo.build import _shared_dir
from gridserver.demo.city import load_city
shared = _shared_dir()
city = load_city(shared, 0)
t = time.perf_counter()
s = build_demo_blockdata(get_engine(), city, scale=sys.argv[1], seed=0, shared_dir=shared, console=Console())
print("BLOCKDATA", json.dumps(s, ensure_ascii=False))
"""


def _proc(pid: int) -> tuple[float, int, str] | None:
    """(cpu seconds, parent pid, command line) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    fields = st[st.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK, int(fields[1]), cmd


class Sampler(threading.Thread):
    """Last seen CPU seconds per process: the build's tree and the PostgreSQL processes serving ``db``."""

    def __init__(self, root_pid: int, db: str):
        super().__init__(daemon=True)
        self.root, self.db = root_pid, db
        self.python: dict[int, float] = {}
        self.pg: dict[int, float] = {}
        self.stop = threading.Event()

    def sample(self) -> None:
        procs = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                p = _proc(int(d))
                if p:
                    procs[int(d)] = p
        tree = {self.root}
        changed = True
        while changed:
            changed = False
            for pid, (_, ppid, _) in procs.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    changed = True
        ours = {pid for pid, (_, _, cmd) in procs.items() if cmd.startswith("postgres: ") and f" {self.db} " in cmd}
        ours |= set(self.pg)
        for pid, (cpu, _, cmd) in procs.items():
            if pid in tree:
                self.python[pid] = max(cpu, self.python.get(pid, 0.0))
            elif pid in ours or any(cmd.startswith(f"postgres: parallel worker for PID {o}") for o in ours):
                self.pg[pid] = max(cpu, self.pg.get(pid, 0.0))

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.2)


def run_measured(cmd: list[str], env: dict, db: str) -> dict:
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(child.pid, db)
    sampler.start()
    out = []
    for line in child.stdout:
        sys.stdout.write(line)
        out.append(line)
    child.wait()
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    if child.returncode:
        sys.exit(f"build failed (exit {child.returncode})")
    py, pg = sum(sampler.python.values()), sum(sampler.pg.values())
    return {"wall_s": round(wall, 1), "python_cpu_s": round(py, 1), "postgres_cpu_s": round(pg, 1),
            "cores_busy": round((py + pg) / wall, 2), "loadavg_before": [round(x, 2) for x in load0],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()], "output": "".join(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="full", choices=["full", "small", "tiny"])
    ap.add_argument("--db", help="existing database on DATABASE_URL's server (with --blockdata-only: the demo city "
                                 "without block data, built there first when empty)")
    ap.add_argument("--blockdata-only", action="store_true", help="time only the block-data step")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    a = ap.parse_args()
    from gridserver.db import embedded

    admin = admin_url()
    db = a.db or f"gs_blockdata_{os.getpid()}"
    url = admin.rsplit("/", 1)[0] + "/" + db
    env = {**os.environ, "DATABASE_URL": url.replace("postgresql+psycopg://", "postgresql://", 1)}
    gs = os.path.join(ROOT, ".venv", "bin", "gridserver")
    if not a.db:
        embedded.drop_database(admin, db)
        embedded.ensure_database(admin, db)
    try:
        if a.blockdata_only:
            from sqlalchemy import create_engine, text

            eng = create_engine(url)
            with eng.connect() as conn:
                has_city = conn.execute(text("SELECT to_regclass('admin_areas') IS NOT NULL")).scalar() and \
                    conn.execute(text("SELECT count(*) FROM admin_areas WHERE level = 'grid'")).scalar()
            eng.dispose()
            if not has_city:
                subprocess.run([gs, "demo", "--scale", "none"], env=env, cwd=ROOT, check=True)
            r = run_measured([sys.executable, "-c", _BLOCKDATA_ONLY, a.scale], env, db)
        else:
            r = run_measured([gs, "demo", "--scale", a.scale], env, db)
    finally:
        if not a.db and not a.keep:
            embedded.drop_database(admin, db)
    out = r.pop("output")
    step = next((ln for ln in out.splitlines() if ln.startswith("BLOCKDATA ")), None)
    if step:
        import json

        s = json.loads(step.split(" ", 1)[1])
        r["blockdata_seconds"], r["timings"] = s.get("seconds"), s.get("timings")
    print(f"wall {r['wall_s']} s · Python CPU {r['python_cpu_s']} s · PostgreSQL CPU {r['postgres_cpu_s']} s · "
          f"{r['cores_busy']} cores busy · load {r['loadavg_before']} → {r['loadavg_after']}")
    emit("blockdata_build", scale=a.scale, blockdata_only=a.blockdata_only, **r)


if __name__ == "__main__":
    main()
