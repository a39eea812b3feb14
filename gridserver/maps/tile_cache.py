"""In-process cache of area tiles (districts, streets, communities, grids), keyed by the areas revision.

Area tiles change only when ``admin_areas`` changes, and every change bumps
``gridserver_meta.areas_revision`` (a trigger, migration 0001). A cached tile is keyed by
(layer, z, x, y, revision): each request reads the revision (one indexed single-row SELECT on the
connection it already holds, much cheaper than ``ST_AsMVT``), so a changed area is never served from
the cache — the old revision's entries simply stop matching and age out. Only public area layers
are cached (never incidents: those depend on the caller). Least recently used tiles are dropped
beyond ``MAX_BYTES``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

REVISION_SQL = "SELECT value FROM gridserver_meta WHERE key = 'areas_revision'"
MAX_BYTES = 64 * 1024 * 1024

_lock = threading.Lock()
_tiles: OrderedDict[tuple, bytes] = OrderedDict()
_state = {"bytes": 0, "hits": 0, "misses": 0}


def get_or_render(conn, spec, z: int, x: int, y: int, render) -> bytes:
    """The tile's bytes: from the cache for area layers at the current revision, else ``render()``."""
    if getattr(spec, "kind", "area") != "area":
        return render()
    row = conn.execute(REVISION_SQL).fetchone()
    info = conn.info  # the database too: a process may switch databases (tests, benches)
    key = (info.host, info.port, info.dbname, spec.name, z, x, y, int(row[0]) if row else 0)
    with _lock:
        data = _tiles.get(key)
        if data is not None:
            _tiles.move_to_end(key)
            _state["hits"] += 1
            return data
    data = render()
    with _lock:
        _state["misses"] += 1
        if key not in _tiles and len(data) <= MAX_BYTES:
            _tiles[key] = data
            _state["bytes"] += len(data)
            while _state["bytes"] > MAX_BYTES:
                _, old = _tiles.popitem(last=False)
                _state["bytes"] -= len(old)
    return data


def stats() -> dict:
    with _lock:
        return {**_state, "tiles": len(_tiles)}


def clear() -> None:
    with _lock:
        _tiles.clear()
        _state.update(bytes=0, hits=0, misses=0)
