"""Periodic housekeeping of the login limits (run by ``gridserver jobs worker``)."""

from __future__ import annotations

from sqlalchemy import text

from gridserver.jobs import periodic, task


@periodic("auth.cleanup", every_seconds=600)
@task("auth.cleanup")
def cleanup_task(ctx) -> dict:
    """Drop expired failed-login rows: addresses whose failures left the window, and usernames whose
    count has lapsed (last failure older than the lockout period and no lock running)."""
    from gridserver.auth.ratelimit import LOGIN_FAILURES_PER_IP
    from gridserver.auth.users import LOCK_MINUTES

    with ctx.engine.begin() as conn:
        addresses = LOGIN_FAILURES_PER_IP.purge_expired(conn)
        names = conn.execute(text(
            "DELETE FROM login_failures WHERE last_failed_at < now() - make_interval(mins => :m) "
            "AND (locked_until IS NULL OR locked_until <= now())"), {"m": LOCK_MINUTES}).rowcount
    return {"addresses": addresses, "usernames": names}
