"""Pure-ASGI fast path for public area tiles, in front of FastAPI's routing and dependencies.

``GET /tiles/<districts|streets|communities|grids>/{z}/{x}/{y}.mvt`` without a query string and
without an ``Authorization`` header (what the map sends for area layers) is answered here:

* when ``tile_cache`` holds the tile at a revision read less than ``tile_revision_ttl`` seconds
  ago: the finished response goes out in two ASGI messages — no database access, no thread hop;
* else the route's own ``area_entry`` (revision check when due, cache, one tile SQL) runs in
  **one** thread-pool call — FastAPI would add a thread hop per sync dependency.

Responses are the route's (``tile_cache.Entry`` is built by ``routes.tile_response``): ETag,
``Cache-Control: public``, gzip when accepted, 304 on ``If-None-Match``, 204 when empty. When the
database work fails (down, statement timeout), the request goes on to the app with the exception
in the scope and the route raises it, so the app's handlers answer as for any route (503 +
Retry-After): nothing is run twice. Everything else (a token — the route checks it, a bad one is a
401 —, a query string, another method, an unknown layer, a tile outside the matrix, a
non-canonical number like ``014``) passes to the app unchanged.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from gridserver.errors import GridserverError
from gridserver.maps import tile_cache, tiles
from gridserver.maps.routes import TILE_ERROR, area_entry
from gridserver.maps.tiles import LAYERS, PRIVATE_LAYERS

#: The layers tile_cache holds: public area layers.
AREA_LAYERS = frozenset(n for n, spec in LAYERS.items() if spec.kind == "area" and n not in PRIVATE_LAYERS)
_PREFIX = "/tiles/"
_SUFFIX = ".mvt"


def _number(s: str) -> int | None:
    if s.isdigit() and s.isascii() and (s == "0" or s[0] != "0") and len(s) <= 8:
        return int(s)
    return None


def parse(path: str, headers) -> tuple[str, int, int, int, str | None, str | None] | None:
    """(layer, z, x, y, If-None-Match, Accept-Encoding) of an anonymous public area tile request, else None."""
    parts = path[len(_PREFIX):-len(_SUFFIX)].split("/")
    if len(parts) != 4 or parts[0] not in AREA_LAYERS:
        return None
    z, x, y = _number(parts[1]), _number(parts[2]), _number(parts[3])
    if z is None or x is None or y is None:
        return None
    inm = accept = None
    for name, value in headers:
        if name == b"authorization":
            return None  # the route checks the token (a bad one is a 401 even on public layers)
        if name == b"if-none-match":
            inm = value.decode("latin-1")
        elif name == b"accept-encoding":
            accept = value.decode("latin-1")
    return parts[0], z, x, y, inm, accept


class AreaTileFastPath:
    """ASGI middleware: anonymous public area tiles answered before the app (see the module docstring)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("query_string"):
            path = scope["path"]
            if path.startswith(_PREFIX) and path.endswith(_SUFFIX):
                target = parse(path, scope["headers"])
                if target is not None:
                    layer, z, x, y, inm, accept = target
                    entry = tile_cache.lookup_fresh(layer, z, x, y)
                    if entry is None:
                        try:
                            tiles.check_tile(z, x, y)
                        except GridserverError:
                            return await self.app(scope, receive, send)  # the route words the 422
                        try:
                            entry = await run_in_threadpool(area_entry, LAYERS[layer], z, x, y)
                        except Exception as exc:  # noqa: BLE001 - the app's handlers answer it (503 …)
                            scope = {**scope, TILE_ERROR: exc}
                            return await self.app(scope, receive, send)
                    status, headers, body = entry.pick(inm, accept)
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)
