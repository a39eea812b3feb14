"""Shared helpers of the benchmark scripts."""

from __future__ import annotations

import numpy as np
import shapely
from shapely.ops import voronoi_diagram


def voronoi_split(polygon, k: int, rng: np.random.Generator) -> list:
    """Split ``polygon`` into about ``k`` Voronoi cells of random seeds inside it (benchmark data)."""
    x0, y0, x1, y1 = polygon.bounds
    seeds: list = []
    while len(seeds) < k:
        c = rng.uniform([x0, y0], [x1, y1], (4 * k, 2))
        seeds.extend(c[shapely.contains_xy(polygon, c[:, 0], c[:, 1])].tolist())
    cells = voronoi_diagram(shapely.MultiPoint(seeds[:k]), envelope=polygon.envelope.buffer(0.01))
    return [p for p in (c.intersection(polygon) for c in cells.geoms) if not p.is_empty and p.area > 0]


# --- running from a clean checkout ----------------------------------------------------------------

def admin_url() -> str:
    """The maintenance database of the server to bench on: DATABASE_URL's, else the embedded PostGIS
    (started on demand)."""
    from gridserver.db import embedded
    from gridserver.settings import get_settings

    s = get_settings()
    if s.database_url:
        u = s.database_url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
            "postgres://", "postgresql+psycopg://", 1)
        return u.rsplit("/", 1)[0] + "/postgres"
    embedded.start(s)
    return embedded.url(s, "postgres")


@__import__("contextlib").contextmanager
def scratch_database(prefix: str, *, keep: bool = False):
    """A fresh, migrated database ``<prefix>_<pid>`` on that server, dropped afterwards; yields its
    SQLAlchemy URL. DATABASE_URL points at it meanwhile, so gridserver code uses it."""
    import os

    from gridserver.db import embedded, engine, migrate
    from gridserver.settings import get_settings

    admin = admin_url()
    name = f"{prefix}_{os.getpid()}"
    embedded.drop_database(admin, name)
    embedded.ensure_database(admin, name)
    url = admin.rsplit("/", 1)[0] + "/" + name
    old = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    engine.reset()
    try:
        migrate.upgrade(url)
        yield url
    finally:
        engine.reset()
        if old is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = old
        get_settings.cache_clear()
        if not keep:
            embedded.drop_database(admin, name)


def bench_database(prefix: str, db: str | None = None, *, keep: bool = False):
    """Context for a bench: the existing database ``db`` on the same server when given (DATABASE_URL
    points at it, nothing is dropped), else a fresh :func:`scratch_database`."""
    import contextlib
    import os

    if not db:
        return scratch_database(prefix, keep=keep)
    from gridserver.db import engine
    from gridserver.settings import get_settings

    os.environ["DATABASE_URL"] = admin_url().rsplit("/", 1)[0] + "/" + db
    get_settings.cache_clear()
    engine.reset()
    return contextlib.nullcontext()


def machine() -> dict:
    """Where a figure was measured (bench/README.md keeps it next to the numbers)."""
    import datetime
    import os
    import platform

    return {"date": datetime.date.today().isoformat(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "machine": platform.machine()}


def emit(bench: str, **results) -> None:
    """The final line of every bench: one JSON object (``make bench`` collects them)."""
    import json

    print(json.dumps({"bench": bench, **results, **machine()}, ensure_ascii=False, default=float))


# --- HTTP load with a C client ----------------------------------------------------------------------

_WRK_LUA = """
local paths = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  i = math.random(#paths)
end
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""


def wrk_rate(base: str, paths: list[str], connections: int, seconds: float = 3.0) -> float | None:
    """Requests/s that wrk (the C load generator, Debian package ``wrk``) gets cycling through ``paths``
    on ``connections`` keep-alive connections; None when wrk is not installed. A non-2xx/3xx answer
    is an error (RuntimeError)."""
    import os
    import re
    import shutil
    import subprocess
    import tempfile

    exe = shutil.which("wrk")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        lua, listing = os.path.join(tmp, "paths.lua"), os.path.join(tmp, "paths.txt")
        with open(lua, "w") as f:
            f.write(_WRK_LUA)
        with open(listing, "w") as f:
            f.write("\n".join(paths) + "\n")
        r = subprocess.run([exe, f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds:g}s", "-s", lua, base,
                            "--", listing], capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0 or "Non-2xx" in r.stdout:
        raise RuntimeError(f"wrk against {base}: {r.stdout.strip()} {r.stderr.strip()}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", r.stdout).group(1))


def wait_healthz(proc, port: int, seconds: float = 60, what: str = "server", log=None, every: float = 0.2,
                 path: str = "/healthz") -> None:
    """Poll http://127.0.0.1:PORT + ``path`` until it answers 200; raise RuntimeError (with the tail of the
    ``log`` file object when given) if ``proc`` exits or ``seconds`` pass first. A loaded 2-core machine
    takes long to import everything: give generous ``seconds``."""
    import http.client
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = ""
            if log is not None:
                log.seek(0)
                tail = ":\n" + log.read()[-2000:]
            raise RuntimeError(f"{what} did not start{tail}")
        time.sleep(every)
