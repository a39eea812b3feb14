"""Login (issue 8): the per-address failed-login limit is kept in PostgreSQL, so two server processes
on one database share it; X-Forwarded-For counts only from a trusted proxy; expired rows are cleaned
up by a periodic job. Real HTTP against the in-process server and a `gridserver serve` subprocess."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from gridserver.auth import ratelimit
from gridserver.auth.users import create_user
from gridserver.settings import get_settings
from serving import wait_serving

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 6


@pytest.fixture
def limit(engine, monkeypatch):
    """The per-address limit lowered to LIMIT in this process, with a clean slate before and after."""
    ratelimit.LOGIN_FAILURES_PER_IP.reset()
    monkeypatch.setattr(ratelimit.LOGIN_FAILURES_PER_IP, "limit", LIMIT)
    yield ratelimit.LOGIN_FAILURES_PER_IP
    ratelimit.LOGIN_FAILURES_PER_IP.reset()


@pytest.fixture
def account(engine):
    name, pw = f"lim_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    with engine.begin() as conn:
        create_user(conn, name, pw, "analyst")
    return name, pw


def _login(client, username, password, xff: str | None = None):
    headers = {"X-Forwarded-For": xff} if xff else {}
    return client.post("/api/v1/auth/token", data={"username": username, "password": password}, headers=headers)


def _spray(client, n: int, xff=None) -> list[int]:
    """n failed logins, each for another username (no account reaches its own lockout)."""
    return [_login(client, f"spray_{uuid.uuid4().hex[:8]}", "wrong-password",
                   xff(i) if callable(xff) else xff).status_code for i in range(n)]


@pytest.fixture
def second_server(db_conninfo):
    """`gridserver serve` in its own process on the same database, limit LIMIT."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSERVER_")}
    env.update(DATABASE_URL=db_conninfo, GRIDSERVER_JWT_SECRET="y" * 8 + os.urandom(16).hex(),
               GRIDSERVER_LOGIN_IP_LIMIT=str(LIMIT), GRIDSERVER_BCRYPT_ROUNDS="4")
    proc = subprocess.Popen([sys.executable, "-m", "gridserver.cli", "serve", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_serving(proc, base, 90)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            yield client
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_server_processes_share_one_limit(http, second_server, limit, account, engine):
    half = LIMIT // 2
    assert _spray(http, half) == [401] * half
    assert _spray(second_server, LIMIT - half) == [401] * (LIMIT - half)
    with engine.connect() as conn:  # one row for the address, every failure of both processes in it
        assert conn.execute(text("SELECT cardinality(failed_at) FROM login_failures_ip WHERE address = '127.0.0.1'")
                            ).scalar() == LIMIT
    for client in (http, second_server):  # the right password, but the address is over the limit everywhere
        r = _login(client, *account)
        assert r.status_code == 429, r.text
        assert r.json()["code"] == "too_many_attempts"
        assert 0 < int(r.headers["retry-after"]) <= 300
    limit.reset()
    assert _login(second_server, *account).status_code == 200
    assert _login(http, *account).status_code == 200


def test_the_window_slides(http, limit, account, engine):
    assert _spray(http, LIMIT) == [401] * LIMIT
    assert _login(http, *account).status_code == 429
    with engine.begin() as conn:  # the two oldest failures leave the 5-minute window
        conn.execute(text("UPDATE login_failures_ip SET failed_at = ARRAY(SELECT CASE WHEN o <= 2 "
                          "THEN t - interval '301 seconds' ELSE t END FROM unnest(failed_at) WITH ORDINALITY AS u(t, o) "
                          "ORDER BY o) WHERE address = '127.0.0.1'"))
    assert _login(http, *account).status_code == 200  # room for two again
    assert _spray(http, 2) == [401, 401]
    assert _login(http, *account).status_code == 429


def test_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(http, limit, account):
    assert get_settings().trusted_proxies == ""  # the default: no proxy is trusted
    codes = _spray(http, LIMIT, xff=lambda i: f"198.51.100.{i + 1}")  # a new "address" every time
    assert codes == [401] * LIMIT
    r = _login(http, *account, xff="198.51.100.200")
    assert r.status_code == 429 and r.json()["code"] == "too_many_attempts"
    assert "127.0.0.1" in r.json()["detail"]  # counted against the socket peer


def test_forwarded_for_from_a_trusted_proxy_is_honoured(http, limit, account, monkeypatch):
    monkeypatch.setattr(get_settings(), "trusted_proxies", "127.0.0.0/8, 10.0.0.0/8")
    assert _spray(http, LIMIT, xff="203.0.113.7") == [401] * LIMIT
    r = _login(http, *account, xff="203.0.113.7")
    assert r.status_code == 429 and "203.0.113.7" in r.json()["detail"]
    # A client-written entry left of what the proxies appended does not help: the nearest untrusted hop counts.
    assert _login(http, *account, xff="192.0.2.1, 203.0.113.7, 10.1.2.3").status_code == 429
    # Another client behind the same proxy is not throttled, and neither is the proxy itself.
    assert _login(http, *account, xff="203.0.113.8").status_code == 200
    assert _login(http, *account).status_code == 200


def test_cleanup_job_drops_expired_rows_only(engine, limit):
    from gridserver.jobs import enqueue
    from gridserver.jobs.worker import import_task_modules, run_one

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO login_failures_ip (address, failed_at, last_failed_at) VALUES "
                          "('192.0.2.50', ARRAY[now() - interval '10 minutes'], now() - interval '10 minutes'), "
                          "('192.0.2.51', ARRAY[now() - interval '1 minute'], now() - interval '1 minute')"))
        conn.execute(text("INSERT INTO login_failures (username, failures, last_failed_at, locked_until) VALUES "
                          "('gone_user', 2, now() - interval '20 minutes', NULL), "
                          "('locked_user', 5, now() - interval '1 minute', now() + interval '14 minutes')"))
    import_task_modules()
    jid = enqueue("auth.cleanup")
    assert run_one(engine, only=jid) == jid
    with engine.connect() as conn:
        state, result = conn.execute(text("SELECT state, result FROM jobs WHERE id = :i"), {"i": jid}).one()
        left_ip = set(conn.execute(text("SELECT address FROM login_failures_ip WHERE address LIKE '192.0.2.%'")).scalars())
        left_names = set(conn.execute(text("SELECT username FROM login_failures WHERE username IN "
                                           "('gone_user', 'locked_user')")).scalars())
    assert state == "done" and result["addresses"] >= 1 and result["usernames"] >= 1
    assert left_ip == {"192.0.2.51"} and left_names == {"locked_user"}
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM login_failures WHERE username = 'locked_user'"))
