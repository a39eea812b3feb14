"""CLI: ``gridserver import areas FILE --level ...`` and ``gridserver check topology``.

Exit codes: import → 0 done, 2 rejected (message on stderr, nothing written);
check topology → 0 clean, 1 issues found, 2 bad arguments.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridserver.errors import GridserverError

STAGES = {"reading": "读取 reading", "checking": "检查 checking", "writing": "写入 writing"}


def _fail(exc: GridserverError) -> typer.Exit:
    # plain echo, not Rich: long messages must not be re-wrapped or styled when captured
    typer.echo(f"错误 error: {exc.detail}", err=True)
    return typer.Exit(2)


def import_areas(
    file: Path = typer.Argument(..., help="GeoJSON, Shapefile (.shp/.zip), GeoPackage or GeoParquet file"),
    level: str = typer.Option(..., "--level", help="street|community|grid|district"),
    crs: str | None = typer.Option(None, "--crs", help="坐标系 coordinates' CRS when the file has none or it is "
                                   "wrong: wgs84, cgcs2000, gcj02, bd09 or EPSG:nnnn"),
    repair: bool = typer.Option(False, "--repair", help="修复 fix invalid geometries (make_valid) instead of rejecting"),
    layer: str | None = typer.Option(None, "--layer", help="GeoPackage layer"),
    code_field: str | None = typer.Option(None, "--code-field", help="column holding the code (default: code)"),
    name_field: str | None = typer.Option(None, "--name-field", help="column holding the name (default: name)"),
    parent_field: str | None = typer.Option(None, "--parent-field",
                                            help="column holding the parent code (default: derived from the code)"),
    source: str | None = typer.Option(None, "--source", help="source label stored with each row (default: file name)"),
    no_parent_check: bool = typer.Option(False, "--no-parent-check",
                                         help="do not require parents to exist (top-level import)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check only, write nothing"),
):
    """导入行政区划/网格 import admin areas or grids (all checks first, then one transaction)."""
    from gridserver.areas.importer import import_areas as run_import

    console = Console()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGES.get(stage, stage), total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        try:
            report = run_import(file, level, crs=crs, repair=repair, source=source,
                                parent_level_check=not no_parent_check, progress=progress, layer=layer,
                                code_field=code_field, name_field=name_field, parent_field=parent_field,
                                dry_run=dry_run)
        except GridserverError as exc:
            raise _fail(exc) from None

    table = Table(title="导入结果 import summary" + (" (dry run)" if dry_run else ""))
    table.add_column("项目 item")
    table.add_column("值 value", justify="right")
    for label, value in [("文件 file", file.name), ("层级 level", report.level), ("坐标系 CRS", report.crs), ("要素 features", report.features),
                         ("新增 inserted", report.inserted), ("更新 updated (new version)", report.updated),
                         ("未变 unchanged", report.unchanged), ("修复 repaired", len(report.repaired)),
                         ("耗时 seconds", f"{report.seconds:.2f}")]:
        table.add_row(label, str(value))
    console.print(table)
    for note in report.notes:
        typer.echo(f"注意 note: {note}")
    for line in report.repaired:
        typer.echo(f"修复 repaired: {line}")


def _area(m2: float | None) -> str:
    if m2 is None:
        return ""
    return f"{m2:,.1f}" if m2 >= 10 else f"{m2:.3g}"  # dust-sized pieces keep their significant digits


def check_topology(
    area: str | None = typer.Option(None, "--area", help="only this area's descendants (code)"),
    level: str | None = typer.Option(None, "--level", help="only children of this level: street|community|grid"),
    tolerance: float = typer.Option(0.01, "--tolerance", help="ignore pieces smaller than this many m²"),
    json_out: bool = typer.Option(False, "--json", help="print the issues as JSON"),
):
    """拓扑检查 overlaps between siblings, gaps in a parent's coverage, children outside their parent.

    Exit code 0 when clean, 1 when issues were found.
    """
    from gridserver.areas.topology import check_topology as run_check
    from gridserver.db.engine import get_engine

    try:
        with get_engine().connect() as conn:
            issues = run_check(conn, parent_code=area, level=level, tolerance=tolerance)
    except GridserverError as exc:
        raise _fail(exc) from None
    if json_out:
        typer.echo(json.dumps({"issues": [i.as_dict() for i in issues], "count": len(issues)}, ensure_ascii=False))
    else:
        console = Console()
        if issues:
            table = Table(title=f"拓扑问题 topology issues: {len(issues)}")
            for col in ("类型 kind", "层级 level", "上级 parent", "编码 codes", "面积 m²", "位置 location"):
                table.add_column(col)
            for i in issues:
                table.add_row(i.label, i.level, i.parent_code or "", ", ".join(i.codes),
                              _area(i.area_m2),
                              f"{i.lon:.6f}, {i.lat:.6f}" if i.lon is not None else "")
            console.print(table)
        typer.echo(f"{len(issues)} topology issue(s) found" if issues else "拓扑检查通过 topology clean: no issues")
    raise typer.Exit(1 if issues else 0)
