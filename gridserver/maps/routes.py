"""HTTP routes of the maps domain: vector tiles, their layer list, the /map page and its assets.

The tile path is kept thin on purpose: a pooled psycopg connection, one SQL statement, the bytes
PostGIS returns go straight into the response.
"""

from __future__ import annotations

import gzip
import mimetypes
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Depends, Path as PathParam, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from starlette.concurrency import run_in_threadpool

from gridserver.auth.deps import oauth2_scheme, optional_user
from gridserver.auth.users import User
from gridserver.db.engine import pool, session_scope
from gridserver.errors import NotFound, Unauthorized
from gridserver.maps import tile_cache, tiles

router = APIRouter(tags=["地图 maps"])

MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
GZIP_MIN_BYTES = 1024  # smaller tiles gain too little to be worth compressing
HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
DIST_DIR = STATIC_DIR / "dist"
TEMPLATE = HERE / "templates" / "map.html"

# `npm install`, not `npm ci`: the registry reachable here serves only this platform's optional
# rollup/esbuild binaries, so the lock cannot list the others and `npm ci` refuses it.
BUILD_HINT = "cd web && npm install --no-audit --no-fund && npm run build   (或 make setup)"


@router.get("/tiles/layers.json", summary="瓦片图层列表 tile layers (TileJSON-like)")
def tile_layers(request: Request, user: User | None = Depends(optional_user)):
    """Every tile layer with its URL template, zoom range, feature count and data bounds.

    Area and basemap layers are public. The incidents layer is listed for everyone (it needs a
    token) but its count and bounds appear only with a token, restricted to what the caller may read.
    """
    viewer = tiles.Viewer.of(user) if user is not None else None
    with pool().connection() as conn:
        doc = tiles.layers_document(conn, str(request.base_url), viewer)
    return JSONResponse(doc, headers={"Cache-Control": "private, no-cache", "Vary": "Authorization"})


@router.get("/tiles/basemap.pmtiles", summary="底图归档 the pre-built basemap archive (PMTiles)",
            response_class=FileResponse)
def basemap_archive_file():
    """The single-file archive made by ``gridserver tiles build`` (404 until built), for any PMTiles tool."""
    from gridserver.maps.basemap_archive import archive_path

    path = archive_path()
    if not path.is_file():
        raise NotFound("no basemap archive yet: run `gridserver tiles build`", code="no_archive")
    return FileResponse(path, media_type="application/vnd.pmtiles", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/tiles/basemap/{z}/{x}/{y}.mvt", summary="预制底图瓦片 a tile of the pre-built basemap",
            response_class=Response, responses={200: {"content": {MVT_MEDIA_TYPE: {}}}})
def basemap_tile(request: Request, z: int, x: int, y: int):
    """A tile read from the PMTiles archive (public; several MVT layers); 204 outside it, 404 before it is built."""
    from gridserver.maps.basemap_archive import open_archive

    tiles.check_tile(z, x, y)
    archive = open_archive()
    if archive is None:
        raise NotFound("no basemap archive yet: run `gridserver tiles build`", code="no_archive")
    return tile_response(archive.get(z, x, y), 3600, request.headers.get("if-none-match"),
                         accept_encoding=request.headers.get("accept-encoding"))


#: Scope key under which ``fast_tiles`` hands over the exception of a tile it failed to make.
TILE_ERROR = "gridserver.tile_error"


async def _caller(token: str | None = Depends(oauth2_scheme)) -> User | None:
    """``optional_user`` for tiles: anonymous callers (most tile requests) cost no ORM session and no
    thread hop; a token is checked as everywhere (a bad one is a 401, also on public layers)."""
    if not token:
        return None

    def check() -> User | None:
        with session_scope() as session:
            return optional_user(token, session)

    return await run_in_threadpool(check)


