"""``gridserver import people|households|buildings|businesses FILE --source NAME`` (merged into ``import``).

Small files are imported in this process. Large ones (more than ``--background-rows`` rows, or with
``--background``) become a background job in the PostgreSQL queue: this command then runs the job
itself with a Rich progress bar — if it is interrupted, ``gridserver jobs worker`` (or re-running
the same command) resumes it at the last committed chunk. ``--detach`` only queues it.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="导入实有人口/户/房屋/法人 block data.")
console = Console()


def _run(kind: str, file: Path, source: str, mapping: str | None, crs: str, encoding: str | None,
         update_rule: str | None, background: bool, background_rows: int, detach: bool, as_json: bool):
    from gridserver.blockdata.importer import import_file, read_table
    from gridserver.db import migrate
    from gridserver.db.engine import get_engine
    from gridserver.errors import GridserverError

    migrate.upgrade()
    engine = get_engine()
    try:
        if not file.exists():
            raise GridserverError(f"file not found: {file}")
        n = sum(1 for _ in open(file, "rb")) - 1 if file.suffix.lower() == ".csv" else None
        big = background or detach or (n is not None and n > background_rows)
        if big:
            from gridserver.jobs import enqueue
            from gridserver.jobs.cli import wait_with_bar
            from gridserver.jobs.worker import import_task_modules, run_one

            import_task_modules()
            jid = enqueue("blockdata.import", {"path": str(file.resolve()), "kind": kind, "source": source,
                                               "mapping": mapping, "crs": crs, "encoding": encoding,
                                               "update_rule": update_rule}, created_by="cli", total=n)
            console.print(f"后台任务 job {jid} queued (GET /api/v1/jobs/{jid})")
            if detach:
                return
            import threading

            t = threading.Thread(target=run_one, kwargs={"engine": engine, "only": jid}, daemon=True)
            t.start()
            job = wait_with_bar(jid, label=f"导入 {kind}")
            t.join()
            if job["state"] != "done":
                console.print(f"[red]import failed:[/] {(job.get('error') or job['state']).splitlines()[0]}")
                raise typer.Exit(2)
            report = job["result"]
        else:
            report = import_file(engine, file, kind=kind, source=source, mapping=mapping, crs=crs, encoding=encoding,
                                 update_rule=update_rule)
    except GridserverError as exc:
        console.print(f"[red]import failed:[/] {exc.detail}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, default=str))
        return
    t = Table(title=f"导入 {kind} ← {file.name} ({source})", show_header=False)
    for k in ("rows", "inserted", "updated", "unchanged", "review", "rejected", "straddling_count", "no_grid",
              "already_imported", "seconds"):
        if k in report:
            t.add_row(k, str(report[k]))
    console.print(t)
    for e in report.get("errors", [])[:20]:
        console.print(f"  行 row {e['row']}, 列 column {e['column']}: {e['reason']}")
    for s in report.get("straddling", [])[:20]:
        console.print(f"  跨网格 building {s['building_code']} → {s['grid_code']} ({float(s['share']):.0%} of footprint, "
                      f"{s['n_grids']} grids)")


def _make(kind: str):
    def command(file: Path = typer.Argument(..., help="CSV (UTF-8/GB18030), .xlsx or GeoParquet"),
                source: str = typer.Option(..., "--source", help="提供部门 the department the table comes from"),
                map: str = typer.Option(None, "--map", help="role=column,... e.g. id_number=证件号,address=住址"),
                crs: str = typer.Option("wgs84", help="CRS of coordinates/footprints: wgs84, cgcs2000, gcj02, bd09, EPSG:nnnn"),
                encoding: str = typer.Option(None, help="text encoding (default: detect UTF-8 or GB18030)"),
                update_rule: str = typer.Option(None, help="dataset update rule: daily|weekly|monthly|quarterly|yearly|once"),
                background: bool = typer.Option(False, "--background", help="run as a background job (progress bar)"),
                background_rows: int = typer.Option(100_000, help="files with more rows run as a background job"),
                detach: bool = typer.Option(False, "--detach", help="queue the job and return (a worker runs it)"),
                as_json: bool = typer.Option(False, "--json", help="print the report as JSON")):
        _run(kind, file, source, map, crs, encoding, update_rule, background, background_rows, detach, as_json)

    command.__doc__ = f"Import {kind}: link rows to standard addresses and grids; bad rows reported by row and column."
    return command


for _kind in ("people", "households", "buildings", "businesses"):
    app.command(_kind)(_make(_kind))
