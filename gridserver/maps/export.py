"""Static map export: one self-contained folium/Leaflet HTML file of an area's grids and incidents.

The file is meant to be mailed or opened offline. folium links Leaflet, jQuery, Bootstrap and
Font Awesome from CDNs by default; we drop everything the map does not use and inline Leaflet's
JS and CSS from the copy the front-end build puts in ``gridserver/maps/static/dist/vendor/leaflet``
(npm ``leaflet``). There is no basemap (``tiles=None``), so the file makes no network request at
all. Without the front-end build the file still works but loads Leaflet from the CDN (a warning
says so and what to run).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import typer

from gridserver.errors import NotFound
from gridserver.incidents.categories import category_label
from gridserver.maps.tiles import CATEGORY_COLORS, DEFAULT_COLOR

LEAFLET_DIR = Path(__file__).parent / "static" / "dist" / "vendor" / "leaflet"
_CDN_LEAFLET_JS = "https://cdn.jsdelivr.net/npm/leaflet@1.9.4/dist/leaflet.js"
_CDN_LEAFLET_CSS = "https://cdn.jsdelivr.net/npm/leaflet@1.9.4/dist/leaflet.css"
_INLINE = "gridserver-inline:"  # placeholder URL, replaced by the file's content after rendering

LEVEL_LABELS = {"district": "区", "street": "街道", "community": "社区", "grid": "网格"}
STATUS_LABELS = {"reported": "已上报", "accepted": "已受理", "assigned": "已派遣", "dispatched": "已派遣",
                 "processing": "处置中", "in_progress": "处置中", "resolved": "已处置", "verified": "已核查",
                 "closed": "已结案", "rejected": "不予受理"}

AREA_SQL = """
SELECT level, code, name, parent_code, ST_AsGeoJSON(geom, 6) AS geometry,
       ST_XMin(geom) AS xmin, ST_YMin(geom) AS ymin, ST_XMax(geom) AS xmax, ST_YMax(geom) AS ymax
