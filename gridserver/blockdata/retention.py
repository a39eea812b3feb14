"""Retention of the personal-data access log (``bd_access_log``, issue 9: kept ≥ 6 months).

The ``access_log.purge`` periodic job (daily) deletes rows older than
``GRIDSERVER_ACCESS_LOG_RETENTION_DAYS`` (default 365; below 183 days is refused, by the settings
and here), and the purge itself is written to the log (who: ``system``, how many rows, up to when).
The table's trigger still refuses every UPDATE and any DELETE of a row younger than 183 days, for
every database role, so the job cannot shorten the legal minimum whatever it is given.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from sqlalchemy import text

from gridserver.errors import InvalidInput
from gridserver.jobs import periodic, task

MIN_DAYS = 183
log = logging.getLogger("gridserver.access_log")
_SYSTEM = SimpleNamespace(username="system", role="system")


def purge_access_log(conn, days: int) -> dict:
    """Delete access-log rows older than ``days`` days and log the purge; returns what was done."""
    if days < MIN_DAYS:
        raise InvalidInput(f"access-log retention of {days} days refused: the log is kept at least {MIN_DAYS} days "
                           "(6 months)", code="retention_too_short")
    cutoff, n = conn.execute(text(
        """WITH gone AS (DELETE FROM bd_access_log WHERE at < now() - make_interval(days => :d) RETURNING 1)
           SELECT now() - make_interval(days => :d), count(*) FROM gone"""), {"d": days}).one()
    from gridserver.blockdata.service import log_access

    log_access(conn, _SYSTEM, action="purge", target="bd_access_log", area_code=None,
               purpose=f"retention {days} days: rows before {cutoff.isoformat()} deleted", rows=n)
    log.info("access log purge: %d rows older than %d days deleted", n, days)
    return {"deleted": n, "retention_days": days, "cutoff": cutoff.isoformat()}


@periodic("access_log.purge", every_seconds=86_400)
@task("access_log.purge")
def purge_task(ctx) -> dict:
    from gridserver.settings import get_settings

    with ctx.engine.begin() as conn:
        return purge_access_log(conn, get_settings().access_log_retention_days)
