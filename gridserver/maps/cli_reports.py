"""Printable area reports and wall snapshots (``gridserver map report`` / ``gridserver map snapshot``).

* ``report``: one standalone, printable HTML file for an area: the folium map of its grids and
  incidents (``export.build_map``, Leaflet inlined, no basemap), then incidents by category and
  status, and a profile table per grid (area, open/closed incidents, and the block-data profile
  counts when that table exists).
* ``snapshot``: a PNG of the command-center wall (``/screen``) rendered by headless Chromium from a
  server started in this process on a free port, for daily briefings.
"""

from __future__ import annotations

import html
import json
import socket
import threading
import time
from pathlib import Path

import typer

from gridserver.errors import NotFound

app = typer.Typer()

BY_CATEGORY_SQL = """
SELECT i.category, i.status, count(*) AS n
FROM incidents i
WHERE i.grid_code LIKE %(prefix)s
GROUP BY 1, 2 ORDER BY 1, 2
"""

PER_GRID_SQL = """
SELECT a.code, a.name, round((a.area_m2 / 1e4)::numeric, 2) AS area_ha,
       count(i.id) FILTER (WHERE i.status NOT IN ('closed', 'rated', 'merged')) AS open,
       count(i.id) FILTER (WHERE i.status IN ('closed', 'rated')) AS closed,
       count(i.id) AS total
FROM admin_areas a
LEFT JOIN incidents i ON i.grid_code = a.code
WHERE a.level = 'grid' AND a.valid_to IS NULL AND a.code LIKE %(prefix)s
GROUP BY a.code, a.name, a.area_m2 ORDER BY a.code
"""

PEOPLE_SQL = """
SELECT grid_code, count(*) FROM people WHERE grid_code LIKE %(prefix)s GROUP BY 1
"""

REPORT_CSS = """
<style>
  .folium-map { position: relative !important; height: 560px !important; width: 100% !important; }
  body { font-family: "WenQuanYi Micro Hei", "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; }
  .gs-report { padding: 16px 24px; color: #222; }
  .gs-report h2 { font-size: 18px; border-bottom: 2px solid #1f3b57; padding-bottom: 4px; margin-top: 24px; }
  .gs-report table { border-collapse: collapse; width: 100%; font-size: 13px; }
  .gs-report th, .gs-report td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
  .gs-report th:first-child, .gs-report td:first-child, .gs-report td.name { text-align: left; }
  .gs-report th { background: #eef2f6; }
  .gs-report .meta { color: #555; font-size: 13px; }
  @media print { .leaflet-control-container { display: none; } .gs-report h2 { break-after: avoid; }
                 tr { break-inside: avoid; } }
</style>
"""


