"""The job worker: claims queued jobs with SKIP LOCKED, runs them, records progress, fires schedules.

``run_worker()`` loops until stopped (``gridserver jobs worker``); ``run_one()`` runs at most one
job (tests, ``gridserver jobs worker --once``). Each job runs in the worker's process; its progress
and checkpoints are committed on their own connection so they are visible while the job runs and
survive a crash.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import threading
import time
import traceback

from sqlalchemy import text

from gridserver import jobs as J


class Cancelled(Exception):
    """Raised inside a task by ``ctx.progress`` when the job was cancelled."""


_CLAIM = text(
    """
    UPDATE jobs SET state = 'running', locked_by = :w, heartbeat_at = now(), attempts = attempts + 1,
                    started_at = coalesce(started_at, now()), error = NULL
    WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND run_after <= now()
                AND (CAST(:only AS bigint) IS NULL OR id = CAST(:only AS bigint))
                ORDER BY run_after, id FOR UPDATE SKIP LOCKED LIMIT 1)
    RETURNING id, task, args, checkpoint, attempts, max_attempts
    """
)
# Running jobs whose worker stopped sending heartbeats go back to the queue (resumed from checkpoint).
_REQUEUE_STALE = text(
    """
    UPDATE jobs SET state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
                    error = CASE WHEN attempts >= max_attempts THEN 'worker lost ' || attempts || ' times' ELSE error END,
                    finished_at = CASE WHEN attempts >= max_attempts THEN now() END,
                    message = 'resumed after the worker stopped', locked_by = NULL
    WHERE state = 'running' AND heartbeat_at < now() - make_interval(secs => :stale)
    RETURNING id
    """
)
_DUE_SCHEDULES = text(
    """
    UPDATE job_schedules SET next_run_at = now() + make_interval(secs => every_seconds)
    WHERE next_run_at <= now() RETURNING name, task, args
    """
)


def import_task_modules() -> list[str]:
    """Import every module in TASK_MODULES that exists; returns the names loaded."""
    loaded = []
    extra = [m.strip() for m in os.environ.get("GRIDSERVER_JOB_MODULES", "").split(",") if m.strip()]
    for name in J.TASK_MODULES + extra:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                continue
            raise
    return loaded


def sync_schedules(engine) -> None:
    """Write the registered periodic tasks to job_schedules (keeps next_run_at of existing ones)."""
    with engine.begin() as conn:
        for s in J.SCHEDULES.values():
            conn.execute(text("INSERT INTO job_schedules (name, task, args, every_seconds) VALUES (:n, :t, CAST(:a AS jsonb), :e) "
                              "ON CONFLICT (name) DO UPDATE SET task = EXCLUDED.task, args = EXCLUDED.args, "
                              "every_seconds = EXCLUDED.every_seconds"),
                         {"n": s.name, "t": s.task, "a": json.dumps(s.args), "e": s.every_seconds})


def fire_schedules(engine) -> list[int]:
    """Enqueue every due schedule once (atomic across workers); returns the job ids."""
    ids = []
    with engine.begin() as conn:
        for name, task_name, args in conn.execute(_DUE_SCHEDULES).all():
            jid = J.enqueue(task_name, args, conn=conn, dedup_key=f"schedule:{name}", created_by="schedule")
            conn.execute(text("UPDATE job_schedules SET last_job_id = :j WHERE name = :n"), {"j": jid, "n": name})
            ids.append(jid)
    return ids


class JobContext:
    """Handed to a task: its id, args, the last checkpoint, and ``progress()``."""

    def __init__(self, engine, job_id: int, checkpoint, attempt: int):
        self.engine = engine
        self.job_id = job_id
        self.checkpoint = checkpoint
        self.attempt = attempt

    def progress(self, done: int, total: int | None = None, *, message: str | None = None, checkpoint=None) -> None:
        """Commit progress (and a checkpoint to resume from); raises Cancelled if the job was cancelled."""
        with self.engine.begin() as conn:
            state = conn.execute(text(
                "UPDATE jobs SET done = :d, total = coalesce(:t, total), message = coalesce(:m, message), "
                "checkpoint = CASE WHEN CAST(:c AS jsonb) IS NULL THEN checkpoint ELSE CAST(:c AS jsonb) END, "
                "heartbeat_at = now() WHERE id = :i RETURNING state"),
                {"d": done, "t": total, "m": message, "i": self.job_id,
                 "c": None if checkpoint is None else json.dumps(checkpoint, ensure_ascii=False)}).scalar()
        if checkpoint is not None:
            self.checkpoint = checkpoint
        if state == "cancelled":
            raise Cancelled()


def _heartbeat(engine, job_id: int, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        try:
            with engine.begin() as conn:
                conn.execute(text("UPDATE jobs SET heartbeat_at = now() WHERE id = :i AND state = 'running'"), {"i": job_id})
        except Exception:  # noqa: BLE001 — a missed heartbeat is retried next tick
            pass


def run_one(engine=None, *, worker: str | None = None, only: int | None = None, stale_seconds: int | None = None) -> int | None:
    """Requeue stale jobs, fire due schedules, then claim and run one job; returns its id or None."""
    from gridserver.db.engine import get_engine

    engine = engine or get_engine()
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    stale = J.STALE_SECONDS if stale_seconds is None else stale_seconds
    with engine.begin() as conn:
        conn.execute(_REQUEUE_STALE, {"stale": stale})
    fire_schedules(engine)
    with engine.begin() as conn:
        row = conn.execute(_CLAIM, {"w": worker, "only": only}).first()
    if row is None:
        return None
    job_id, task_name, args, checkpoint, attempts, max_attempts = row
    t = J.TASKS.get(task_name)
    stop = threading.Event()
    hb = threading.Thread(target=_heartbeat, args=(engine, job_id, stop, max(stale / 4, 0.5)), daemon=True)
    hb.start()
    try:
        if t is None:
            raise LookupError(f"no task named {task_name!r} is registered in this worker")
        result = t.fn(JobContext(engine, job_id, checkpoint, attempts), **(args or {}))
        with engine.begin() as conn:
            conn.execute(text("UPDATE jobs SET state = 'done', result = CAST(:r AS jsonb), finished_at = now(), "
                              "done = CASE WHEN total IS NOT NULL THEN total ELSE done END, locked_by = NULL "
                              "WHERE id = :i AND state = 'running'"),
                         {"i": job_id, "r": json.dumps(result, ensure_ascii=False, default=str)})
    except Cancelled:
        pass
    except Exception as exc:  # noqa: BLE001 — every failure is recorded on the job
        err = f"{exc.__class__.__name__}: {getattr(exc, 'detail', None) or exc}"
        final = attempts >= max_attempts or isinstance(exc, LookupError) or getattr(exc, "status", 500) < 500
        with engine.begin() as conn:
            conn.execute(text("UPDATE jobs SET state = :s, error = :e, locked_by = NULL, "
                              "finished_at = CASE WHEN :s = 'failed' THEN now() END, "
                              "run_after = now() + make_interval(secs => :back) WHERE id = :i AND state = 'running'"),
                         {"s": "failed" if final else "queued", "e": err + "\n" + traceback.format_exc(limit=5),
                          "i": job_id, "back": 2 ** attempts})
    finally:
        stop.set()
        hb.join(timeout=5)
    return job_id


def run_worker(*, poll_seconds: float = 1.0, once: bool = False, stop: threading.Event | None = None,
               on_job=None, concurrency: int = 2) -> int:
    """Run jobs until ``stop`` is set (or, with ``once``, until the queue is empty); returns jobs run.

    ``concurrency`` threads claim jobs independently (SKIP LOCKED), so one long import does not hold
    up the periodic tasks behind it.
    """
    from gridserver.db.engine import get_engine

    engine = get_engine()
    import_task_modules()
    sync_schedules(engine)
    stop = stop or threading.Event()
    counts = [0] * max(1, concurrency)
    base = f"{socket.gethostname()}:{os.getpid()}"

    def loop(k: int) -> None:
        while not stop.is_set():
            jid = run_one(engine, worker=f"{base}:{k}")
            if jid is not None:
                counts[k] += 1
                if on_job:
                    on_job(jid)
                continue
            if once:
                break
            stop.wait(poll_seconds)

    threads = [threading.Thread(target=loop, args=(k,), daemon=True, name=f"job-worker-{k}") for k in range(len(counts))]
    for t in threads:
        t.start()
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.5)
    except KeyboardInterrupt:
        stop.set()
        raise
    return sum(counts)
