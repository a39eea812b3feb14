"""``gridserver demo``: build the demo city into the database and (optionally) serve it.

Steps, each idempotent so the command can be re-run:
1. the city's areas (real Yuexiu streets + derived communities and grids, or a generated city when
   ``../shared`` is absent) written to ``gis_data/demo/*.gpkg`` and loaded through the same importer
   users run (``gridserver import areas``), all levels in one transaction;
2. demo accounts (one per role) unless they exist;
3. a few thousand incidents, located in bulk with the batch grid index (replaced on every run);
4. the standard address base, ingested from generated departmental tables through the matcher.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from gridserver.settings import get_settings

console = Console()

DEMO_PASSWORD = "gridserver-demo"


def _shared_dir() -> Path | None:
    d = get_settings().shared_dir
    return d if (d / "data" / "yuexiu").is_dir() else None


def load_areas(city_dir: Path, progress=None) -> dict:
    """Import the written city files (district → grid) as one set through the area importer."""
    from gridserver.areas.importer import import_many

    sources = [(city_dir / f"{lvl}.gpkg", lvl) for lvl in ("district", "street", "community", "grid")]
    tasks: dict[str, int] = {}

    def step(stage: str, done: int, total: int) -> None:
        if progress is None:
            return
        if stage not in tasks:
            tasks[stage] = progress.add_task(f"导入 {stage}", total=max(total, 1))
        progress.update(tasks[stage], completed=done, total=max(total, 1))

    report = import_many(sources, source="demo", progress=step)
    return report.as_dict()


def ensure_demo_users(engine, city) -> list[tuple[str, str, str | None]]:
    """One account per role, scoped to the first street/community/grid of the city."""
    from gridserver.auth.users import create_user, get_user

    street = city["street"]["code"].iloc[0]
    community = sorted(c for c in city["community"]["code"] if c.startswith(street))[0]
    grid = sorted(c for c in city["grid"]["code"] if c.startswith(community))[0]
    district = city["district"]["code"].iloc[0]
    wanted = [
        ("admin", "admin", None, "系统管理员"),
        ("district", "district_operator", district, "区指挥中心值班员"),
        ("street", "street_operator", street, "街道网格中心操作员"),
        ("community", "community_operator", community, "社区工作站操作员"),
        ("gridworker", "grid_worker", grid, "网格员"),
        ("handler", "dept_handler", district, "城管部门处置员"),
        ("analyst", "analyst", None, "GIS 分析员"),
        ("citizen", "citizen", None, "市民"),
    ]
    with engine.begin() as conn:
        for username, role, scope, full_name in wanted:
            if get_user(conn, username) is None:
                create_user(conn, username, DEMO_PASSWORD, role, scope, full_name=full_name, demo=True)
    return [(u, r, s) for u, r, s, _ in wanted]


def load_incidents(engine, city, n: int, seed: int) -> int:
    """Replace the demo incidents: generate, locate in bulk with the grid index, COPY in."""
    from gridserver.areas.batch import current_index
    from gridserver.demo.incidents import demo_incidents

    now = datetime.now(timezone(timedelta(hours=8))).replace(minute=0, second=0, microsecond=0)
    inc = demo_incidents(city["grid"], n=n, seed=seed, now=now, roads=city.get("roads"))
    index = current_index()
    k = index.grid.locate(inc["lon"].to_numpy(), inc["lat"].to_numpy())
    lc = index.level_codes  # index -1 (outside) maps to the trailing all-null entry
    found = [None if kk < 0 else (lc["grid_code"][kk], lc["community_code"][kk], lc["street_code"][kk],
                                  lc["district_code"][kk]) for kk in k]
    from gridserver.demo.incident_loop import load_loop

    return load_loop(engine, inc, found, seed, now)  # routed and simulated through the workflow


def build_demo(seed: int = 0, incidents: int = 3000, addresses: bool = True, scale: str = "small") -> dict:
    """Build (or refresh) the whole demo city in the configured database; returns a summary."""
    from rich.progress import Progress

    if scale not in ("full", "small", "tiny", "none"):
        from gridserver.errors import InvalidInput

        raise InvalidInput(f"--scale must be full, small, tiny or none, got {scale!r}")

    from gridserver.db import migrate
    from gridserver.db.engine import get_engine
    from gridserver.demo.city import default_out_dir, load_city

    summary: dict = {}
    t0 = time.perf_counter()
    migrate.upgrade()
    shared = _shared_dir()
    summary["source"] = "real Yuexiu data (../shared)" if shared else "generated city (../shared absent)"
    with console.status("生成示范城市 building the demo city geometry…"):
        city = load_city(shared, seed)
    out_dir = default_out_dir()
    summary["files"] = str(out_dir)
    summary["counts"] = {lvl: len(city[lvl]) for lvl in ("district", "street", "community", "grid")}
    with Progress(console=console, transient=True) as progress:
        summary["areas_import"] = load_areas(out_dir, progress)
    engine = get_engine()
    summary["users"] = ensure_demo_users(engine, city)
    with console.status("生成事件 locating demo incidents…"):
        summary["incidents"] = load_incidents(engine, city, incidents, seed)
        from gridserver.demo.surge import plant_surge  # a planted hot spot for /api/v1/hotspots

        summary["surge"] = plant_surge(engine, city["grid"], seed=seed)
        from gridserver.demo.worker_tasks import plant_worker_tasks  # the phone app's to-do list

        summary["worker_tasks"] = plant_worker_tasks(engine, city["grid"])
    with console.status("底图 loading the basemap (roads, green areas)…"):
        from gridserver.demo.basemap import load_basemap

        summary["basemap"] = load_basemap(engine, city, shared / "data" / "yuexiu" if shared else None, seed)
    if shared:
        from gridserver.demo.checks import gcj02_outline_iou

        raw, fixed = gcj02_outline_iou(shared)
        summary["gcj02_check"] = {"iou_uncorrected": round(raw, 4), "iou_corrected": round(fixed, 4)}
    if addresses:
        try:
            from gridserver.address.demo_data import build_demo_address_base
        except ModuleNotFoundError:
            summary["addresses"] = "address base module not installed"
        else:
            summary["addresses"] = build_demo_address_base(engine, seed, out_dir / "addresses", console=console)
    if scale != "none":
        from gridserver.demo.blockdata import build_demo_blockdata

        summary["blockdata"] = build_demo_blockdata(engine, city, scale=scale, seed=seed, shared_dir=shared, console=console)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    return summary


def _print_summary(summary: dict, host: str, port: int) -> None:
    t = Table(title="示范城市 demo city", show_header=False)
    t.add_row("数据来源 source", summary["source"])
    c = summary["counts"]
    t.add_row("区划 areas", f"{c['district']} 区 · {c['street']} 街道 · {c['community']} 社区 · {c['grid']} 网格")
    imp = summary["areas_import"]
    t.add_row("导入 import", f"inserted {imp['inserted']}, updated {imp['updated']}, unchanged {imp['unchanged']}")
    t.add_row("事件 incidents", str(summary["incidents"]))
    if summary.get("worker_tasks"):
        t.add_row("网格员待办 worker tasks", f"{summary['worker_tasks']} in gridworker's grid (待处置 / 待核查 on /m/)")
    if "surge" in summary:
        t.add_row("热点 planted surge", f"{summary['surge']['incidents']} incidents in grids {', '.join(summary['surge']['grids'])}")
    if "gcj02_check" in summary:
        g = summary["gcj02_check"]
        t.add_row("GCJ-02 检查", f"IoU uncorrected {g['iou_uncorrected']}, corrected {g['iou_corrected']}")
    a = summary.get("addresses")
    if isinstance(a, dict):
        t.add_row("标准地址 addresses", f"{a['standard_addresses']} on {a['roads']} roads")
        for sc in a["scores"]:
            t.add_row(f"  {sc['source']}", f"{sc['rows']} rows: matched {sc['matched']}, "
                      f"precision {sc['precision']:.3f}, recall {sc['recall']:.3f}")
        r = a["auto_review"]
        t.add_row("  审核 review", f"auto-approved {r['approved']}, left for people {a['queue_left']}")
    elif a:
        t.add_row("标准地址 addresses", str(a))
    b = summary.get("blockdata")
    if b:
        t.add_row("实有数据 block data", f"{b['scale']}: {b['buildings']} 栋 buildings, {b['households']} 户, "
                  f"{b['people']} 人, {b['businesses']} 法人, {b['raw_rows']} 原始行 raw rows ({b['seconds']} s)")
    t.add_row("文件 files", summary["files"])
    t.add_row("用时 time", f"{summary['seconds']} s")
    console.print(t)
    users = ", ".join(u for u, _, _ in summary["users"])
    console.print(f"演示账号 demo accounts: {users} — password [bold]{DEMO_PASSWORD}[/] (they log in only in demo mode: `gridserver demo --serve`)")
    base = f"http://{host}:{port}"
    console.print(f"\n  地图 map:        {base}/map\n  指挥大屏 wall:   {base}/screen\n"
                  f"  网格员 phone:    {base}/m/  (gridworker)\n  进度查询 track:  {base}/track\n"
                  f"  API 文档 docs:   {base}/docs\n"
                  f"  落格 locate:     {base}/api/v1/locate?lon=113.2665&lat=23.1291\n"
                  f"  瓦片 tiles:      {base}/tiles/grids/14/13346/7109.mvt\n")


def demo_command(
    seed: int = typer.Option(0, help="随机种子 seed: same seed, same city"),
    incidents: int = typer.Option(3000, help="number of demo incidents"),
    addresses: bool = typer.Option(True, help="build the standard address base too"),
    scale: str = typer.Option("small", "--scale", help="block data: full (Yuexiu size, ~1.17 M people), small, tiny or none"),
    serve: bool = typer.Option(False, "--serve", help="serve the city at http://HOST:PORT after building"),
    host: str = typer.Option(None, help="bind address (default 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default 8000)"),
):
    """Build the demo city (real Yuexiu data from ../shared, else a generated one) and optionally serve it."""
    from gridserver.errors import GridserverError

    s = get_settings()
    host, port = host or s.host, port or s.port
    try:
        summary = build_demo(seed=seed, incidents=incidents, addresses=addresses, scale=scale)
    except GridserverError as exc:
        console.print(f"[red]demo failed:[/] {exc.detail}")
        raise typer.Exit(2) from None
    _print_summary(summary, host, port)
    if serve:
        import os

        import uvicorn

        from gridserver.auth.startup import DEMO_BANNER
        from gridserver.logconfig import uvicorn_log_config

        os.environ["GRIDSERVER_DEMO_MODE"] = "1"  # demo accounts may log in only in this process
        get_settings.cache_clear()
        console.print(f"[bold red]{DEMO_BANNER.format(password=DEMO_PASSWORD)}[/bold red] "
                      f"{', '.join(u for u, _, _ in summary['users'])}", highlight=False)
        console.print(f"serving at http://{host}:{port}/map — Ctrl-C to stop")
        uvicorn.run("gridserver.api:create_app", factory=True, host=host, port=port, log_level="warning",
                    log_config=uvicorn_log_config(), proxy_headers=False)  # see GRIDSERVER_TRUSTED_PROXIES