def _table(head: list[str], rows: list[list], name_cols: int = 1) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join("<tr>" + "".join(
        f'<td class="{"name" if i < name_cols else ""}">{html.escape("" if v is None else str(v))}</td>'
        for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def report_sections(conn, code: str) -> tuple[str, dict]:
    """The HTML of the report's tables for area ``code`` and the numbers in them."""
    from gridserver.incidents.categories import category_label
    from gridserver.maps.export import STATUS_LABELS

    prefix = code + "%"
    cats: dict[str, dict[str, int]] = {}
    statuses: list[str] = []
    for cat, status, n in conn.execute(BY_CATEGORY_SQL, {"prefix": prefix}).fetchall():
        cats.setdefault(cat, {})[status] = n
        if status not in statuses:
            statuses.append(status)
    cat_rows = [[category_label(c), *[v.get(s, 0) for s in statuses], sum(v.values())] for c, v in cats.items()]
    cat_rows.sort(key=lambda r: -r[-1])
    if cat_rows:
        cat_rows.append(["合计", *[sum(v.get(s, 0) for v in cats.values()) for s in statuses],
                         sum(sum(v.values()) for v in cats.values())])
    people = None
    if conn.execute("SELECT to_regclass('people') IS NOT NULL AND EXISTS (SELECT 1 FROM information_schema.columns "
                    "WHERE table_name = 'people' AND column_name = 'grid_code')").fetchone()[0]:
        people = dict(conn.execute(PEOPLE_SQL, {"prefix": prefix}).fetchall())
    grid_rows = []
    for gcode, name, area_ha, open_, closed, total in conn.execute(PER_GRID_SQL, {"prefix": prefix}).fetchall():
        row = [gcode, name, area_ha, open_, closed, total]
        if people is not None:
            row.append(people.get(gcode, 0))
        grid_rows.append(row)
    head = ["网格编码", "网格名称", "面积（公顷）", "未办结", "已办结", "事件合计"] + (["人口"] if people is not None else [])
    out = ("<h2>事件分类统计</h2>"
           + (_table(["类别", *[STATUS_LABELS.get(s, s) for s in statuses], "合计"], cat_rows) if cat_rows
              else "<p>本区域暂无事件。</p>")
           + f"<h2>网格概况（{len(grid_rows)} 个网格）</h2>" + _table(head, grid_rows, name_cols=2))
    return out, {"categories": len(cats), "incidents": sum(sum(v.values()) for v in cats.values()), "grids": len(grid_rows)}


def write_report(code: str, out: Path) -> dict:
    """Write the printable report of area ``code`` to ``out``; returns what went in. NotFound for a bad code."""
    import folium

    from gridserver.db.engine import pool
    from gridserver.maps.export import LEVEL_LABELS, _inline_assets, build_map, load_area_data

    with pool().connection() as conn:
        area, grids, points = load_area_data(conn, code, True)
        tables, numbers = report_sections(conn, area["code"])
    m = build_map(area, grids, points)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    title = f"{area['name']}（{area['code']}）{LEVEL_LABELS.get(area['level'], '')}区域报告"
    m.get_root().title = title
    m.get_root().header.add_child(folium.Element(REPORT_CSS))
    m.get_root().html.add_child(folium.Element(
        f'<div class="gs-report"><h1 style="font-size:22px">{html.escape(title)}</h1>'
        f'<p class="meta">生成时间 {stamp} · 网格 {len(grids)} 个 · 事件 {len(points)} 件 · gridserver</p>'
        f"{tables}</div>"))
    page, offline = _inline_assets(m.get_root().render())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return {"path": str(out), "area": area["code"], "name": area["name"], "offline": offline, **numbers}


@app.command("report")
def report_command(
    area: str = typer.Option(..., "--area", help="区划或网格编码 area code"),
    out: Path = typer.Option(..., "--out", help="输出 HTML 文件 output HTML file"),
):
    """打印版区域报告：map of the grids and incidents, incidents by category and status, per-grid profile table."""
    try:
        r = write_report(area.strip(), out)
    except NotFound as exc:
        typer.echo(f"错误 error: {exc.detail}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"已生成 {r['name']}（{r['area']}）报告：网格 {r['grids']} 个，事件 {r['incidents']} 件，"
               f"{r['categories']} 个类别 → {r['path']}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def snapshot_wall(out: Path, username: str, width: int = 1920, height: int = 1080, settle_ms: int = 1500) -> dict:
    """Render /screen as ``username`` in headless Chromium from an in-process server; write a PNG."""
    import uvicorn
    from playwright.sync_api import sync_playwright

    from gridserver.api import create_app
    from gridserver.auth.security import create_access_token
    from gridserver.auth.users import get_user
    from gridserver.db.engine import get_engine

    with get_engine().connect() as conn:
        user = get_user(conn, username)
    if user is None or not user.active:
        raise NotFound(f"no active account {username!r}: pass --user with an existing account")
    from gridserver.settings import get_settings

    if getattr(user, "demo", False) and not get_settings().demo_mode:
        raise NotFound(f"{username!r} is a demo account, refused outside demo mode: pass --user with a real account "
                       "(or set GRIDSERVER_DEMO_MODE=1 on a demo database)")
    token = create_access_token(user.username, version=getattr(user, "token_version", 0))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("snapshot server did not start")
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox"])
            ctx = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
            ctx.add_init_script(f"localStorage.setItem('gridserver.token', {json.dumps(token)});")
            page = ctx.new_page()
            page.goto(f"http://127.0.0.1:{port}/screen")
            page.wait_for_function("() => window.__screenState && window.__screenState.ready", timeout=120_000)
            page.wait_for_function("() => window.__screenMap.loaded() && !window.__screenMap.isMoving()", timeout=120_000)
            page.wait_for_timeout(settle_ms)
            out = Path(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            state = page.evaluate("() => ({shaded: window.__screenState.shaded, kpi: window.__screenState.summary?.kpi})")
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return {"path": str(out), "width": width, "height": height, **state}


@app.command("snapshot")
def snapshot_command(
    out: Path = typer.Option(..., "--out", help="输出 PNG 文件 output PNG"),
    user: str = typer.Option("admin", "--user", help="以该账号的权限渲染 render as this account (its scope)"),
    width: int = typer.Option(1920, help="宽 px"),
    height: int = typer.Option(1080, help="高 px"),
):
    """指挥大屏截图：a PNG of the /screen wall map for daily briefings (headless Chromium)."""
    try:
        r = snapshot_wall(out, user, width, height)
    except NotFound as exc:
        typer.echo(f"错误 error: {exc.detail}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"已截图 {r['width']}×{r['height']}，{r['shaded']} 个网格着色 → {r['path']}")
