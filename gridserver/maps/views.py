"""The map views for people: the command-center wall (``/screen``) and the grid-worker phone app
(``/m/``), plus the live event stream and patrol API they use.

Pages are vite-built bundles (``web/src/screen.js``, ``web/src/mobile.js``) with small HTML shells
in ``templates/``; everything is served from this process (no CDN).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from gridserver.maps import live, patrols, screen
from gridserver.maps.routes import BUILD_HINT, DIST_DIR, HERE, static_asset

router = APIRouter()
router.include_router(live.router)
router.include_router(patrols.router)
router.include_router(screen.router)

TEMPLATES = HERE / "templates"


def _page(template: str, bundle: str, title: str) -> HTMLResponse:
    files = [DIST_DIR / f"{bundle}.js"]
    if not all(f.is_file() for f in files):
        return HTMLResponse(
            f"<!doctype html><meta charset='utf-8'><title>{title}</title>"
            f"<p>前端尚未构建 (front-end assets missing in {DIST_DIR}).</p><p>请运行：<code>{BUILD_HINT}</code></p>",
            status_code=503,
        )
    version = int(max(f.stat().st_mtime for f in DIST_DIR.glob(f"{bundle}.*")))
    html = (TEMPLATES / template).read_text(encoding="utf-8").replace("{{version}}", str(version))
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("/screen", response_class=HTMLResponse, include_in_schema=False)
def screen_page():
    """指挥大屏: the dark command-center wall (3840×2160 / 1920×1080)."""
    return _page("screen.html", "screen", "网格化指挥中心")


@router.get("/m/", response_class=HTMLResponse, include_in_schema=False)
@router.get("/m", response_class=HTMLResponse, include_in_schema=False)
def mobile_page():
    """网格员移动端: the phone app (360×740), installable as a PWA."""
    return _page("mobile.html", "mobile", "网格员")


@router.get("/track", response_class=HTMLResponse, include_in_schema=False)
def track_page():
    """诉求进度查询: a citizen follows and rates their report by its tracking code (no account)."""
    return _page("track.html", "track", "诉求进度查询")


@router.get("/m/sw.js", include_in_schema=False)
def service_worker():
    """The PWA service worker, served from /m/ so its scope is the phone app."""
    return FileResponse(DIST_DIR / "sw.js", media_type="text/javascript",
                        headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/"})


@router.get("/m/maplibre-gl-worker.mjs", include_in_schema=False)
def map_worker(request: Request):
    """MapLibre's worker script for the phone app, served inside the service worker's scope (/m/).

    A dedicated worker is a service-worker client of its own, matched by its script URL: from
    /static/map/dist/ it is outside /m/, so offline its script could not come from the cache (the map
    never drew) and its tile requests bypassed the tile cache. From /m/ both go through sw.js.
    """
    return static_asset("dist/maplibre-gl-worker.mjs", request)


@router.get("/m/manifest.webmanifest", include_in_schema=False)
def manifest():
    return FileResponse(TEMPLATES / "manifest.webmanifest", media_type="application/manifest+json",
                        headers={"Cache-Control": "no-cache"})
