"""``gridserver incidents``: escalation sweep, webhook delivery, 12345 hotline import, re-link after grid changes.

Exit codes: 0 ok, 2 bad input.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console

from gridserver.errors import GridserverError

app = typer.Typer(help="事件 incidents: escalation, notifications, hotline import, re-linking.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _engine():
    from gridserver.db import migrate
    from gridserver.db.engine import get_engine

    migrate.upgrade()
    return get_engine()


@app.command("escalate")
def escalate(loop: bool = typer.Option(False, "--loop", help="keep running, one sweep every --interval seconds"),
             interval: float = typer.Option(60.0, help="seconds between sweeps with --loop"),
             pause: float = typer.Option(0.0, help="seconds to wait between incidents (throttle)"),
             limit: int = typer.Option(None, help="at most this many escalations per sweep")):
    """Escalate overdue or declined incidents one level up (safe to run in several processes)."""
    from gridserver.incidents.escalation import escalate_due
    from gridserver.incidents.notify import deliver_pending

    engine = _engine()
    while True:
        with engine.connect() as conn:
            done = escalate_due(conn, limit=limit, pause=pause)
        for d in done:
            console.print(f"incident {d['incident_id']}: {d['reason']} → {d['to_level']} ({d['department']})")
        console.print(json.dumps({"escalated": len(done)}))
        with engine.connect() as conn:
            deliver_pending(conn)
        if not loop:
            return
        time.sleep(interval)


@app.command("notify")
def notify():
    """Deliver pending webhook notifications once."""
    from gridserver.incidents.notify import deliver_pending

    with _engine().connect() as conn:
        console.print(json.dumps(deliver_pending(conn)))


@app.command("import-hotline")
def import_hotline(file: Path = typer.Argument(..., help="CSV or xlsx of 12345 work orders (工单号, 诉求内容, 地址 …)")):
    """File 12345 hotline work orders; unplaceable rows go to the manual dispatch queue."""
    from gridserver.incidents.hotline import import_file

    try:
        with _engine().begin() as conn:
            s = import_file(conn, file)
    except GridserverError as exc:
        err.print(f"[red]错误 error:[/red] {exc.detail}", highlight=False)
        raise typer.Exit(2) from None
    for r in s["rejected"]:
        err.print(f"row {r['row']} ({r['order_no']}): {r['reason']}", highlight=False)
    s.pop("ids")
    s["rejected"] = len(s["rejected"])
    console.print(json.dumps(s, ensure_ascii=False))


@app.command("relink")
def relink():
    """Re-locate and re-route open incidents against the current grids (after a grid change)."""
    from gridserver.incidents.relink import relink_open_incidents

    with _engine().begin() as conn:
        console.print(json.dumps(relink_open_incidents(conn)))


@app.command("rollup")
def rollup(full: bool = typer.Option(False, "--full", help="recompute every day, not only changed ones")):
    """Refresh the KPI roll-up (per day and street) used by GET /api/v1/stats/incidents."""
    from gridserver.incidents.stats import refresh_rollup

    with _engine().begin() as conn:
        console.print(json.dumps(refresh_rollup(conn, full=full)))