@router.get(
    "/tiles/{layer}/{z}/{x}/{y}.mvt",
    summary="矢量瓦片 vector tile (MVT)",
    response_class=Response,
    responses={200: {"content": {MVT_MEDIA_TYPE: {}}}, 204: {"description": "空瓦片 empty tile"}},
)
async def vector_tile(
    request: Request,
    layer: str = PathParam(..., description="图层 districts | streets | communities | grids | roads | landuse | "
                                             "buildings (public) | incidents (token)"),
    z: int = PathParam(..., description="缩放级别 zoom 0–24"),
    x: int = PathParam(..., description="列号 tile column"),
    y: int = PathParam(..., description="行号 tile row (XYZ, north = 0)"),
    status: str | None = Query(None, description="仅事件图层：按状态过滤，逗号分隔 e.g. reported,assigned"),
    user: User | None = Depends(_caller),
):
    """One Mapbox Vector Tile; 204 when nothing is in it, 304 when the client's ETag still matches.

    ``incidents`` needs a bearer token (401 without) and holds only the incidents the caller may
    read, clustered up to z14 (``incidents_cluster`` layer) and as points deeper; served with
    ``Cache-Control: private``.

    Area layers are public and cached per areas revision (``tile_cache``); a cache hit at a fresh
    revision is usually answered before FastAPI by ``fast_tiles``, else here without a thread hop.
    The database work (one SQL statement for a rendered tile, plus the revision once per
    ``tile_revision_ttl``) runs in one thread-pool call on a pooled psycopg connection.
    """
    failed = request.scope.get(TILE_ERROR)
    if failed is not None:  # fast_tiles ran this request's database work and it failed: answer as here
        raise failed
    spec = tiles.get_layer(layer)
    tiles.check_tile(z, x, y)
    inm, accept = request.headers.get("if-none-match"), request.headers.get("accept-encoding")
    if spec.name in tiles.PRIVATE_LAYERS:
        if user is None:
            raise Unauthorized(f"图层 {spec.name} 需要登录 the {spec.name} tile layer needs a token: send "
                               "'Authorization: Bearer <token>' (get one from POST /api/v1/auth/token)")
        viewer = tiles.Viewer.of(user)
        statuses = tiles.parse_statuses(status) if spec.kind == "incidents" else None
        data = await run_in_threadpool(_render, spec, z, x, y, statuses, viewer)
        return tile_response(data, spec.max_age, inm, private=True, accept_encoding=accept)
    if spec.kind != "area":
        data = await run_in_threadpool(_render, spec, z, x, y, None, None)
        return tile_response(data, spec.max_age, inm, accept_encoding=accept)
    entry = tile_cache.lookup_fresh(spec.name, z, x, y)
    if entry is None:
        entry = await run_in_threadpool(area_entry, spec, z, x, y)
    return PrebuiltResponse(entry.pick(inm, accept))


def _render(spec, z, x, y, statuses, viewer) -> bytes:
    with pool().connection() as conn:
        return tiles.render_tile(conn, spec, z, x, y, statuses, viewer)


def area_entry(spec, z, x, y) -> tile_cache.Entry:
    """A public area tile from the cache at the current areas revision, rendered on a miss (blocking)."""
    p = pool()
    with p.connection() as conn:
        return tile_cache.get_or_render(conn, p.conninfo, spec, z, x, y, lambda: tiles.render_tile(conn, spec, z, x, y))


class PrebuiltResponse(Response):
    """A response whose status, raw headers and body were made before (tile_cache entries)."""

    def __init__(self, raw: tile_cache.Raw):
        self.status_code, self.raw_headers, self.body = raw
        self.background = None


