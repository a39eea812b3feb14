"""The PostgreSQL job queue: enqueue, progress, HTTP read-out, failures, restart/resume, schedules."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))
import sample_tasks  # noqa: E402,F401 — registers test tasks

from gridserver import jobs as J  # noqa: E402
from gridserver.jobs.worker import fire_schedules, run_one, sync_schedules  # noqa: E402


@pytest.fixture()
def clean_queue(engine):
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET state = 'cancelled' WHERE state IN ('queued', 'running')"))
        conn.execute(text("DELETE FROM job_schedules"))
    return engine


def test_job_runs_with_progress_and_is_readable_over_http(clean_queue, http, make_user, auth, admin_token):
    owner = make_user("analyst")
    other = make_user("analyst")
    jid = J.enqueue("test.count", {"n": 4}, created_by=owner["username"])
    r = http.get(f"/api/v1/jobs/{jid}", headers=auth(owner))
    assert r.status_code == 200 and r.json()["state"] == "queued"
    assert run_one(clean_queue, only=jid) == jid
    body = http.get(f"/api/v1/jobs/{jid}", headers=auth(owner)).json()
    assert body["state"] == "done"
    assert (body["done"], body["total"], body["percent"]) == (4, 4, 100.0)
    assert body["result"]["ran"] == [0, 1, 2, 3]
    assert "checkpoint" not in body
    # access: another account is refused, admin allowed, anonymous 401, unknown id 404
    assert http.get(f"/api/v1/jobs/{jid}", headers=auth(other)).status_code == 403
    assert http.get(f"/api/v1/jobs/{jid}", headers=auth(admin_token)).status_code == 200
    assert http.get(f"/api/v1/jobs/{jid}").status_code == 401
    r = http.get("/api/v1/jobs/99999999", headers=auth(admin_token))
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_failing_job_is_retried_then_failed_with_error(clean_queue):
    jid = J.enqueue("test.count", {"n": 2, "fail": True}, max_attempts=2)
    run_one(clean_queue, only=jid)
    with clean_queue.connect() as conn:
        j = J.get_job(conn, jid)
    assert j["state"] == "queued" and "step 0 broke" in j["error"]
    with clean_queue.begin() as conn:  # skip the back-off
        conn.execute(text("UPDATE jobs SET run_after = now() WHERE id = :i"), {"i": jid})
    run_one(clean_queue, only=jid)
    with clean_queue.connect() as conn:
        j = J.get_job(conn, jid)
    assert j["state"] == "failed" and j["attempts"] == 2 and "ValueError: step 0 broke" in j["error"]


def test_unknown_task_fails_at_once(clean_queue):
    jid = J.enqueue("test.no_such_task", {})
    run_one(clean_queue, only=jid)
    with clean_queue.connect() as conn:
        j = J.get_job(conn, jid)
    assert j["state"] == "failed" and "no task named" in j["error"]


def test_killed_worker_job_resumes_from_checkpoint(clean_queue, db_url):
    """A worker process is killed mid-job (as in a server restart); the next worker resumes it."""
    jid = J.enqueue("test.count", {"n": 6, "sleep_after": 3})
    env = {**os.environ, "DATABASE_URL": db_url.replace("postgresql+psycopg://", "postgresql://"),
           "GRIDSERVER_JOB_MODULES": "sample_tasks",
           "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "gridserver.cli", "jobs", "worker", "--poll", "0.2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            with clean_queue.connect() as conn:
                j = J.get_job(conn, jid)
            if j["state"] == "running" and j["done"] == 3:
                break
            assert time.monotonic() < deadline, j
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with clean_queue.connect() as conn:
        assert J.get_job(conn, jid)["state"] == "running"  # nobody told the database
    # a fresh worker treats a job without heartbeat as lost, requeues it, and resumes at the checkpoint
    with clean_queue.begin() as conn:
        conn.execute(text("UPDATE jobs SET heartbeat_at = now() - interval '1 hour' WHERE id = :i"), {"i": jid})
    assert run_one(clean_queue, only=jid) == jid
    with clean_queue.connect() as conn:
        j = J.get_job(conn, jid)
    assert j["state"] == "done" and j["attempts"] == 2
    assert j["result"]["resumed_from"] == 3 and j["result"]["ran"] == [3, 4, 5]


def test_periodic_schedule_fires_once_per_interval(clean_queue):
    """Only the test schedule is looked at: other packages may register theirs in the same process."""
    def ticks(ids):
        with clean_queue.connect() as conn:
            return [i for i in ids if J.get_job(conn, i)["task"] == "test.tick"]

    sync_schedules(clean_queue)
    first = ticks(fire_schedules(clean_queue))
    again = ticks(fire_schedules(clean_queue))  # not due yet
    assert len(first) == 1 and again == []
    with clean_queue.connect() as conn:
        assert J.get_job(conn, first[0])["state"] == "queued"
    assert run_one(clean_queue, only=first[0]) == first[0]
    with clean_queue.begin() as conn:
        conn.execute(text("UPDATE job_schedules SET next_run_at = now() - interval '1 second' WHERE name = 'test.tick'"))
    second = ticks(fire_schedules(clean_queue))
    assert len(second) == 1 and second[0] != first[0]


def test_dedup_key_returns_the_unfinished_job(clean_queue):
    a = J.enqueue("test.count", {"n": 1}, dedup_key="only-one")
    b = J.enqueue("test.count", {"n": 1}, dedup_key="only-one")
    assert a == b
    run_one(clean_queue, only=a)
    c = J.enqueue("test.count", {"n": 1}, dedup_key="only-one")
    assert c != a


def test_worker_runs_jobs_side_by_side(clean_queue):
    """With two threads, a short job finishes while a long one is still running."""
    import threading

    from gridserver.jobs.worker import run_worker

    slow = J.enqueue("test.count", {"n": 3, "sleep_after": 1, "sleep_seconds": 4})   # sleeps on its first attempt
    fast = J.enqueue("test.count", {"n": 2})
    stop = threading.Event()
    done = []
    th = threading.Thread(target=run_worker, kwargs={"poll_seconds": 0.1, "stop": stop, "concurrency": 2,
                                                     "on_job": done.append}, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 60
        while fast not in done:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with clean_queue.connect() as conn:
            assert J.get_job(conn, slow)["state"] == "running"
            assert J.get_job(conn, fast)["state"] == "done"
    finally:
        stop.set()
        th.join(timeout=30)
    with clean_queue.connect() as conn:
        assert J.get_job(conn, slow)["state"] == "done"
