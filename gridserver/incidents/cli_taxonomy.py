"""``gridserver taxonomy``: load, list and show the incident taxonomy; local calendar overrides.

Exit codes: 0 ok, 2 bad input (file missing, invalid entry — the message names it).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from gridserver.errors import GridserverError

app = typer.Typer(help="事件分类 the incident taxonomy (categories, items, departments, deadlines).",
                  no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _engine():
    from gridserver.db import migrate
    from gridserver.db.engine import get_engine

    migrate.upgrade()
    return get_engine()


@app.command("load")
def load(file: Path = typer.Argument(..., help="YAML or CSV taxonomy file"),
         by: str = typer.Option(None, help="who loads it (recorded with the version)")):
    """Validate FILE and make it the active taxonomy (a new version; older versions are kept)."""
    from gridserver.incidents import taxonomy

    try:
        with _engine().begin() as conn:
            s = taxonomy.load_file(conn, file, loaded_by=by)
    except GridserverError as exc:
        err.print(f"[red]错误 error:[/red] {exc.detail}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"taxonomy version {s['version']} '{s['name']}' active: {s['categories']} categories, "
                  f"{s['items']} items, {s['departments']} departments")


@app.command("list")
def list_versions():
    """The loaded versions (the active one marked)."""
    from gridserver.incidents import taxonomy

    with _engine().begin() as conn:
        taxonomy.active(conn)
        rows = taxonomy.versions(conn)
    t = Table("version", "name", "source", "categories", "items", "loaded", "active")
    for r in rows:
        t.add_row(str(r["id"]), r["name"], r["source"] or "", str(r["n_categories"]), str(r["n_items"]),
                  r["loaded_at"].strftime("%Y-%m-%d %H:%M"), "✓" if r["active"] else "")
    console.print(t)


@app.command("show")
def show(category: str = typer.Argument(None, help="only this category code")):
    """The active tree: item, dispatch level and department, deadline, workflow."""
    from gridserver.incidents import taxonomy

    with _engine().begin() as conn:
        tax = taxonomy.active(conn)
    t = Table("code", "名称 name", "level", "department", "deadline", "workflow")
    for c in tax.categories():
        if category and c.code != category:
            continue
        t.add_row(f"[bold]{c.code}[/bold]", c.name, c.start_level, tax.department_name(c.departments.get(c.start_level)),
                  c.deadline, c.workflow)
        for i in tax.items(c.code):
            t.add_row("  " + i.code, i.name, i.start_level, tax.department_name(i.departments.get(i.start_level)),
                      i.deadline, i.workflow)
    console.print(t)


@app.command("calendar")
def calendar(day: str = typer.Argument(..., help="YYYY-MM-DD"),
             workday: bool = typer.Option(..., "--workday/--holiday", help="make the day a working or rest day"),
             note: str = typer.Option("", help="why (e.g. 台风停工)")):
    """Override the official working-day calendar for one day (local holiday, typhoon day …)."""
    from gridserver.incidents.deadlines import set_override

    try:
        d = date.fromisoformat(day)
    except ValueError:
        err.print(f"[red]错误 error:[/red] day must be YYYY-MM-DD, got {day!r}")
        raise typer.Exit(2) from None
    with _engine().begin() as conn:
        set_override(conn, d, workday, note)
    console.print(f"{d}: {'working day' if workday else 'rest day'}")
