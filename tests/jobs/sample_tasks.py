"""Tasks used by the job-queue tests (imported by in-process and subprocess workers)."""

import time

from gridserver.jobs import periodic, task


@task("test.count")
def count(ctx, n: int, sleep_after: int | None = None, fail: bool = False, sleep_seconds: float = 600):
    """Count to n in steps of one, checkpointing each; records every step it ran in the result."""
    start = (ctx.checkpoint or {}).get("i", 0)
    ran = []
    for i in range(start, n):
        ran.append(i)
        if sleep_after is not None and i == sleep_after and ctx.attempt == 1:
            time.sleep(sleep_seconds)  # the restart test kills the worker here
        if fail:
            raise ValueError(f"step {i} broke")
        ctx.progress(i + 1, n, checkpoint={"i": i + 1}, message=f"step {i}")
    return {"ran": ran, "resumed_from": start, "attempt": ctx.attempt}


@periodic("test.tick", every_seconds=3600)
@task("test.tick")
def tick(ctx):
    return {"ticked": True}