FROM admin_areas WHERE code = %(code)s AND valid_to IS NULL
"""

# Codes are prefix-hierarchical: a grid's code starts with its community's, street's, district's.
GRIDS_SQL = """
SELECT code, name, parent_code, area_m2, ST_AsGeoJSON(geom, 6) AS geometry
FROM admin_areas
WHERE level = 'grid' AND valid_to IS NULL AND code LIKE %(prefix)s
ORDER BY code
"""

INCIDENTS_SQL = """
SELECT i.id, i.category, i.status, i.grid_code, i.description,
       to_char(i.created_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD HH24:MI') AS created_at,
       ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat
FROM incidents i, admin_areas a
WHERE a.code = %(code)s AND a.valid_to IS NULL AND ST_Intersects(i.geom, a.geom)
ORDER BY i.id
"""


@dataclass
class ExportResult:
    path: Path
    area_code: str
    area_name: str
    grids: int
    incidents: int
    offline: bool  # True when Leaflet is inlined and the file needs no network


def _like_prefix(code: str) -> str:
    return code.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _feature(geometry: str, props: dict) -> dict:
    return {"type": "Feature", "geometry": json.loads(geometry), "properties": props}


def load_area_data(conn, code: str, with_incidents: bool = True) -> tuple[dict, list[dict], list[dict]]:
    """The area, its grids (itself when it is a grid) and the incidents inside it, as GeoJSON features.

    Raises NotFound when no current area or grid has this code.
    """
    cur = conn.cursor()
    cur.execute(AREA_SQL, {"code": code})
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"no current admin area or grid with code {code!r} (未找到编码为 {code} 的区划或网格)")
    cols = [d.name for d in cur.description]
    area = dict(zip(cols, row))
    cur.execute(GRIDS_SQL, {"prefix": _like_prefix(code)})
    grids = [_feature(g, {"code": c, "name": n, "parent_code": p or "",
                          "area_ha": round(a / 1e4, 2) if a else None})
             for c, n, p, a, g in cur.fetchall()]
    incidents = []
    if with_incidents:
        cur.execute(INCIDENTS_SQL, {"code": code})
        for iid, cat, status, grid_code, desc, created, lon, lat in cur.fetchall():
            incidents.append({
                "type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
                "properties": {"id": iid, "category": cat, "category_label": category_label(cat),
                               "status": STATUS_LABELS.get(status, status), "grid_code": grid_code or "—",
                               "description": desc or "", "created_at": created,
                               "color": CATEGORY_COLORS.get(cat, DEFAULT_COLOR)},
            })
    return area, grids, incidents


def build_map(area: dict, grids: list[dict], incidents: list[dict]):
    """A folium Map of the area outline, its grids and incidents, with Chinese tooltips and no basemap."""
    import folium

    m = folium.Map(tiles=None, control_scale=True, prefer_canvas=True, zoom_control=True)
    # Only Leaflet itself is used; placeholders are swapped for the inlined files after rendering.
    m.default_js = [("leaflet", _INLINE + "leaflet.js")]
    m.default_css = [("leaflet_css", _INLINE + "leaflet.css")]
    title = f"{area['name']}（{area['code']}）网格图"
    m.get_root().title = title

    outline = folium.FeatureGroup(name=f"{LEVEL_LABELS.get(area['level'], area['level'])}边界", show=True)
    folium.GeoJson(
        _feature(area["geometry"], {"code": area["code"], "name": area["name"],
                                    "level": LEVEL_LABELS.get(area["level"], area["level"])}),
        style_function=lambda f: {"color": "#c62828", "weight": 3, "fill": False, "dashArray": "6 4"},
        tooltip=folium.GeoJsonTooltip(fields=["name", "code", "level"], aliases=["名称", "编码", "层级"]),
    ).add_to(outline)
    outline.add_to(m)

    if grids:
        layer = folium.FeatureGroup(name=f"网格（{len(grids)}）", show=True)
        folium.GeoJson(
            {"type": "FeatureCollection", "features": grids},
            style_function=lambda f: {"color": "#2e7d32", "weight": 1, "fillColor": "#a5d6a7", "fillOpacity": 0.35},
            highlight_function=lambda f: {"weight": 3, "color": "#e53935"},
            tooltip=folium.GeoJsonTooltip(fields=["code", "name", "parent_code", "area_ha"],
                                          aliases=["网格编码", "网格名称", "所属社区", "面积（公顷）"]),
        ).add_to(layer)
        layer.add_to(m)

    if incidents:
        layer = folium.FeatureGroup(name=f"事件（{len(incidents)}）", show=True)
        folium.GeoJson(
            {"type": "FeatureCollection", "features": incidents},
            marker=folium.CircleMarker(radius=5, weight=1, color="#ffffff", fill=True, fill_opacity=0.9),
            style_function=lambda f: {"fillColor": f["properties"]["color"], "color": "#ffffff"},
            tooltip=folium.GeoJsonTooltip(fields=["id", "category_label", "status", "grid_code", "created_at",
                                                  "description"],
                                          aliases=["事件编号", "类别", "状态", "网格编码", "上报时间", "描述"]),
        ).add_to(layer)
        layer.add_to(m)

    # collapsed=False: the collapsed control needs Leaflet's layers.png, which we do not ship inline
    folium.LayerControl(collapsed=False).add_to(m)
    m.fit_bounds([[area["ymin"], area["xmin"]], [area["ymax"], area["xmax"]]])
    header = (f'<div style="position:fixed;top:10px;left:60px;z-index:1000;background:rgba(255,255,255,.92);'
              f'padding:6px 12px;border-radius:4px;box-shadow:0 1px 4px rgba(0,0,0,.3);font:15px sans-serif">'
              f'<b>{html.escape(title)}</b><br><span style="font-size:12px;color:#555">'
              f'网格 {len(grids)} 个 · 事件 {len(incidents)} 件 · gridserver 导出</span></div>')
    m.get_root().html.add_child(folium.Element(header))
    return m


def _inline_assets(page: str) -> tuple[str, bool]:
    """Replace the placeholder links with Leaflet's JS/CSS inline; CDN links when the build is missing."""
    js_file, css_file = LEAFLET_DIR / "leaflet.js", LEAFLET_DIR / "leaflet.css"
    offline = js_file.is_file() and css_file.is_file()
    if offline:
        js = js_file.read_text(encoding="utf-8").replace("</script", "<\\/script")
        css = css_file.read_text(encoding="utf-8")
        js_tag, css_tag = f"<script>{js}</script>", f"<style>{css}</style>"
    else:
        js_tag = f'<script src="{_CDN_LEAFLET_JS}"></script>'
        css_tag = f'<link rel="stylesheet" href="{_CDN_LEAFLET_CSS}"/>'
    page = re.sub(r'<script src="' + re.escape(_INLINE) + r'leaflet\.js"></script>', lambda _: js_tag, page)
    page = re.sub(r'<link rel="stylesheet" href="' + re.escape(_INLINE) + r'leaflet\.css"\s*/?>', lambda _: css_tag, page)
    if _INLINE in page:
        raise RuntimeError("folium's resource links changed shape: could not inline Leaflet")
    return page, offline


def export_area_map(code: str, out: Path, *, incidents: bool = True, conn=None) -> ExportResult:
    """Write the static HTML map of area ``code`` to ``out`` and say what went in.

    Raises NotFound for an unknown code. The file is standalone; it is fully offline when the
    front-end build (with its Leaflet copy) is present, see ExportResult.offline.
    """
    if conn is None:
        from gridserver.db.engine import pool

        with pool().connection() as c:
            area, grids, points = load_area_data(c, code, incidents)
    else:
        area, grids, points = load_area_data(conn, code, incidents)
    page, offline = _inline_assets(build_map(area, grids, points).get_root().render())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return ExportResult(out, area["code"], area["name"], len(grids), len(points), offline)


def export_command(
    area: str = typer.Option(..., "--area", help="区划或网格编码 area code (district 6 / street 9 / community 12 / grid 15 digits)"),
    out: Path = typer.Option(..., "--out", help="输出 HTML 文件 output HTML file"),
    incidents: bool = typer.Option(True, "--incidents/--no-incidents", help="包含事件点 include incidents"),
):
    """导出静态网格地图 HTML：an area's grids and incidents as one standalone HTML file (no basemap)."""
    try:
        result = export_area_map(area.strip(), out, incidents=incidents)
    except NotFound as exc:
        typer.echo(f"错误 error: {exc.detail}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"已导出 {result.area_name}（{result.area_code}）：网格 {result.grids} 个，事件 {result.incidents} 件 → {result.path}")
    if not result.offline:
        typer.echo("注意 warning: Leaflet 未内嵌，打开文件需要联网 (the file loads Leaflet from a CDN); "
                   "run `cd web && npm install && npm run build` to embed it.", err=True)
