"""Failed logins per client address, kept in PostgreSQL; which address a request comes from.

The per-account lockout (``users.record_failure``, table ``login_failures``) cannot see one address
spraying many usernames; this limit can. Like the lockout it lives in the database, so every server
process and worker shares it and it survives restarts: table ``login_failures_ip`` keeps, per
address, the times of its latest failures inside the window (at most ``limit`` of them), so "50
failures in 5 minutes" is an exact sliding window kept by ONE upsert per failed login (concurrent
failures are all counted: the upsert locks the row). Rows whose newest failure left the window are
dropped by the ``auth.cleanup`` periodic job (``gridserver/auth/tasks.py``).

Client address: the socket peer. ``X-Forwarded-For`` is honoured only when the peer is one of
``GRIDSERVER_TRUSTED_PROXIES`` (comma-separated addresses or networks; default none), walking the
header from the right and skipping trusted hops, so a header a client writes itself cannot lift its
own limit. Our launchers run uvicorn with ``proxy_headers=False`` so the app sees the real peer.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from sqlalchemy import text

from gridserver.settings import get_settings


class LoginAddressLimit:
    """At most ``limit`` failed logins per client address within ``window`` seconds (in the database).

    ``limit`` None → ``GRIDSERVER_LOGIN_IP_LIMIT`` (50).
    """

    def __init__(self, limit: int | None = None, window: int = 300):
        self.limit, self.window = limit, window

    def _limit(self) -> int:
        return self.limit if self.limit is not None else get_settings().login_ip_limit

    def retry_after(self, conn, address: str) -> int:
        """Seconds until ``address`` may try again (0 = now)."""
        left = conn.execute(text(
            """SELECT ceil(extract(epoch FROM (array_agg(t ORDER BY t DESC))[:n] + make_interval(secs => :w) - now()))
               FROM login_failures_ip, unnest(failed_at) AS t
               WHERE address = :a AND t > now() - make_interval(secs => :w)
               HAVING count(*) >= :n"""), {"a": address, "w": self.window, "n": self._limit()}).scalar()
        return max(1, int(left)) if left is not None else 0

    def hit(self, conn, address: str) -> None:
        """Record one failed login from ``address`` (one statement; the caller commits)."""
        conn.execute(text(
            """INSERT INTO login_failures_ip AS f (address, failed_at, last_failed_at)
               VALUES (:a, ARRAY[now()], now())
               ON CONFLICT (address) DO UPDATE SET
                   failed_at = ARRAY(SELECT t FROM (SELECT t FROM unnest(f.failed_at || now()) AS t
                                                    WHERE t > now() - make_interval(secs => :w)
                                                    ORDER BY t DESC LIMIT :n) AS newest ORDER BY t),
                   last_failed_at = now()"""), {"a": address, "w": self.window, "n": self._limit()})

    def purge_expired(self, conn) -> int:
        """Drop addresses whose newest failure is older than the window; returns how many."""
        return conn.execute(text("DELETE FROM login_failures_ip WHERE last_failed_at < now() - make_interval(secs => :w)"),
                            {"w": self.window}).rowcount

    def reset(self, conn=None, address: str | None = None) -> None:
        """Forget the failures of one address (or of all); without ``conn`` in a transaction of its own."""
        if conn is None:
            from gridserver.db.engine import get_engine

            with get_engine().begin() as c:
                return self.reset(c, address)
        conn.execute(text("DELETE FROM login_failures_ip WHERE CAST(:a AS text) IS NULL OR address = :a"),
                     {"a": address})


#: Failed logins per client address: 50 in 5 minutes (an office behind one NAT address has many
#: users), then 429 until the oldest falls out — 600 guesses an hour at most, against 5 per account.
LOGIN_FAILURES_PER_IP = LoginAddressLimit(window=300)


@lru_cache(maxsize=8)
def _networks(spec: str) -> tuple:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip())


def trusted_proxies() -> tuple:
    """``GRIDSERVER_TRUSTED_PROXIES`` as networks (validated when the settings are read)."""
    return _networks(get_settings().trusted_proxies)


def _trusted(address: str, nets: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in n for n in nets)


def client_address(request) -> str:
    """The address a request comes from: the socket peer, or — only when that peer is a trusted
    proxy — the nearest untrusted hop of ``X-Forwarded-For``."""
    peer = request.client.host if request.client else "unknown"
    nets = trusted_proxies()
    if not nets or not _trusted(peer, nets):
        return peer
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",") if h.strip()]
    for hop in reversed(hops):
        if _trusted(hop, nets):
            continue
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:  # not an address a proxy would have written: keep the proxy's own bucket
            return peer
    return str(ipaddress.ip_address(hops[0])) if hops else peer
