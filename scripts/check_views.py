#!/usr/bin/env python3
"""Browser check of the map views against a running gridserver (any database, e.g. the full-scale city).

Opens /screen at 3840×2160 and 1920×1080 and /map and /m/ at 360×740 in Debian's Chromium (headless,
WebGL through SwiftShader) and records, per view: console errors and page errors, failed requests,
requests leaving the server's host, the first-render time (navigation start → the map has loaded its
style and tiles and stopped moving), the largest tiles (bytes on the wire and decoded), what the map
drew (rendered features per source layer), the smallest text on screen, and a screenshot.

Service workers are blocked (the phone app's would otherwise pre-fetch its grid's tiles in the
background); the offline behaviour has its own browser tests. It builds and changes nothing: it only logs in (a staff account for /screen and /map, a grid worker for
/m/) and reads. Screenshots and report.json go to --out (default gis_data/screenshots/check_views,
git-ignored). Exit status 1 when a view has console errors, failed or foreign requests, or never drew.

    .venv/bin/python scripts/check_views.py --url http://127.0.0.1:18411 \\
        --user admin --password … --worker-user wang --worker-password …
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-sandbox", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

# name, path, width, height, account ("staff" | "worker"), the page's MapLibre map object
VIEWS = [
    ("screen-3840x2160", "/screen", 3840, 2160, "staff", "__screenMap"),
    ("screen-1920x1080", "/screen", 1920, 1080, "staff", "__screenMap"),
    ("map-360x740", "/map", 360, 740, "staff", "__gridmap"),
    ("m-360x740", "/m/", 360, 740, "worker", "__mobileMap"),
]

# page-specific "ready" flags, then the same idle test for every map
READY = {"/screen": "window.__screenState && window.__screenState.ready",
         "/map": "window.__gridmapState && window.__gridmapState.ready",
         "/m/": "window.__mobileState && window.__mobileState.ready && window.__mobileState.view === 'app'"}

DRAWN_JS = """(name) => { const m = window[name]; const by = {};
  for (const f of m.queryRenderedFeatures()) { const k = f.sourceLayer || f.source; by[k] = (by[k] || 0) + 1; }
  return {zoom: Math.round(m.getZoom() * 100) / 100, features: by}; }"""

# every visible element that holds text directly: its font size in CSS px (the smallest = hardest to read)
TEXT_JS = """() => { const sizes = [];
  for (const el of document.querySelectorAll('body *')) {
    if (![...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim())) continue;
    const r = el.getBoundingClientRect(); const cs = getComputedStyle(el);
    if (!r.width || !r.height || cs.visibility === 'hidden' || cs.display === 'none' || r.bottom < 0 || r.top > innerHeight) continue;
    sizes.push(parseFloat(cs.fontSize)); }
  sizes.sort((a, b) => a - b);
  return {elements: sizes.length, min_px: sizes[0] || null, median_px: sizes[Math.floor(sizes.length / 2)] || null,
          scroll: [document.documentElement.scrollWidth > innerWidth + 1, document.documentElement.scrollHeight > innerHeight + 1]}; }"""


def login(base: str, username: str, password: str) -> str:
    import httpx

    r = httpx.post(base + "/api/v1/auth/token", data={"username": username, "password": password}, timeout=60)
    if r.status_code != 200:
        sys.exit(f"login as {username!r} failed: HTTP {r.status_code} {r.text[:200]}")
    return r.json()["access_token"]


def check_view(browser, base: str, view: tuple, token: str, out: Path, timeout_ms: int, settle_ms: int) -> dict:
    name, path, width, height, _, map_name = view
    phone = width < 800
    ctx = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN", is_mobile=phone,
                              has_touch=phone, service_workers="block")
    ctx.add_init_script(f"localStorage.setItem('gridserver.token', {json.dumps(token)});")
    page = ctx.new_page()
    host = urlparse(base).hostname
    errors, failed, foreign, tiles = [], [], [], []
    page.on("console", lambda m: errors.append(m.text[:300]) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"[:300]))
    # ERR_ABORTED: a tile MapLibre cancelled itself (moved on), not a failure
    page.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED" else failed.append(f"{r.url} {r.failure}"))

    def on_request(r):
        u = urlparse(r.url)
        if u.scheme in ("http", "https", "ws", "wss") and u.hostname != host:
            foreign.append(r.url)

    page.on("request", on_request)
    page.on("requestfinished", lambda r: tiles.append(r) if "/tiles/" in r.url and r.url.endswith(".mvt") else None)
    result = {"view": name, "url": base + path, "viewport": [width, height]}
    t0 = time.monotonic()
    try:
        page.goto(base + path, wait_until="domcontentloaded", timeout=timeout_ms)
        result["dom_ms"] = round((time.monotonic() - t0) * 1000)
        page.wait_for_function(f"() => {READY[path]}", timeout=timeout_ms)
        # first render: ms since navigation start when the map has its tiles and stands still
        handle = page.wait_for_function(
            f"""() => {{ const m = window.{map_name};
                 return m && m.loaded() && m.areTilesLoaded() && !m.isMoving() ? performance.now() : false; }}""",
            timeout=timeout_ms, polling=50)
        result["first_render_ms"] = round(handle.json_value())
        page.wait_for_timeout(settle_ms)  # live layers, panels, fonts
        result["drawn"] = page.evaluate(DRAWN_JS, map_name)
        result["text"] = page.evaluate(TEXT_JS)
        if path == "/screen":
            result["kpi"] = page.evaluate("() => Object.fromEntries([...document.querySelectorAll('[data-kpi]')]"
                                          ".map(e => [e.dataset.kpi, e.textContent.trim()]))")
        if path == "/m/":
            result["worker"] = page.evaluate("() => ({grid: document.querySelector('#grid-name').textContent, "
                                             "tasks: window.__mobileState.tasks.length})")
    except Exception as err:  # a view that never got ready is a finding, not a crash of the check
        result["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    shot = out / f"{name}.png"
    page.screenshot(path=str(shot))
    sizes = []
    for r in tiles:
        try:
            s = r.sizes()
            resp = r.response()
        except Exception:  # noqa: BLE001 - a request that went away
            continue
        sizes.append({"url": r.url[len(base):], "wire_bytes": s["responseBodySize"],
                      "decoded_bytes": len(resp.body()) if resp and resp.status == 200 else 0,
                      "status": resp.status if resp else None})
    sizes.sort(key=lambda x: x["wire_bytes"], reverse=True)
    result.update(screenshot=str(shot), console_errors=errors, failed_requests=failed, foreign_requests=foreign,
                  tiles={"count": len(sizes), "wire_bytes_total": sum(x["wire_bytes"] for x in sizes),
                         "largest": sizes[:5]})
    ctx.close()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000", help="the running gridserver (default %(default)s)")
    ap.add_argument("--user", required=True, help="staff account for /screen and /map (admin or analyst sees everything)")
    ap.add_argument("--password", required=True)
    ap.add_argument("--worker-user", help="grid_worker account for /m/ (skipped when missing)")
    ap.add_argument("--worker-password")
    ap.add_argument("--out", type=Path, default=ROOT / "gis_data" / "screenshots" / "check_views",
                    help="screenshots and report.json (default %(default)s, git-ignored)")
    ap.add_argument("--views", default=",".join(v[0] for v in VIEWS), help="comma list of views (default: all)")
    ap.add_argument("--timeout", type=float, default=180, help="seconds a view may take to draw (default %(default)s)")
    ap.add_argument("--settle", type=float, default=2, help="seconds to wait after the first render (default %(default)s)")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    base = args.url.rstrip("/")
    wanted = set(args.views.split(","))
    tokens = {"staff": login(base, args.user, args.password)}
    if args.worker_user:
        tokens["worker"] = login(base, args.worker_user, args.worker_password or "")
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        for view in VIEWS:
            if view[0] not in wanted:
                continue
            if view[4] not in tokens:
                results.append({"view": view[0], "skipped": "no --worker-user"})
                continue
            r = check_view(browser, base, view, tokens[view[4]], args.out, int(args.timeout * 1000), int(args.settle * 1000))
            results.append(r)
            big = r["tiles"]["largest"][0] if r["tiles"]["largest"] else {}
            print(f"{r['view']:18} first render {r.get('first_render_ms', '-'):>6} ms · {r['tiles']['count']:4} tiles "
                  f"{r['tiles']['wire_bytes_total'] / 1024:8.0f} KB · largest {big.get('wire_bytes', 0) / 1024:6.1f} KB "
                  f"({big.get('url', '')}) · errors {len(r['console_errors'])} · failed {len(r['failed_requests'])} · "
                  f"foreign {len(r['foreign_requests'])}{' · ' + r['error'] if 'error' in r else ''}", flush=True)
        browser.close()
    (args.out / "report.json").write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"screenshots and report.json in {args.out}")
    bad = [r["view"] for r in results if "skipped" not in r and (
        "error" in r or r["console_errors"] or r["failed_requests"] or r["foreign_requests"]
        or not r.get("drawn", {}).get("features"))]
    if bad:
        print("problems in: " + ", ".join(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
