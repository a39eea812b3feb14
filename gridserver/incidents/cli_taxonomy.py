"""``gridserver taxonomy``: load, list and show the incident taxonomy; local calendar overrides.

Exit codes: 0 ok, 2 bad input (file missing, invalid entry — the message names it).
"""

from __future__ import annotations

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
def calendar(day: str = typer.Argument(..., help="YYYY-MM-DD, or a range YYYY-MM-DD..YYYY-MM-DD (≤ 31 days)"),
             workday: bool = typer.Option(..., "--workday/--holiday", help="make the days working or rest days"),
             note: str = typer.Option("", help="why (e.g. 台风停工)")):
    """Override the official working-day calendar for a day or a range (local holiday, typhoon day …)."""
    from gridserver.incidents.deadlines import parse_days, set_overrides

    try:
        days = parse_days(day)
    except GridserverError as exc:
        err.print(f"[red]错误 error:[/red] {exc.detail}", highlight=False)
        raise typer.Exit(2) from None
    with _engine().begin() as conn:
        set_overrides(conn, [(d, workday, note) for d in days])
    what = "working day" if workday else "rest day"
    console.print(f"{days[0]}: {what}" if len(days) == 1 else f"{days[0]}..{days[-1]}: {len(days)} × {what}")


@app.command("calendar-load")
def calendar_load(file: Path = typer.Argument(..., help="schedule file: 'DAY[..DAY] 休|班 [note]' per line")):
    """Load a year's published holiday schedule (节假日安排: rest days and make-up working days 调休) as
    local overrides — for a year the installed chinese-calendar package does not know yet.

    One line per day or range, e.g. ``2027-02-06..2027-02-12 休 春节`` / ``2027-02-14 班 春节调休``;
    ``#`` starts a comment. A bad line names its number and nothing is written (exit 2)."""
    from gridserver.incidents.deadlines import load_schedule, parse_schedule

    try:
        entries = parse_schedule(file.read_text(encoding="utf-8"))
    except OSError as exc:
        err.print(f"[red]错误 error:[/red] cannot read {file}: {exc.strerror}", highlight=False)
        raise typer.Exit(2) from None
    except (GridserverError, UnicodeDecodeError) as exc:
        err.print(f"[red]错误 error:[/red] {file}: {getattr(exc, 'detail', exc)}", highlight=False)
        raise typer.Exit(2) from None
    with _engine().begin() as conn:
        n = load_schedule(conn, entries)
    rest = sum(not w for _, w, _ in entries)
    console.print(f"{n} days loaded ({rest} rest, {n - rest} working) from {entries[0][0]} to {entries[-1][0]}")


@app.command("calendar-status")
def calendar_status(ahead: int = typer.Option(60, help="look this many days ahead of today")):
    """Which years the working-day calendar covers (official package, local overrides) and whether a
    year within ``--ahead`` days falls back to Monday–Friday (exit 1 if so, for monitoring)."""
    from gridserver.incidents.deadlines import calendar_status, uncovered_message

    with _engine().connect() as conn:
        st = calendar_status(conn, ahead)
    known = st["official_years"]
    console.print(f"official calendar (chinese-calendar): {'%d–%d' % tuple(known) if known else 'not installed'}")
    console.print("published schedules loaded: " + (", ".join(map(str, st["schedule_years"])) or "none"))
    console.print("local overrides: " + (", ".join(f"{y}: {n} days" for y, n in st["override_days"].items()) or "none"))
    if st["uncovered"]:
        err.print(f"[yellow]警告 warning:[/yellow] {uncovered_message(st['uncovered'])}", highlight=False)
        raise typer.Exit(1)
    console.print(f"covered through the next {ahead} days")
