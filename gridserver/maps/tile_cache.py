"""In-process cache of area tiles (districts, streets, communities, grids), keyed by the areas revision.

Area tiles change only when ``admin_areas`` changes, and every change bumps
``gridserver_meta.areas_revision`` (a trigger, migration 0001). A cached tile is keyed by
(database, layer, z, x, y, revision), so a tile of an older revision is never served once the
newer revision is known: its entries simply stop matching and age out (least recently used first,
beyond ``MAX_BYTES``). Only public area layers are cached (never incidents: those depend on the
caller).

**Revision without a round trip per request (short TTL, correct across processes).** Each process
remembers the revision it last read and *when it started reading it*. For ``tile_revision_ttl``
seconds (setting, default 1 s) after that moment, requests use the remembered revision and do not
ask the database; after it, the next request re-reads it (one tiny indexed SELECT on the
connection it already holds). Every process (``serve --workers N``) does this on its own, so an
area change made anywhere (another worker, another server, psql) is served by every process at
most ``tile_revision_ttl`` seconds after it committed; browsers cache area tiles for 600 s anyway
(``Cache-Control: public, max-age=600``). ``tile_revision_ttl = 0`` re-reads the revision on
every request (the test suite runs so). While the revision is fresh, a cache hit needs no database
at all, and ``maps/fast_tiles.py`` answers it before FastAPI routing; after the TTL it goes the
normal way (which answers 503 while the database is down).

Each entry holds its finished responses (200, 200 gzip-encoded, 304, or 204 when empty) with
the very headers ``routes.tile_response`` makes, so a hit costs a dict lookup: no ETag hashing and
no gzip per request.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

REVISION_SQL = "SELECT value FROM gridserver_meta WHERE key = 'areas_revision'"
MAX_BYTES = 64 * 1024 * 1024

#: (status, raw ASGI headers, body) of one finished response.
Raw = tuple[int, list[tuple[bytes, bytes]], bytes]


class Entry:
    """A tile and its finished responses (the 304 and the gzip-encoded one made on first demand)."""

    __slots__ = ("data", "max_age", "etag", "plain", "_not_modified", "_gzipped")

    def __init__(self, data: bytes, max_age: int):
        from gridserver.maps.routes import tile_response  # the one home of the tile headers

        self.data, self.max_age = data, max_age
        self.plain: Raw = _raw(tile_response(data, max_age))  # 200 identity, or 204 when empty
        self.etag: str | None = dict(self.plain[1])[b"etag"].decode("latin-1") if data else None
        self._not_modified: Raw | None = None
        self._gzipped: Raw | None = None

    def not_modified(self) -> Raw:
        """304 for a matching If-None-Match (made on first demand)."""
        if self._not_modified is None:
            from gridserver.maps.routes import tile_response

            self._not_modified = _raw(tile_response(self.data, self.max_age, if_none_match=self.etag))
        return self._not_modified

    def gzipped(self) -> Raw:
        """200 gzip-encoded (the plain response when the tile is too small to be compressed)."""
        if self._gzipped is None:  # two threads may both make it: same bytes, no harm
            from gridserver.maps.routes import tile_response

            self._gzipped = _raw(tile_response(self.data, self.max_age, accept_encoding="gzip"))
        return self._gzipped

    def pick(self, if_none_match: str | None, accept_encoding: str | None) -> Raw:
        """The response ``routes.tile_response`` makes for these request headers."""
        if self.etag is None:
            return self.plain
        if if_none_match and self.etag in [t.strip() for t in if_none_match.split(",")]:
            return self.not_modified()
        if accept_encoding and len(self.data) >= _gzip_min():
            from gridserver.maps.routes import _accepts_gzip

            if _accepts_gzip(accept_encoding):
                return self.gzipped()
        return self.plain

    def size(self) -> int:
        """Bytes to account for: the tile twice (identity and, at most as large, gzip-encoded)."""
        return 2 * len(self.data) + 512


def _raw(resp) -> Raw:
    return resp.status_code, resp.raw_headers, bytes(resp.body)


def _gzip_min() -> int:
    from gridserver.maps.routes import GZIP_MIN_BYTES

    return GZIP_MIN_BYTES


_lock = threading.Lock()
_tiles: OrderedDict[tuple, Entry] = OrderedDict()
_state = {"bytes": 0, "hits": 0, "misses": 0, "fast_hits": 0, "revision_reads": 0}
#: database key -> (revision, monotonic time the read of it started)
_revisions: dict[str, tuple[int, float]] = {}
#: The database the last request used; the fast path serves only that one.
_current: dict[str, str | None] = {"db": None}


def _ttl() -> float:
    from gridserver.settings import get_settings

    return max(0.0, float(get_settings().tile_revision_ttl))


def fresh_revision(db: str, now: float | None = None) -> int | None:
    """The remembered areas revision of ``db`` while younger than the TTL, else None."""
    known = _revisions.get(db)
    if known is None:
        return None
    if (time.monotonic() if now is None else now) - known[1] < _ttl():
        return known[0]
    return None


def current_revision(conn, db: str) -> int:
    """The areas revision: remembered if fresh, else read on ``conn`` (and remembered)."""
    rev = fresh_revision(db)
    if rev is not None:
        return rev
    started = time.monotonic()
    row = conn.execute(REVISION_SQL).fetchone()
    rev = int(row[0]) if row else 0
    with _lock:
        _state["revision_reads"] += 1
        old = _revisions.get(db)
        if old is None or old[1] <= started:  # never replace a read that started later
            _revisions[db] = (rev, started)
        _current["db"] = db
    return rev


def _get(key: tuple, fast: bool = False) -> Entry | None:
    with _lock:
        entry = _tiles.get(key)
        if entry is not None:
            _tiles.move_to_end(key)
            _state["hits"] += 1
            if fast:
                _state["fast_hits"] += 1
        return entry


def get_or_render(conn, db: str, spec, z: int, x: int, y: int, render) -> Entry:
    """The tile of an area layer at the current revision: cached, else ``render()`` and keep it."""
    key = (db, spec.name, z, x, y, current_revision(conn, db))
    entry = _get(key)
    if entry is not None:
        return entry
    entry = Entry(render(), spec.max_age)
    size = entry.size()
    with _lock:
        _state["misses"] += 1
        if key not in _tiles and size <= MAX_BYTES:
            _tiles[key] = entry
            _state["bytes"] += size
            while _state["bytes"] > MAX_BYTES:
                _, old = _tiles.popitem(last=False)
                _state["bytes"] -= old.size()
    return entry


def lookup_fresh(layer: str, z: int, x: int, y: int) -> Entry | None:
    """A cached tile of the database last used, if its revision is still fresh; no database access."""
    db = _current["db"]
    if db is None:
        return None
    rev = fresh_revision(db)
    if rev is None:
        return None
    return _get((db, layer, z, x, y, rev), fast=True)


def stats() -> dict:
    with _lock:
        return {**_state, "tiles": len(_tiles)}


def clear() -> None:
    """Forget every tile and every remembered revision."""
    with _lock:
        _tiles.clear()
        _revisions.clear()
        _current["db"] = None
        _state.update(bytes=0, hits=0, misses=0, fast_hits=0, revision_reads=0)
