"""A test session stops the embedded PostgreSQL it started, and leaves one the user started alone.

Each case runs a separate pytest session (tests/trust/inner_session_probe.py) with no
DATABASE_URL and a private ``GRIDSERVER_HOME``, so the embedded cluster is a throwaway one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gridserver.db import embedded
from gridserver.settings import Settings
from trust.private_pg import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def home():
    d = Path(tempfile.mkdtemp(prefix="gs-embedded-"))
    d.chmod(0o755)  # the cluster runs as the postgres user when we are root
    settings = Settings(home=d, pg_port=free_port(), database_url=None)
    yield settings
    if embedded.is_running(settings):
        embedded.stop(settings)
    shutil.rmtree(d, ignore_errors=True)


def _inner_session(settings: Settings) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "GRIDSERVER_DATABASE_URL")}
    env.update(GRIDSERVER_HOME=str(settings.home), GRIDSERVER_PG_PORT=str(settings.pg_port))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/trust/inner_session_probe.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_session_stops_the_embedded_cluster_it_started(home):
    assert not embedded.is_running(home)  # runs first: nothing has started it yet
    r = _inner_session(home)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "1 passed" in r.stdout
    assert (home.home / "pgdata" / "PG_VERSION").exists()  # it did create and use the cluster
    assert not embedded.is_running(home)


def test_a_session_leaves_a_cluster_the_user_started_running(home):
    embedded.start(home)  # as `gridserver db start` does
    r = _inner_session(home)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert embedded.is_running(home)
