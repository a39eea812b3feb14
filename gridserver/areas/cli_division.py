"""CLI ``gridserver grids …``: divide areas into grids (drafts), review, activate, history.

Exit codes: 0 done, 2 bad input or refused (message on stderr, nothing written).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridserver.errors import GridserverError

app = typer.Typer(help="网格划分 automatic grid division, drafts and grid versions.", no_args_is_help=True)


def _fail(exc: GridserverError) -> typer.Exit:
    typer.echo(f"错误 error: {exc.detail}", err=True)
    return typer.Exit(2)


def read_buildings(path: Path):
    """Buildings from a file geopandas reads (any CRS; columns building_code or code, households)."""
    import geopandas as gpd

    from gridserver.areas.division import Buildings
    from gridserver.errors import InvalidInput

    if not path.is_file():
        raise InvalidInput(f"--buildings {path}: no such file")
    try:
        df = gpd.read_file(path, engine="pyogrio")
    except Exception as exc:  # noqa: BLE001 - unreadable file is a user error
        raise InvalidInput(f"--buildings {path}: cannot read: {exc}") from None
    if df.crs is not None and df.crs.to_epsg() != 4326:
        df = df.to_crs(4326)
    code_col = next((c for c in ("building_code", "code") if c in df.columns), None)
    if code_col is None or "households" not in df.columns:
        raise InvalidInput(f"--buildings {path}: needs columns building_code (or code) and households; "
                           f"has {', '.join(map(str, df.columns))}")
    hh = df["households"]
    if hh.isna().any() or (hh < 0).any():
        bad = int(((hh.isna()) | (hh < 0)).to_numpy().nonzero()[0][0])
        raise InvalidInput(f"--buildings {path}: row {bad}: households must be a whole number >= 0, got {hh.iloc[bad]!r}")
    return Buildings(df[code_col].astype(str).to_numpy(), df.geometry.to_numpy(), hh.astype(int).to_numpy())


def synthetic_for_area(conn, area: str, n: int, seed: int):
    """Generated buildings over the area's communities (demo only, before block data exists)."""
    import numpy as np
    import shapely

    from gridserver.areas.division.synthetic import synthetic_buildings
    from gridserver.areas.versions import area_communities, road_lines

    comms = area_communities(conn, area)
    geoms = np.asarray([g for _, _, g in comms], dtype=object)
    lines, _ = road_lines(conn, ("roads",), shapely.total_bounds(geoms))
    return synthetic_buildings(shapely.union_all(geoms), lines, n, seed)


def _summary_table(report: dict, title: str) -> Table:
    t = Table(title=title)
    t.add_column("")
    t.add_column("现状 existing", justify="right")
    t.add_column("草案 proposed", justify="right")
    p, e = report["proposed"], report["existing"]
    for key, label in (("grids", "网格 grids"), ("households_mean", "户数均值 mean"), ("households_cv", "户数 CV"),
                       ("households_min", "最少 min"), ("households_max", "最多 max"), ("within_bounds", "在范围内 within bounds"),
                       ("pp_mean", "紧凑度 Polsby-Popper"), ("boundary_on_roads", "沿路边界 boundary on roads"),
                       ("buildings_per_grid_mean", "楼栋/格 buildings per grid"), ("buildings_cut", "被切楼栋 buildings cut")):
        t.add_row(label, str(e.get(key, "–")), str(p.get(key, "–")))
    return t


