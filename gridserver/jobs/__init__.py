"""Background jobs: the project's PostgreSQL-backed job queue (tables ``jobs``, ``job_schedules``).

Why not procrastinate: its schema is a versioned SQL script plus its own migration files and an
async worker model; putting it into our single Alembic slot would pin a procrastinate version to our
migration and hide its schema changes from Alembic. What we need is small — enqueue, claim with
``SELECT … FOR UPDATE SKIP LOCKED``, progress and checkpoints, heartbeats, periodic tasks — and fits
in one table with no extra service, on the embedded PostGIS as on any server.

Defining a task (any module listed in :data:`TASK_MODULES`, imported by the worker)::

    from gridserver.jobs import task

    @task("blockdata.import")
    def import_job(ctx, path: str, kind: str, source: str):
        start = (ctx.checkpoint or {}).get("rows", 0)     # resume where the last attempt stopped
        for done in range(start, total, 1000):
            ...                                             # one chunk, committed
            ctx.progress(done + 1000, total, checkpoint={"rows": done + 1000})
        return {"rows": total}                              # stored as the job's result

Enqueueing: ``enqueue("blockdata.import", {"path": ..., ...}, conn=None)`` → job id; follow it with
``GET /api/v1/jobs/{id}`` or ``gridserver jobs show ID`` (``gridserver jobs wait ID`` draws a Rich bar).

Periodic tasks (e.g. an escalation sweep every minute)::

    from gridserver.jobs import periodic, task

    @periodic("incidents.escalate", every_seconds=60)   # schedule name, interval
    @task("incidents.escalate")
    def escalate(ctx):
        ...

and add the module to :data:`TASK_MODULES`. The worker writes the schedule to ``job_schedules`` on
start; each due schedule is advanced and enqueued in one statement, so with several workers a tick
runs once. A periodic job carries ``dedup_key = schedule name``: a slow run is not piled up behind.

Workers: ``gridserver jobs worker --concurrency 2`` runs two jobs side by side (threads claiming with
SKIP LOCKED; start more workers on more machines the same way). Semantics: a job runs at least once. ``ctx.progress`` commits progress + checkpoint and a heartbeat;
a running job without heartbeat for ``STALE_SECONDS`` (worker killed, server restarted) is put back in
the queue and the next attempt starts from its checkpoint. A task that raises is retried (up to
``max_attempts``) and then marked ``failed`` with the error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text

#: Modules holding tasks; the worker imports them (a missing module is skipped), plus any listed in
#: the environment variable ``GRIDSERVER_JOB_MODULES`` (comma-separated).
TASK_MODULES = [
    "gridserver.blockdata.tasks",
    "gridserver.incidents.escalation",
    "gridserver.incidents.tasks",
    "gridserver.analytics.tasks",
    "gridserver.areas.tasks",
    "gridserver.maps.tasks",
    "gridserver.auth.tasks",
    "gridserver.blockdata.retention",
]
STALE_SECONDS = 60


@dataclass
class Task:
    name: str
    fn: Callable
    max_attempts: int = 3


@dataclass
class Schedule:
    name: str
    task: str
    every_seconds: int
    args: dict = field(default_factory=dict)


TASKS: dict[str, Task] = {}
SCHEDULES: dict[str, Schedule] = {}


def task(name: str, *, max_attempts: int = 3):
    """Decorator: register ``fn(ctx, **args)`` as task ``name``."""

    def deco(fn):
        TASKS[name] = Task(name, fn, max_attempts)
        fn.task_name = name
        return fn

    return deco


def periodic(name: str, *, every_seconds: int, args: dict | None = None, task_name: str | None = None):
    """Decorator (above ``@task``): run the task every ``every_seconds`` under schedule ``name``."""

    def deco(fn):
        SCHEDULES[name] = Schedule(name, task_name or getattr(fn, "task_name", name), every_seconds, args or {})
        return fn

    return deco


def enqueue(task_name: str, args: dict | None = None, *, conn=None, dedup_key: str | None = None,
            created_by: str | None = None, max_attempts: int | None = None, total: int | None = None) -> int:
    """Queue a job; returns its id. With ``conn`` the job commits with the caller's transaction.

    With ``dedup_key``, an unfinished job with the same key is returned instead of a new one.
    """
    from gridserver.db.engine import get_engine

    params = {"t": task_name, "a": json.dumps(args or {}, ensure_ascii=False), "d": dedup_key, "c": created_by,
              "m": max_attempts or (TASKS[task_name].max_attempts if task_name in TASKS else 3), "n": total}
    sql = text("INSERT INTO jobs (task, args, dedup_key, created_by, max_attempts, total) "
               "VALUES (:t, CAST(:a AS jsonb), :d, :c, :m, :n) ON CONFLICT DO NOTHING RETURNING id")

    def run(c):
        jid = c.execute(sql, params).scalar()
        if jid is None:  # an unfinished job with this dedup key exists
            jid = c.execute(text("SELECT id FROM jobs WHERE dedup_key = :d AND state IN ('queued', 'running')"),
                            {"d": dedup_key}).scalar()
        c.execute(text("SELECT pg_notify('gridserver_jobs', :id)"), {"id": str(jid)})
        return jid

    if conn is not None:
        return run(conn)
    with get_engine().begin() as c:
        return run(c)


def get_job(conn, job_id: int) -> dict | None:
    """The job as a JSON-safe dict (state, done/total, percent, message, error, result), or None."""
    row = conn.execute(text("SELECT id, task, args, state, done, total, message, error, result, checkpoint, attempts, "
                            "max_attempts, created_by, created_at, started_at, finished_at, heartbeat_at "
                            "FROM jobs WHERE id = :i"), {"i": job_id}).mappings().first()
    if row is None:
        return None
    d = dict(row)
    for k in ("created_at", "started_at", "finished_at", "heartbeat_at"):
        if d[k] is not None:
            d[k] = d[k].isoformat()
    d["percent"] = round(100.0 * d["done"] / d["total"], 1) if d["total"] else None
    return d


def cancel(conn, job_id: int) -> bool:
    """Cancel a queued job (a running one stops at its next progress call)."""
    return bool(conn.execute(text("UPDATE jobs SET state = 'cancelled', finished_at = now() "
                                  "WHERE id = :i AND state IN ('queued', 'running') RETURNING id"), {"i": job_id}).first())
