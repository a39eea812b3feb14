"""Running one queued job in the test process, as a worker would."""

from __future__ import annotations


def run_job(engine, task_name: str, args: dict | None = None) -> dict:
    """Enqueue ``task_name``, run exactly that job here and return its row (asserting it finished)."""
    from gridserver.jobs import enqueue, get_job
    from gridserver.jobs.worker import import_task_modules, run_one

    import_task_modules()
    jid = enqueue(task_name, args)
    assert run_one(engine, only=jid) == jid
    with engine.connect() as conn:
        job = get_job(conn, jid)
    assert job["state"] == "done", job["error"]
    return job