def tile_response(data: bytes, max_age: int, if_none_match: str | None = None, private: bool = False,
                  accept_encoding: str | None = None) -> Response:
    """The HTTP response for tile bytes: 200 with the MVT, 204 if empty, 304 if the ETag matches.

    ``private``: per-caller content, cacheable by the browser only (never a shared cache).
    ``accept_encoding``: the client's Accept-Encoding; tiles over ``GZIP_MIN_BYTES`` go gzip-encoded
    when it allows gzip (full-scale building tiles at z15 shrink about 3×, 250 → 75 KB).
    """
    headers = {"Cache-Control": f"{'private' if private else 'public'}, max-age={max_age}",
               "Vary": "Authorization, Accept-Encoding" if private else "Accept-Encoding"}
    if not data:
        return Response(status_code=204, headers=headers)
    tag = tiles.etag(data)
    headers["ETag"] = tag
    if if_none_match and tag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    if len(data) >= GZIP_MIN_BYTES and _accepts_gzip(accept_encoding):
        headers["Content-Encoding"] = "gzip"
        data = gzip.compress(data, compresslevel=5, mtime=0)
    return Response(data, media_type=MVT_MEDIA_TYPE, headers=headers)


def _accepts_gzip(accept_encoding: str | None) -> bool:
    """True when an Accept-Encoding header lists gzip (or *) without ``q=0``."""
    for part in (accept_encoding or "").split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            q = params.replace(" ", "").lower()
            return not (q.startswith("q=0") and q.strip("q=0.") == "")
    return False


# --- the map page -------------------------------------------------------------------------------

def assets_built() -> bool:
    """True when the front-end bundle (web/ built by vite) is present."""
    return (DIST_DIR / "map.js").is_file() and (DIST_DIR / "map.css").is_file()


@router.get("/map", response_class=HTMLResponse, summary="网格化管理地图 the map page", include_in_schema=False)
def map_page():
    """The MapLibre map page; 503 with the build command when the front-end has not been built."""
    if not assets_built():
        return HTMLResponse(
            "<!doctype html><meta charset='utf-8'><title>网格化管理地图</title>"
            f"<p>地图前端尚未构建 (front-end assets missing in {DIST_DIR}).</p><p>请运行：<code>{BUILD_HINT}</code></p>",
            status_code=503,
        )
    # The asset version makes browsers refetch after a rebuild, though the file names stay put.
    version = int(max((DIST_DIR / f).stat().st_mtime for f in ("map.js", "map.css")))
    html = TEMPLATE.read_text(encoding="utf-8").replace("{{version}}", str(version))
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".map": "application/json",
          ".json": "application/json", ".png": "image/png", ".svg": "image/svg+xml", ".wasm": "application/wasm",
          ".txt": "text/plain; charset=utf-8"}


_COMPRESSIBLE = {".js", ".mjs", ".css", ".map", ".json", ".svg", ".txt"}


@lru_cache(maxsize=64)
def _gzipped(path: str, mtime_ns: int) -> bytes:
    """The gzip body of a built asset, made once per file version (vendor.js: 1.09 MB → 0.3 MB)."""
    return gzip.compress(Path(path).read_bytes(), compresslevel=6, mtime=0)


@router.get("/static/map/{path:path}", include_in_schema=False)
def static_asset(path: str, request: Request):
    """A file of the built front-end (gridserver/maps/static), never anything outside it.

    ``no-cache`` with an ETag: the browser revalidates each load and gets a 304 while the file is
    unchanged; text assets go gzip-encoded when the client accepts it (a phone loads 0.3 MB, not 1.2).
    """
    root = STATIC_DIR.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise NotFound(f"no static map asset {path!r}" + ("" if assets_built() else f"; build it: {BUILD_HINT}"))
    media_type = _TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    st = target.stat()
    tag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    headers = {"Cache-Control": "no-cache", "ETag": tag, "Vary": "Accept-Encoding"}
    if_none_match = request.headers.get("if-none-match") or ""
    if tag in [t.strip().removeprefix("W/") for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    if target.suffix in _COMPRESSIBLE and _accepts_gzip(request.headers.get("accept-encoding")):
        headers["Content-Encoding"] = "gzip"
        return Response(_gzipped(str(target), st.st_mtime_ns), media_type=media_type, headers=headers)
    return FileResponse(target, media_type=media_type, headers=headers)
