"""Access (issue 8): what ``gridserver serve`` refuses and what it writes to its logs.

Runs the real command in a subprocess against the test database: a weak JWT secret stops it before
it binds a port; the access log keeps paths but drops query strings; ``db status`` masks the
database password; the compose file carries no secret.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serving import wait_serving

ROOT = Path(__file__).resolve().parents[2]
GRIDSERVER = [sys.executable, "-m", "gridserver.cli"]


def _env(db_conninfo: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSERVER_")}
    env.update(DATABASE_URL=db_conninfo, **extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("secret,why", [("change-me-in-production", "published"),
                                        ("short-but-not-known", "at least 32")])
def test_serve_refuses_a_known_or_short_jwt_secret(db_url, monkeypatch, secret, why):
    import uvicorn
    from typer.testing import CliRunner

    from gridserver.cli import app
    from gridserver.db import migrate
    from gridserver.settings import get_settings

    def started(*a, **k):
        raise AssertionError("serve went on with a weak secret")

    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.setattr(migrate, "upgrade", started)
    monkeypatch.setenv("GRIDSERVER_JWT_SECRET", secret)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["serve", "--port", "1"])
    finally:
        monkeypatch.delenv("GRIDSERVER_JWT_SECRET")
        get_settings.cache_clear()
    out = " ".join(r.output.split())
    assert r.exit_code == 2, out
    assert "refusing to start" in out and why in out


def test_serve_starts_with_a_strong_secret_and_logs_no_query_strings(db_conninfo, small_city):
    port = _free_port()
    proc = subprocess.Popen(GRIDSERVER + ["serve", "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=_env(db_conninfo, GRIDSERVER_JWT_SECRET="x" * 8 + os.urandom(16).hex(),
                                     COLUMNS="300"))
    try:
        base = f"http://127.0.0.1:{port}"
        wait_serving(proc, base, 60)
        httpx.get(base + "/api/v1/address/geocode", params={"q": "越秀区中山四路13号张三家"}, timeout=30)
        httpx.get(base + "/api/v1/locate?lon=113.26&lat=23.13&crs=wgs84", timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    lines = [ln for ln in out.splitlines() if '"GET ' in ln]
    assert any('"GET /api/v1/address/geocode HTTP/1.1"' in ln for ln in lines), out
    assert any('"GET /api/v1/locate HTTP/1.1" 200' in ln for ln in lines), out
    assert "张三" not in out and "%E5" not in out and "q=" not in out and "lon=" not in out


def test_db_status_masks_the_password(db_conninfo, monkeypatch):
    from typer.testing import CliRunner

    from gridserver.cli import app
    from gridserver.settings import get_settings

    with_password = re.sub(r"^postgresql://([^@/]+)@", r"postgresql://\1:S3cretPassw0rd@", db_conninfo)
    assert "S3cretPassw0rd" in with_password
    monkeypatch.setenv("DATABASE_URL", with_password)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, ["db", "status"])
    finally:
        monkeypatch.setenv("DATABASE_URL", os.environ["DATABASE_URL"].replace(":S3cretPassw0rd@", "@"))
        get_settings.cache_clear()
    assert r.exit_code == 0, r.output
    assert "S3cretPassw0rd" not in r.output
    assert "***@" in r.output and "schema revision" in r.output


def test_compose_file_ships_no_secret():
    compose = (ROOT / "docker" / "compose.yaml").read_text()
    assert "change-me-in-production" not in compose
    assert re.search(r"GRIDSERVER_JWT_SECRET: \$\{GRIDSERVER_JWT_SECRET:\?", compose)
    assert re.search(r"POSTGRES_PASSWORD: \$\{POSTGRES_PASSWORD:\?", compose)
