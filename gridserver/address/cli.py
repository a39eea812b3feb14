"""CLI of the standard address base: ``gridserver import addresses`` and ``gridserver address review|geocode|reverse|build-demo``.

``app``'s commands are merged into ``gridserver address``; :func:`import_addresses` is registered as
``gridserver import addresses``.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from gridserver.errors import GridserverError

app = typer.Typer(help="标准地址库 the standard address base.", no_args_is_help=True)
console = Console()


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name in some containers
        return "cli"


def _fail(exc: GridserverError) -> None:
    console.print(f"[red]错误 error:[/red] {exc.detail}")
    raise typer.Exit(2)


def import_addresses(
    file: Path = typer.Argument(..., help="departmental table: .csv (UTF-8 or GB18030) or .xlsx"),
    source: str = typer.Option(..., "--source", help="department the table comes from, e.g. 公安户籍"),
    map: str | None = typer.Option(None, "--map", help="column mapping, e.g. address=地址,lon=经度,lat=纬度,id=编号 "
                                                        "(address=街路巷+门牌号 joins columns)"),
    rejected: Path | None = typer.Option(None, "--rejected", help="where to write rejected rows (default FILE.rejected.csv)"),
    encoding: str | None = typer.Option(None, "--encoding", help="CSV encoding (default: detect UTF-8 / GB18030)"),
    sheet: str | None = typer.Option(None, "--sheet", help="xlsx sheet name (default: the first)"),
    crs: str = typer.Option("wgs84", "--crs", help="CRS of the lon/lat columns unless a crs column says otherwise"),
    actor: str | None = typer.Option(None, "--actor", help="who imports (kept in the history)"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
):
    """导入部门地址表 Import a departmental address table through the matcher (idempotent)."""
    from gridserver.address.importer import import_file
    from gridserver.db.engine import get_engine

    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TimeRemainingColumn(), console=console, transient=as_json, disable=as_json) as bar:
            task = bar.add_task(f"匹配 {file.name}", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, advance=done, total=total)

            s = import_file(get_engine(), file, source=source, mapping=map, rejected=rejected, encoding=encoding,
                            sheet=sheet, crs=crs, actor=_actor(actor), progress=progress)
    except GridserverError as exc:
        _fail(exc)
    if as_json:
        print(json.dumps(s.as_dict(), ensure_ascii=False, indent=1))
        return
    if s.already_imported:
        console.print(f"{file.name} was already imported from {source} (import #{s.import_id}): nothing changed.")
        return
    t = Table(title=f"导入结果 {file.name} ← {source}", show_header=True)
    for col in ("rows", "matched", "new", "review", "rejected", "unchanged"):
        t.add_column(col, justify="right")
    t.add_row(*(str(getattr(s, c)) for c in ("rows", "matched", "new", "review", "rejected", "unchanged")))
    console.print(t)
    console.print(f"encoding {s.encoding or 'xlsx'}, parser {s.parser}, {s.seconds:.1f} s "
                  f"({s.rows_per_second:,.0f} rows/s); methods {dict(s.methods)}")
    if s.rejected_file:
        console.print(f"rejected rows with reasons: {s.rejected_file} ({dict(s.reasons)})")


@app.command("review")
def review_command(
    action: str = typer.Argument("list", help="list | approve | merge | reject"),
    record_id: int | None = typer.Argument(None, help="queue record id (for approve/merge/reject)"),
    into: str | None = typer.Option(None, "--into", help="merge: code of the address to merge into (default: candidate)"),
    reason: str | None = typer.Option(None, "--reason", help="why (required for reject)"),
    source: str | None = typer.Option(None, "--source", help="list: only this department"),
    limit: int = typer.Option(20, "--limit"),
    offset: int = typer.Option(0, "--offset"),
    actor: str | None = typer.Option(None, "--actor"),
):
    """审核队列 The review queue: list it, or approve / merge / reject one record."""
    from gridserver.address import review
    from gridserver.db.engine import get_engine

    who = _actor(actor)
    try:
        with get_engine().begin() as conn:
            if action == "list":
                page = review.list_queue(conn, limit=limit, offset=offset, source=source)
                t = Table(title=f"待审核 review queue: {page['total']} records")
                for col in ("id", "source", "status", "text", "reason", "candidate / pending"):
                    t.add_column(col)
                for it in page["items"]:
                    other = it["candidate_code"] and f"{it['candidate_code']} {it['candidate_text']}" or \
                        (it["pending_code"] and f"{it['pending_code']} (pending)") or ""
                    t.add_row(str(it["id"]), it["source"], it["status"], it["raw_text"], it["reason"] or "", other)
                console.print(t)
                return
            if record_id is None:
                raise typer.BadParameter(f"{action} needs a record id")
            if action == "approve":
                a = review.approve(conn, record_id, actor=who, reason=reason)
                console.print(f"approved: {a['code']} {a['full_text']} ({a['status']})")
            elif action == "merge":
                a = review.merge(conn, record_id, into, actor=who, reason=reason)
                console.print(f"merged into {a['code']} {a['full_text']}")
            elif action == "reject":
                if not reason:
                    raise typer.BadParameter("reject needs --reason")
                review.reject(conn, record_id, actor=who, reason=reason)
                console.print(f"record {record_id} rejected")
            else:
                raise typer.BadParameter(f"unknown action {action!r}: use list, approve, merge or reject")
    except GridserverError as exc:
        _fail(exc)


@app.command("geocode")
def geocode_command(q: str = typer.Argument(..., help="address text")):
    """地址 → 坐标 Geocode an address from the standard base."""
    from gridserver.address.geocode import geocode
    from gridserver.db.engine import get_engine

    try:
        with get_engine().begin() as conn:
            print(json.dumps(geocode(conn, q), ensure_ascii=False, indent=1))
    except GridserverError as exc:
        _fail(exc)


@app.command("reverse")
def reverse_command(lon: float = typer.Argument(...), lat: float = typer.Argument(...),
                    crs: str = typer.Option("wgs84", "--crs"), limit: int = typer.Option(5, "--limit"),
                    level: str = typer.Option("house", "--level")):
    """坐标 → 最近地址 Nearest standard addresses to a point."""
    from gridserver.address.geocode import reverse
    from gridserver.db.engine import get_engine

    try:
        with get_engine().begin() as conn:
            print(json.dumps(reverse(conn, lon, lat, crs, limit=limit, level=level), ensure_ascii=False, indent=1))
    except GridserverError as exc:
        _fail(exc)


@app.command("build-demo")
def build_demo_command(seed: int = typer.Option(20261123, "--seed"),
                       out_dir: Path = typer.Option(Path("demo_out/addresses"), "--out"),
                       rows: int = typer.Option(3000, "--rows", help="rows per departmental table")):
    """生成演示地址库 Build the demo address base from the real Yuexiu roads and ingest three departmental tables."""
    from gridserver.address.demo_data import build_demo_address_base
    from gridserver.db.engine import get_engine

    report = build_demo_address_base(get_engine(), seed, out_dir, rows_per_table=rows, console=console)
    console.print(f"standard addresses {report['standard_addresses']} on {report['roads']} roads; "
                  f"auto-review {report['auto_review']}; left in the queue {report['queue_left']}")
    for s in report["scores"]:
        console.print(f"{s['source']}: precision {s['precision']:.3f} recall {s['recall']:.3f} "
                      f"(new detected {s['new_detected']}/{s['new_total']})")
