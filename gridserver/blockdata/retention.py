"""Retention of the personal-data access log (``bd_access_log``, issue 9: kept ≥ 6 months).

The ``access_log.purge`` periodic job (daily) deletes rows older than
``GRIDSERVER_ACCESS_LOG_RETENTION_DAYS`` (default 365; below 183 days is refused, by the settings
and here), and the purge itself is written to the log (who: ``system``, how many rows, up to when).
The table's trigger still refuses every UPDATE and any DELETE of a row younger than 183 days, for
every database role, so the job cannot shorten the legal minimum whatever it is given.

``imports.purge_uploads`` (hourly) deletes tables uploaded over HTTP once their import job has
ended (done/cancelled after an hour, failed after a week, folders of no job after a day).
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


# --- uploaded import files ----------------------------------------------------------------------------
#: How long an uploaded table (personal data) stays on disk after its import job ended.
UPLOAD_KEEP_HOURS = {"done": 1, "cancelled": 1, "failed": 24 * 7}
ORPHAN_HOURS = 24


def purge_uploads(conn, root=None) -> int:
    """Delete upload folders (``POST /api/v1/imports/{kind}``) whose job ended long enough ago, and
    folders no job refers to after ORPHAN_HOURS; returns how many were deleted."""
    import shutil
    import time

    from gridserver.blockdata.routes_import import upload_dir

    root = root or upload_dir()
    if not root.exists():
        return 0
    jobs = {r.folder: r for r in conn.execute(text(
        """SELECT regexp_replace(args->>'path', '/[^/]*$', '') AS folder, state,
                  extract(epoch FROM now() - coalesce(finished_at, now())) / 3600 AS hours
           FROM jobs WHERE task = 'blockdata.import' AND args->>'path' LIKE :root || '/%'"""),
        {"root": str(root.resolve())})}
    gone = 0
    for folder in root.iterdir():
        job = jobs.get(str(folder.resolve()))
        if job is not None:
            old = job.state in UPLOAD_KEEP_HOURS and job.hours >= UPLOAD_KEEP_HOURS[job.state]
        else:
            old = (time.time() - folder.stat().st_mtime) / 3600 >= ORPHAN_HOURS
        if old:
            shutil.rmtree(folder, ignore_errors=True)
            gone += 1
    return gone


@periodic("imports.purge_uploads", every_seconds=3600)
@task("imports.purge_uploads")
def purge_uploads_task(ctx) -> dict:
    with ctx.engine.connect() as conn:
        return {"deleted_folders": purge_uploads(conn)}