@app.command("divide")
def divide(
    area: str = typer.Option(..., "--area", help="区/街道/社区编码 district, street or community code"),
    target_households: int = typer.Option(300, "--target-households", help="每格目标户数"),
    min_households: int = typer.Option(200, "--min", help="每格最少户数"),
    max_households: int = typer.Option(500, "--max", help="每格最多户数"),
    respect: str = typer.Option("roads", "--respect", help="边界沿 comma list of roads, rivers"),
    seed: int = typer.Option(0, "--seed", help="随机种子 same seed, same proposal"),
    method: str = typer.Option("grow", "--method", help="grow (default), maxp, skater, kmeans (PySAL spopt)"),
    buildings: Path | None = typer.Option(None, "--buildings", help="buildings file (building_code, households) "
                                          "instead of the block-data tables"),
    synthetic: int = typer.Option(0, "--synthetic", help="演示 demo only: generate this many buildings when there "
                                  "is no block data"),
    dry_run: bool = typer.Option(False, "--dry-run", help="report only, store no draft"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
):
    """自动划分网格 propose grids for a community, or a street/district community by community (a draft)."""
    from gridserver.areas import versions
    from gridserver.db.engine import session_scope

    console = Console(stderr=as_json)
    try:
        with session_scope() as s:
            b = read_buildings(buildings) if buildings else None
            if b is None and synthetic:
                b = synthetic_for_area(s, area, synthetic, seed)
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console, transient=True) as bar:
                task = bar.add_task("划分 dividing", total=None)

                def progress(code: str, done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total, description=f"划分 dividing {code}")

                prop = versions.propose(s, area, target=target_households, lo=min_households, hi=max_households,
                                        seed=seed, method=method, respect=respect, buildings=b, progress=progress)
            draft_id = None if dry_run else versions.save_draft(s, prop, created_by="cli")
    except GridserverError as exc:
        raise _fail(exc) from None
    report = prop.report()
    if as_json:
        typer.echo(json.dumps({"draft_id": draft_id, "report": report, "notes": prop.notes}, ensure_ascii=False))
        return
    for n in prop.notes:
        console.print(f"[dim]{n}[/]")
    console.print(_summary_table(report, f"{area} 网格划分 ({report['method']}, {report['seconds']} s)"))
    if draft_id is not None:
        console.print(f"草案 draft [bold]{draft_id}[/] saved: review with `gridserver grids show {draft_id}`, "
                      f"activate with `gridserver grids activate {draft_id}`")


@app.command("show")
def show(draft_id: int = typer.Argument(..., help="草案编号 draft id"),
         geojson: Path | None = typer.Option(None, "--geojson", help="write the draft's grids to this GeoJSON file")):
    """查看草案 show a draft's quality report (existing vs proposed)."""
    from gridserver.areas import versions
    from gridserver.db.engine import session_scope

    console = Console()
    try:
        with session_scope() as s:
            d = versions.get_draft(s, draft_id, geometry=geojson is not None)
    except GridserverError as exc:
        raise _fail(exc) from None
    console.print(_summary_table(d["report"], f"草案 draft {draft_id} · {d['draft']['area_code']} · {d['draft']['status']}"))
    if geojson is not None:
        geojson.write_text(json.dumps({"type": "FeatureCollection", "features": d["features"]}, ensure_ascii=False))
        console.print(f"wrote {len(d['features'])} grids to {geojson}")
    if d["change_report"]:
        console.print_json(json.dumps(d["change_report"], ensure_ascii=False, default=str)[:4000])


@app.command("activate")
def activate(draft_id: int = typer.Argument(..., help="草案编号 draft id"),
             effective: str | None = typer.Option(None, "--effective", help="生效日期 2025-07-01 (default now)")):
    """启用草案 make a draft the current grid version (one transaction, block data and incidents re-linked)."""
    from gridserver.areas import versions
    from gridserver.db.engine import session_scope

    console = Console()
    try:
        with session_scope() as s:
            report = versions.activate_draft(s, draft_id, activated_by="cli", effective=effective)
    except GridserverError as exc:
        raise _fail(exc) from None
    b, i = report["buildings"], report["incidents"]
    console.print(f"draft {draft_id} active from {report['effective_from']}: {report['grids_closed']} grids closed, "
                  f"{report['grids_opened']} opened; {b['moved']} buildings ({b['households_moved']} households) and "
                  f"{i['moved']} of {i['open']} open incidents changed grid")
    for k, v in report["relink"].items():
        console.print(f"  re-link {k}: {v}")


@app.command("history")
def history_command(area: str = typer.Option(..., "--area", help="区划编码 area code")):
    """网格版本历史 list the grid versions of an area."""
    from gridserver.areas import versions
    from gridserver.db.engine import session_scope

    with session_scope() as s:
        rows = versions.history(s, area)
    t = Table(title=f"{area} 网格版本")
    for c in ("valid_from", "valid_to", "grids", "source"):
        t.add_column(c)
    for r in rows:
        t.add_row(str(r["valid_from"]), str(r["valid_to"] or "–"), str(r["grids"]), str(r["source"] or ""))
    Console().print(t)


@app.command("drafts")
def drafts_command(area: str | None = typer.Option(None, "--area")):
    """草案列表 list drafts."""
    from gridserver.areas import versions
    from gridserver.db.engine import session_scope

    with session_scope() as s:
        rows = versions.list_drafts(s, area)
    t = Table(title="网格划分草案 drafts")
    for c in ("id", "area", "status", "method", "grids", "CV", "existing CV", "created"):
        t.add_column(c)
    for r in rows:
        t.add_row(str(r["id"]), r["area_code"], r["status"], r["method"], str(r["grids"]), str(r["households_cv"]),
                  str(r["existing_households_cv"]), str(r["created_at"])[:19])
    Console().print(t)
