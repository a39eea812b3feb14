"""A private PostgreSQL cluster and a gridserver (uvicorn subprocess) on it, for fault tests.

Fault tests stop and restart PostgreSQL; they must never touch the shared servers, so each gets
its own cluster in a temp dir on a free port (``gridserver.db.embedded`` drives initdb/pg_ctl),
migrated with Alembic, with the small city, and an app server in its own process pointed at it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from gridserver.db import embedded
from gridserver.settings import Settings
from serving import wait_serving

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateCluster:
    def __init__(self, db_name: str = "gs_faults"):
        self.dir = Path(tempfile.mkdtemp(prefix="gs-faults-"))
        self.dir.chmod(0o755)  # the cluster runs as the postgres user when we are root
        self.settings = Settings(home=self.dir, pg_port=free_port(), db_name=db_name, database_url=None)
        self.url = ""

    @property
    def conninfo(self) -> str:
        return self.url.replace("postgresql+psycopg://", "postgresql://")

    def start(self) -> str:
        self.url = embedded.start(self.settings)
        return self.url

    def stop(self, mode: str = "fast") -> None:
        data = self.dir / "pgdata"
        r = embedded._run([embedded.find_bindir(self.settings) / "pg_ctl", "stop", "-D", data, "-m", mode, "-w"])
        assert r.returncode == 0, r.stderr

    def destroy(self) -> None:
        if embedded.is_running(self.settings):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def setup_city_and_admin(url: str) -> tuple[str, str]:
    """Migrate, load the small city, create an admin; returns (username, password)."""
    from sqlalchemy import create_engine

    from conftest import load_areas, small_city_areas
    from gridserver.auth.users import create_user
    from gridserver.db import migrate

    migrate.upgrade(url)
    eng = create_engine(url)
    try:
        load_areas(eng, small_city_areas())
        username, password = "fault_admin", secrets.token_urlsafe(12)
        with eng.begin() as conn:
            create_user(conn, username, password, "admin", full_name="故障测试管理员")
    finally:
        eng.dispose()
    return username, password


class AppServer:
    """``uvicorn gridserver.api:create_app`` (``workers`` processes) in a subprocess on DATABASE_URL=``url``."""

    def __init__(self, url: str, home: Path, workers: int = 1, **env):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DATABASE_URL": url.replace("postgresql+psycopg://", "postgresql://"),
                    "GRIDSERVER_HOME": str(home), "GRIDSERVER_JWT_SECRET": secrets.token_hex(32),
                    **{k: str(v) for k, v in env.items()}}
        self.log = open(home / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "gridserver.api:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning", "--no-access-log"]
            + (["--workers", str(workers)] if workers > 1 else []),
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_serving(self.proc, self.base, 60, "app server", log=(home / "server.log").read_text, every=0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def any_category(client: httpx.Client) -> str:
    """A valid incident category code, as the running server lists them."""
    cats = client.get("/api/v1/incidents/categories").json()
    items = cats["items"] if isinstance(cats, dict) else cats
    return items[0]["code"]
