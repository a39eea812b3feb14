"""``gridserver jobs worker|show|wait|list``."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console

app = typer.Typer(help="后台任务 background jobs (PostgreSQL-backed queue).", no_args_is_help=True)
console = Console()


@app.command("worker")
def worker(once: bool = typer.Option(False, "--once", help="stop when the queue is empty"),
           poll: float = typer.Option(1.0, help="seconds between polls when idle"),
           concurrency: int = typer.Option(2, help="jobs run at the same time (threads)")):
    """Run queued and periodic jobs until Ctrl-C (jobs survive restarts and resume from checkpoints)."""
    from gridserver.jobs.worker import run_worker

    try:
        n = run_worker(poll_seconds=poll, once=once, concurrency=concurrency,
                       on_job=lambda j: console.print(f"job {j} finished"))
    except KeyboardInterrupt:
        return
    console.print(f"{n} job(s) run")


def _job(job_id: int) -> dict:
    from gridserver.db.engine import get_engine
    from gridserver.jobs import get_job

    with get_engine().connect() as conn:
        j = get_job(conn, job_id)
    if j is None:
        console.print(f"[red]no job {job_id}[/]")
        raise typer.Exit(2)
    return j


@app.command("show")
def show(job_id: int):
    """Print a job as JSON."""
    j = _job(job_id)
    j.pop("checkpoint", None)
    console.print_json(json.dumps(j, ensure_ascii=False, default=str))


def wait_with_bar(job_id: int, *, label: str = "任务", poll: float = 0.5) -> dict:
    """Follow a job with a Rich progress bar until it finishes; returns the final job."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as bar:
        t = bar.add_task(f"{label} job {job_id}", total=None)
        while True:
            j = _job(job_id)
            bar.update(t, completed=j["done"], total=j["total"] or None)
            if j["state"] in ("done", "failed", "cancelled"):
                return j
            time.sleep(poll)


@app.command("wait")
def wait(job_id: int):
    """Follow a job with a progress bar; exit 0 when done, 1 when failed or cancelled."""
    j = wait_with_bar(job_id)
    console.print(f"job {job_id}: {j['state']}" + (f" — {j['error'].splitlines()[0]}" if j.get("error") else ""))
    raise typer.Exit(0 if j["state"] == "done" else 1)


@app.command("list")
def list_jobs(limit: int = typer.Option(20)):
    """The most recent jobs."""
    from sqlalchemy import text

    from gridserver.db.engine import get_engine

    with get_engine().connect() as conn:
        for r in conn.execute(text("SELECT id, task, state, done, total, created_at FROM jobs ORDER BY id DESC LIMIT :n"),
                              {"n": limit}):
            console.print(f"{r.id:>6} {r.task:<28} {r.state:<9} {r.done}/{r.total or '?'}  {r.created_at:%Y-%m-%d %H:%M:%S}")
