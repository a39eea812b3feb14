"""Batch point location over HTTP: up to a million points per request, answered from memory.

``POST /api/v1/locate`` takes points as JSON, CSV or GeoJSON, converts them to WGS84 and runs
them through an in-process ``GridIndex`` of the current grids. The index is loaded from the
database once and reloaded when ``gridserver_meta.areas_revision`` changes (bumped by a trigger
on any change to ``admin_areas``), so each request costs one tiny query plus numpy work.

Rows are numbered from 1 in input order (header not counted) in error messages and as the default
``id`` of points that carry none. Same boundary rule as the single-point locate: covering grid,
smallest code on shared edges and vertices.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import threading
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import shapely
from json.encoder import encode_basestring as _encode_str  # C-accelerated, no ASCII escaping

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from gridserver.areas.lookup import GridIndex
from gridserver.auth.deps import optional_user
from gridserver.limits import limit_request_body
from gridserver.errors import GridserverError, InvalidInput, UnknownCRS
from gridserver.geo.crs import normalize_crs, to_wgs84

router = APIRouter(prefix="/api/v1", tags=["定位 locate"])

MAX_POINTS = 1_000_000
#: A million points of CSV with long ids is ~60 MB and of JSON ~90 MB; refuse bodies beyond this.
MAX_BODY_BYTES = 256 * 1024 * 1024
#: Without a token: enough for a spreadsheet of addresses, not for keeping the server busy.
ANONYMOUS_MAX_POINTS = 10_000
ANONYMOUS_MAX_BODY_BYTES = 1024 * 1024
_LOGIN_HINT = f"; log in (Authorization: Bearer, POST /api/v1/auth/token) for up to {MAX_POINTS:,} points"
GEOGRAPHIC = ("wgs84", "cgcs2000", "gcj02", "bd09")
OUT_FIELDS = ("grid_code", "community_code", "street_code", "district_code")
_LINES_PER_CHUNK = 20_000
_OUT_CHUNK_BYTES = 1 << 20
_ROWS_PER_PART = 1 << 17


class TooManyPoints(GridserverError):
    status, code = 413, "too_many_points"


class UnsupportedMedia(GridserverError):
    status, code = 415, "unsupported_media_type"


# --- the in-memory index -------------------------------------------------------------------------
@dataclass
class LocateIndex:
    """Current grids in a GridIndex, with each grid's community/street/district codes."""

    revision: int
    grid: GridIndex
    #: For each grid index k, and k = -1 (last element: outside), the four output codes.
    level_codes: dict[str, np.ndarray]
    #: NDJSON tail of each grid index (``,"grid_code":..."district_code":...}``), last = all null.
    json_tail: list[str]
    #: CSV tail of each grid index (``,grid,community,street,district``), last = all empty.
    csv_tail: list[str]
    #: Arrow output: per field, (dictionary of the codes incl. a trailing null, null mask); made on first use.
    arrow: dict | None = None


_GRIDS_SQL = """
    SELECT g.code, ST_AsBinary(g.geom), g.parent_code, c.parent_code, s.parent_code
    FROM admin_areas g
    LEFT JOIN admin_areas c ON c.code = g.parent_code AND c.valid_to IS NULL
    LEFT JOIN admin_areas s ON s.code = c.parent_code AND s.valid_to IS NULL
    WHERE g.level = 'grid' AND g.valid_to IS NULL
    ORDER BY g.code
"""
_REVISION_SQL = "SELECT value FROM gridserver_meta WHERE key = 'areas_revision'"

_cache: dict[str, LocateIndex] = {}
_cache_lock = threading.Lock()


def _chain(code: str, community, street, district) -> tuple[str | None, str | None, str | None]:
    """Parents from the parent_code chain; standard 15-digit codes fill gaps from their prefixes."""
    standard = len(code) == 15 and code.isdigit()
    community = community or (code[:12] if standard else None)
    street = street or (community[:9] if standard and community else None)
    district = district or (street[:6] if standard and street else None)
    return community, street, district


def load_index(conn) -> LocateIndex:
    """Read the current grids (and their parents' codes) and build the lookup index.

    ``conn`` is a psycopg connection (not autocommit). Runs in one REPEATABLE READ snapshot so the
    revision matches the rows read.
    """
    conn.rollback()  # start a fresh transaction whose first statement sets the snapshot
    try:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        revision = conn.execute(_REVISION_SQL).fetchone()[0]
        rows = conn.execute(_GRIDS_SQL).fetchall()
    finally:
        conn.rollback()
    geoms = shapely.from_wkb([bytes(r[1]) for r in rows]) if rows else []
    return index_from_rows(int(revision), [(r[0], g, r[2], r[3], r[4]) for r, g in zip(rows, geoms)])


def index_from_rows(revision: int, rows: list) -> LocateIndex:
    """Index from (code, shapely geometry, parent, grandparent, great-grandparent code) rows sorted by code."""
    codes = [r[0] for r in rows]
    geoms = [r[1] for r in rows]
    chains = [_chain(r[0], r[2], r[3], r[4]) for r in rows]
    level_codes = {
        "grid_code": np.array(codes + [None], dtype=object),
        "community_code": np.array([c[0] for c in chains] + [None], dtype=object),
        "street_code": np.array([c[1] for c in chains] + [None], dtype=object),
        "district_code": np.array([c[2] for c in chains] + [None], dtype=object),
    }
    tails, csv_tails = [], []
    for k in range(len(codes) + 1):
        row = {f: level_codes[f][k] for f in OUT_FIELDS}
        tails.append("," + json.dumps(row, ensure_ascii=False)[1:] + "\n")
        csv_tails.append("".join("," + _id_csv(v) for v in row.values()) + "\n")
    return LocateIndex(revision=int(revision), grid=GridIndex.build(codes, geoms),
                       level_codes=level_codes, json_tail=tails, csv_tail=csv_tails)


def current_index() -> LocateIndex:
    """The cached index, reloaded when the areas revision in the database has moved on."""
    from gridserver.db.engine import conninfo, pool

    key = conninfo()
    with pool().connection() as conn:
        revision = conn.execute(_REVISION_SQL).fetchone()[0]
        cached = _cache.get(key)
        if cached is not None and cached.revision == revision:
            return cached
        with _cache_lock:  # one loader at a time; the others then find it fresh
            cached = _cache.get(key)
            if cached is None or cached.revision != revision:
                cached = load_index(conn)
                _cache[key] = cached
        return cached


# --- parsing ------------------------------------------------------------------------------------
@dataclass
class Points:
    ids: list | np.ndarray
    x: np.ndarray
    y: np.ndarray
    #: Per-row CRS names (CSV ``crs`` column), or None when one CRS applies to all rows.
    row_crs: np.ndarray | None = None
    crs: str | None = None


def _too_many(n: int) -> None:
    if n > MAX_POINTS:
        raise TooManyPoints(f"{n:,} points in one request; the limit is {MAX_POINTS:,}: split the input")


def _numbers(values, column: str, what: str = "row") -> np.ndarray:
    """Values → float64, or 422 naming the first row (1-based) and column that is not a finite number."""
    arr = None
    if isinstance(values, list) and not any(type(v) is bool for v in values):
        try:
            arr = np.array(values, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
    if arr is None:
        raw = pd.Series(values, dtype=object)
        arr = pd.to_numeric(raw.map(lambda v: None if type(v) is bool else v), errors="coerce").to_numpy(np.float64)
    else:
        raw = None
    bad = np.nonzero(~np.isfinite(arr))[0]
    if bad.size:
        i = int(bad[0])
        got = values[i] if raw is None else raw.iloc[i]
        if got is None or (isinstance(got, str) and not got.strip()):
            raise InvalidInput(f"{what} {i + 1}: missing {column!r}", extra={"row": i + 1, "column": column})
        raise InvalidInput(f"{what} {i + 1}: {column!r} is not a finite number (got {got!r})",
                           extra={"row": i + 1, "column": column})
    return arr


def _from_records(items: list, crs: str | None) -> Points:
    """JSON list of {"id"?, "lon", "lat"}."""
    _too_many(len(items))
    try:
        lon = [it["lon"] for it in items]
        lat = [it["lat"] for it in items]
    except (KeyError, TypeError):
        for i, it in enumerate(items):
            if not isinstance(it, dict):
                raise InvalidInput(f"row {i + 1}: expected an object like {{\"id\": ..., \"lon\": ..., \"lat\": ...}}, "
                                   f"got {json.dumps(it, ensure_ascii=False)[:80]}", extra={"row": i + 1}) from None
            for col in ("lon", "lat"):
                if col not in it:
                    raise InvalidInput(f"row {i + 1}: missing {col!r}", extra={"row": i + 1, "column": col}) from None
        raise
    ids = [it.get("id") for it in items]
    return Points(ids=ids, x=_numbers(lon, "lon"), y=_numbers(lat, "lat"), crs=crs)


def _from_geojson(doc: dict, crs: str | None) -> Points:
    """GeoJSON FeatureCollection of Points; id from feature.id or properties.id."""
    feats = doc.get("features")
    if not isinstance(feats, list):
        raise InvalidInput("GeoJSON FeatureCollection has no 'features' list")
    _too_many(len(feats))
    xs, ys, ids = [], [], []
    for i, f in enumerate(feats):
        geom = f.get("geometry") if isinstance(f, dict) else None
        if not isinstance(geom, dict) or geom.get("type") != "Point":
            got = geom.get("type") if isinstance(geom, dict) else geom
            raise InvalidInput(f"feature {i + 1}: geometry must be a Point, got {got!r}",
                               extra={"row": i + 1, "column": "geometry"})
        c = geom.get("coordinates")
        if not isinstance(c, list | tuple) or len(c) < 2:
            raise InvalidInput(f"feature {i + 1}: Point coordinates must be [lon, lat], got {c!r}",
                               extra={"row": i + 1, "column": "coordinates"})
        xs.append(c[0])
        ys.append(c[1])
        fid = f.get("id")
        if fid is None and isinstance(f.get("properties"), dict):
            fid = f["properties"].get("id")
        ids.append(fid)
    if crs is None and isinstance(doc.get("crs"), dict):  # legacy GeoJSON "crs" member
        crs = (doc["crs"].get("properties") or {}).get("name")
    return Points(ids=ids, x=_numbers(xs, "lon", "feature"), y=_numbers(ys, "lat", "feature"), crs=crs)


def _from_json_bytes(data: bytes, crs: str | None) -> Points:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:  # also NaN/Infinity, huge ints: the stdlib accepts or words the error
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"body is not valid JSON: {exc}") from None
    if isinstance(doc, list):
        return _from_records(doc, crs)
    if isinstance(doc, dict):
        if doc.get("type") == "FeatureCollection":
            return _from_geojson(doc, crs)
        if isinstance(doc.get("points"), list):
            return _from_records(doc["points"], doc.get("crs") or crs)
    raise InvalidInput('JSON body must be a list of {"id", "lon", "lat"}, {"points": [...], "crs": ...} '
                       "or a GeoJSON FeatureCollection of Points")


_ALIASES = {"lon": ("lon", "lng", "longitude", "x", "经度"), "lat": ("lat", "latitude", "y", "纬度"),
            "id": ("id", "编号"), "crs": ("crs", "坐标系")}


def _from_csv_bytes(data: bytes, crs: str | None) -> Points:
    """CSV with a header: id (optional), lon, lat, crs (optional).

    Clean input is parsed by pyarrow's multi-threaded CSV reader; anything it does not take as is
    (a non-number or empty coordinate, ragged rows, leading blanks, odd headers) goes through the
    pandas path, which accepts the same input as before and words the row/column error messages.
    """
    pts = _from_csv_arrow(data, crs)
    return pts if pts is not None else _from_csv_pandas(data, crs)


def _csv_header(data: bytes) -> list[str] | None:
    end = data.find(b"\n")
    line = data[: end if end >= 0 else len(data)]
    try:
        text = line.decode("utf-8-sig").rstrip("\r")
    except UnicodeDecodeError:
        return None
    if '"' in text or not text.strip():
        return None
    return text.split(",")


def _string_bytes(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(UTF-8 bytes, offsets) of a pyarrow string array, without copying."""
    arr = arr.cast(pa.string()) if arr.type != pa.string() else arr
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset: arr.offset + len(arr) + 1]
    buf = arr.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.empty(0, np.uint8)
    return data[offsets[0]: offsets[-1]], offsets - offsets[0]


def _any_byte(arr: pa.Array, special: bytes, controls: bool = False) -> bool:
    """Whether any string holds one of ``special`` (or, with ``controls``, a byte < 0x20)."""
    data, _ = _string_bytes(arr)
    hit = np.isin(data, np.frombuffer(special, dtype=np.uint8))
    if controls:
        hit |= data < 0x20
    return bool(hit.any())


def _any_leading_blank(arr: pa.Array) -> bool:
    data, offsets = _string_bytes(arr)
    starts = offsets[:-1][offsets[1:] > offsets[:-1]]
    first = data[starts]
    return bool(((first == 0x20) | (first == 0x09)).any())


def _from_csv_arrow(data: bytes, crs: str | None) -> Points | None:
    """pyarrow fast path; None when the input needs the pandas path (which then accepts or explains it)."""
    header = _csv_header(data)
    if header is None or len(set(header)) != len(header) or any(h[:1] in (" ", "\t") for h in header):
        return None
    lower = {h.strip().lower(): h for h in header}
    cols = {want: next((lower[n] for n in names if n in lower), None) for want, names in _ALIASES.items()}
    if cols["lon"] is None or cols["lat"] is None:
        return None
    types = {cols["lon"]: pa.float64(), cols["lat"]: pa.float64()}
    types.update({cols[k]: pa.string() for k in ("id", "crs") if cols[k] is not None})
    try:
        tbl = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(block_size=4 << 20),
            # a quoted field may hold a line break; only then must blocks be cut quote-aware (slower)
            parse_options=pacsv.ParseOptions(newlines_in_values=b'"' in data),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(types),
                                                 null_values=[""], strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        return None
    _too_many(tbl.num_rows)
    xy = []
    for k in ("lon", "lat"):
        col = tbl.column(cols[k])
        if col.null_count:
            return None
        arr = col.to_numpy()
        if not np.isfinite(arr).all():
            return None
        xy.append(arr)
    ids = row_crs = None
    if cols["id"] is not None:
        ids = tbl.column(cols["id"]).combine_chunks()
        if _any_leading_blank(ids):  # pandas skips these blanks
            return None
    if cols["crs"] is not None:
        col = tbl.column(cols["crs"]).combine_chunks()
        if _any_leading_blank(col):
            return None
        row_crs = pc.utf8_trim_whitespace(col).to_numpy(zero_copy_only=False)
    return Points(ids=ids if ids is not None else [None] * tbl.num_rows, x=xy[0], y=xy[1],
                  row_crs=row_crs, crs=crs)


def _from_csv_pandas(data: bytes, crs: str | None) -> Points:
    """CSV parsed by pandas (the general path: lenient input, row/column error messages)."""
    opts = dict(keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    try:
        header = pd.read_csv(io.BytesIO(data), nrows=0, **opts).columns
        lower = {str(c).strip().lower(): c for c in header}
        cols = {want: next((lower[n] for n in names if n in lower), None) for want, names in _ALIASES.items()}
        for need in ("lon", "lat"):
            if cols[need] is None:
                raise InvalidInput(f"CSV has no {need!r} column (columns found: {', '.join(map(str, header))})",
                                   extra={"column": need})
        text_cols = {c: str for k, c in cols.items() if c is not None and k in ("id", "crs")}
        # Numbers are parsed by pandas' C parser; a column with anything non-numeric comes back
        # as text and is then checked row by row for the error message.
        df = pd.read_csv(io.BytesIO(data), usecols=[c for c in cols.values() if c is not None],
                         dtype=text_cols, **opts)
    except pd.errors.EmptyDataError:
        raise InvalidInput("CSV is empty: expected a header line id,lon,lat") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"CSV could not be parsed: {exc}") from None
    _too_many(len(df))

    def numbers(col: str) -> np.ndarray:
        series = df[cols[col]]
        if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
            arr = series.to_numpy(np.float64)
            if np.isfinite(arr).all():
                return arr
        return _numbers(series.astype(object).tolist(), col)

    x, y = numbers("lon"), numbers("lat")
    ids = df[cols["id"]].to_numpy(dtype=object) if cols["id"] is not None else [None] * len(df)
    row_crs = df[cols["crs"]].str.strip().to_numpy(dtype=object) if cols["crs"] is not None else None
    return Points(ids=ids, x=x, y=y, row_crs=row_crs, crs=crs)


ARROW_STREAM = "application/vnd.apache.arrow.stream"
_ARROW_TYPES = (ARROW_STREAM, "application/x-apache-arrow-stream")
_ARROW_MAGIC = b"\xff\xff\xff\xff"  # an Arrow IPC stream starts with a continuation marker


def _from_arrow_bytes(data: bytes, crs: str | None) -> Points:
    """An Arrow IPC stream (pyarrow, polars, duckdb …) with columns lon, lat (numbers) and optional id, crs:
    read without parsing text, the fast way in for large batches."""
    try:
        tbl = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError) as exc:
        raise InvalidInput(f"body is not a readable Arrow IPC stream: {exc}") from None
    lower = {str(c).strip().lower(): c for c in tbl.column_names}
    cols = {want: next((lower[n] for n in names if n in lower), None) for want, names in _ALIASES.items()}
    for need in ("lon", "lat"):
        if cols[need] is None:
            raise InvalidInput(f"Arrow stream has no {need!r} column (columns found: {', '.join(tbl.column_names)})",
                               extra={"column": need})
    _too_many(tbl.num_rows)
    xy = []
    for k in ("lon", "lat"):
        col = tbl.column(cols[k]).combine_chunks()
        try:
            num = col.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise InvalidInput(f"Arrow column {cols[k]!r} must be numeric, got {col.type}", extra={"column": k}) from None
        if num.null_count:
            i = int(np.nonzero(num.is_null().to_numpy(zero_copy_only=False))[0][0])
            raise InvalidInput(f"row {i + 1}: missing {k!r}", extra={"row": i + 1, "column": k})
        arr = num.to_numpy(zero_copy_only=False)
        bad = np.nonzero(~np.isfinite(arr))[0]
        if bad.size:
            i = int(bad[0])
            raise InvalidInput(f"row {i + 1}: {k!r} is not a finite number (got {arr[i]!r})",
                               extra={"row": i + 1, "column": k})
        xy.append(arr)
    ids: list | pa.Array = [None] * tbl.num_rows
    if cols["id"] is not None:
        col = tbl.column(cols["id"]).combine_chunks()
        if pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type):
            col = col.cast(pa.string())
        ids = col if pa.types.is_string(col.type) and not col.null_count else col.to_pylist()
    row_crs = None
    if cols["crs"] is not None:
        col = tbl.column(cols["crs"]).combine_chunks().cast(pa.string())
        row_crs = pc.utf8_trim_whitespace(col).to_numpy(zero_copy_only=False)
    return Points(ids=ids, x=xy[0], y=xy[1], row_crs=row_crs, crs=crs)


_BLANK = re.compile(rb"\s*")


def _first_non_blank(data: bytes) -> bytes | None:
    """The first byte that is not white space, None for a blank body (no copy of a large body)."""
    end = _BLANK.match(data).end()
    return data[end:end + 1] if end < len(data) else None


def parse_points(content_type: str, data: bytes, crs: str | None, filename: str | None = None) -> Points:
    """Dispatch on media type (or the upload's file name): JSON / GeoJSON / CSV."""
    ct = (content_type or "").split(";")[0].strip().lower()
    name = (filename or "").lower()
    first = _first_non_blank(data)
    if first is None:
        raise InvalidInput("no points: the body (or uploaded file) is empty")
    if ct in _ARROW_TYPES or name.endswith((".arrow", ".arrows")):
        return _from_arrow_bytes(data, crs)
    if name.endswith((".csv", ".txt")) or ct in ("text/csv", "application/csv", "text/plain"):
        return _from_csv_bytes(data, crs)
    if name.endswith((".json", ".geojson")) or ct.endswith("json"):
        return _from_json_bytes(data, crs)
    # No useful type (curl --data-binary sends form-urlencoded by default): sniff the first byte.
    if ct in ("", "application/octet-stream", "application/x-www-form-urlencoded"):
        if data[:4] == _ARROW_MAGIC:
            return _from_arrow_bytes(data, crs)
        return _from_json_bytes(data, crs) if first in (b"[", b"{") else _from_csv_bytes(data, crs)
    raise UnsupportedMedia(f"unsupported content type {ct!r}: send application/json, application/geo+json, "
                           f"text/csv, {ARROW_STREAM}, or a multipart upload with a 'file' field")


def to_lonlat(pts: Points) -> tuple[np.ndarray, np.ndarray]:
    """Convert to WGS84; per-row CRS groups are converted together. Geographic input is range-checked."""
    default = normalize_crs(pts.crs)
    if pts.row_crs is None:
        groups = {default: np.arange(pts.x.size)}
    else:
        labels = np.array(["" if v is None else str(v) for v in pts.row_crs], dtype=object)
        uniq, inverse = np.unique(labels.astype(str), return_inverse=True)
        parts: dict[str, list[np.ndarray]] = {}
        for u, label in enumerate(uniq):
            rows = np.nonzero(inverse == u)[0]
            try:
                name = normalize_crs(label) if label else default
            except UnknownCRS as exc:
                r = int(rows[0]) + 1
                raise UnknownCRS(f"row {r}: {exc.detail}", extra={"row": r, "column": "crs"}) from None
            parts.setdefault(name, []).append(rows)
        groups = {name: np.sort(np.concatenate(rs)) for name, rs in parts.items()}
    if len(groups) == 1 and pts.row_crs is None:  # one CRS for all rows: no gather/scatter copies
        name = next(iter(groups))
        if name in GEOGRAPHIC:
            for col, v, lim in (("lon", pts.x, 180), ("lat", pts.y, 90)):
                bad = np.nonzero(np.abs(v) > lim)[0]
                if bad.size:
                    r = int(bad[0]) + 1
                    raise InvalidInput(f"row {r}: {col!r} must be between -{lim} and {lim} in {name}, "
                                       f"got {v[r - 1]}", extra={"row": r, "column": col})
        lon, lat = to_wgs84(pts.x, pts.y, name)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    lon = np.empty_like(pts.x)
    lat = np.empty_like(pts.y)
    for name, rows in groups.items():
        x, y = pts.x[rows], pts.y[rows]
        if name in GEOGRAPHIC:
            for col, v, lim in (("lon", x, 180), ("lat", y, 90)):
                bad = np.nonzero(np.abs(v) > lim)[0]
                if bad.size:
                    r = int(np.min(np.asarray(rows)[bad])) + 1
                    raise InvalidInput(f"row {r}: {col!r} must be between -{lim} and {lim} in {name}, "
                                       f"got {pts.x[r - 1] if col == 'lon' else pts.y[r - 1]}",
                                       extra={"row": r, "column": col})
        lon[rows], lat[rows] = to_wgs84(x, y, name)
    return lon, lat


# --- output -------------------------------------------------------------------------------------
def _ids_for_output(ids) -> list:
    """Echo given ids; points without one get their 1-based row number."""
    return [i + 1 if v is None else v for i, v in enumerate(ids)]


def _id_json(v) -> str:
    t = type(v)
    if t is str:
        return _encode_str(v)
    if t is int:
        return str(v)
    return json.dumps(v, ensure_ascii=False)


def _id_csv(v) -> str:
    s = "" if v is None else str(v)
    if any(ch in s for ch in ',"\r\n'):
        return '"' + s.replace('"', '""') + '"'
    return s


def _ndjson(ids: list, found: np.ndarray, tails: list[str]):
    for s in range(0, len(ids), _LINES_PER_CHUNK):
        e = min(s + _LINES_PER_CHUNK, len(ids))
        yield "".join(['{"id":' + _id_json(i) + tails[k] for i, k in zip(ids[s:e], found[s:e].tolist())])


def _csv(ids: list, found: np.ndarray, csv_tails: list[str]):
    yield ",".join(("id",) + OUT_FIELDS) + "\n"
    for s in range(0, len(ids), _LINES_PER_CHUNK):
        e = min(s + _LINES_PER_CHUNK, len(ids))
        strs = ["" if i is None else str(i) for i in ids[s:e]]
        joined = "\x00".join(strs)
        if any(ch in joined for ch in ',"\r\n'):  # quote only when some id needs it (rare)
            strs = [_id_csv(i) for i in strs]
        yield "".join([i + csv_tails[k] for i, k in zip(strs, found[s:e].tolist())])


def _fast_body(ids, found: np.ndarray, index: LocateIndex, as_csv: bool):
    """The response chunks built by pyarrow string kernels, for ids that are one pyarrow string array
    (CSV input) or absent (row numbers); None for other ids or ids that need escaping/quoting."""
    n = found.size
    if isinstance(ids, pa.Array):
        if _any_byte(ids, b',"\r\n' if as_csv else b'"\\', controls=not as_csv):
            return None
        quoted = not as_csv
    elif isinstance(ids, list):
        try:
            arr = pa.array(ids)  # all str, all int or all None give a plain array; mixed types raise
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
            return None
        if arr.type == pa.null():
            arr = pa.array(np.arange(1, n + 1, dtype=np.int64))
        elif arr.null_count:
            return None
        if arr.type == pa.int64():
            ids, quoted = pc.cast(arr, pa.string()), False
        elif arr.type == pa.string():
            if _any_byte(arr, b',"\r\n' if as_csv else b'"\\', controls=not as_csv):
                return None
            ids, quoted = arr, not as_csv
        else:
            return None
    else:
        return None
    tails = pa.array(index.csv_tail if as_csv else index.json_tail, pa.string())
    k = found.astype(np.int64)
    k[k < 0] = len(tails) - 1
    header = [(",".join(("id",) + OUT_FIELDS) + "\n").encode()] if as_csv else []
    return itertools.chain(header, _joined_parts(ids, k, tails, as_csv, quoted))


def _joined_parts(ids: pa.Array, k: np.ndarray, tails: pa.Array, as_csv: bool, quoted: bool):
    """The answer lines, made ``_ROWS_PER_PART`` rows at a time while the previous part is being sent
    (the socket write and the next join overlap), in slices of at most ``_OUT_CHUNK_BYTES``."""
    for s in range(0, k.size, _ROWS_PER_PART):
        e = min(s + _ROWS_PER_PART, k.size)
        tail = tails.take(pa.array(k[s:e]))
        part = ids.slice(s, e - s)
        if as_csv:
            lines = pc.binary_join_element_wise(part, tail, "")
        else:
            lines = pc.binary_join_element_wise('{"id":"' if quoted else '{"id":', part, '"' if quoted else "", tail, "")
        lines = lines.cast(pa.large_string()) if isinstance(lines, pa.ChunkedArray) else lines
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32 if lines.type == pa.string() else np.int64)
        start, end = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
        body = memoryview(lines.buffers()[2])
        for c in range(start, end, _OUT_CHUNK_BYTES):
            yield body[c:min(c + _OUT_CHUNK_BYTES, end)]


def _arrow_dictionaries(index: LocateIndex) -> dict:
    if index.arrow is None:  # two threads may both make it: same content, no harm
        index.arrow = {f: (pa.array(list(index.level_codes[f]), pa.string()),
                           np.array([v is None for v in index.level_codes[f]]))
                       for f in OUT_FIELDS}
    return index.arrow


def _arrow_body(ids, found: np.ndarray, index: LocateIndex) -> list[bytes]:
    """One Arrow IPC stream: ``id`` (as given; row numbers when absent) and the four codes as
    dictionary<int32, string> columns (null outside every grid) — no per-row text at all."""
    if isinstance(ids, pa.Array):
        id_arr = ids
    else:
        out_ids = _ids_for_output(list(ids))
        try:
            id_arr = pa.array(out_ids)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):  # mixed types: as text
            id_arr = pa.array([v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in out_ids])
    dictionaries = _arrow_dictionaries(index)
    size = len(dictionaries["grid_code"][0])
    itype = np.int16 if size <= np.iinfo(np.int16).max else np.int32
    k = found.astype(itype)
    k[found < 0] = size - 1  # outside: the trailing null of every dictionary
    columns, shared = [], {}  # one indices array per distinct null pattern (usually one for all four)
    for f, (dictionary, nulls) in dictionaries.items():
        key = nulls.tobytes()
        if key not in shared:
            shared[key] = pa.array(k, mask=nulls[k])
        columns.append(pa.DictionaryArray.from_arrays(shared[key], dictionary, safe=False))
    batch_ = pa.RecordBatch.from_arrays([id_arr, *columns], names=["id", *OUT_FIELDS])
    # sized first, then written into one buffer (no growing, no copy into bytes)
    mock = pa.MockOutputStream()
    with pa.ipc.new_stream(mock, batch_.schema) as writer:
        writer.write_batch(batch_)
    buf = pa.allocate_buffer(mock.size())
    with pa.ipc.new_stream(pa.FixedSizeBufferWriter(buf), batch_.schema) as writer:
        writer.write_batch(batch_)
    view = memoryview(buf)
    return [view[c:c + _OUT_CHUNK_BYTES] for c in range(0, len(view), _OUT_CHUNK_BYTES)]


#: Output formats: ``?format=`` value (or Accept media type) → response media type.
FORMATS = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8", "arrow": ARROW_STREAM}


def _output_format(fmt: str | None, accept: str) -> str:
    """ndjson (default), csv or arrow, from ``?format=`` or else the Accept header."""
    if fmt:
        f = fmt.strip().lower()
        if f not in ("csv", "ndjson", "json", "jsonl", "arrow"):
            raise InvalidInput(f"format must be 'ndjson', 'csv' or 'arrow', got {fmt!r}", extra={"column": "format"})
        return "ndjson" if f in ("json", "jsonl") else f
    accept = (accept or "").lower()
    if ARROW_STREAM in accept:
        return "arrow"
    return "csv" if "text/csv" in accept else "ndjson"


def _locate_all(content_type: str, data: bytes, crs: str | None, filename: str | None, fmt: str = "ndjson"):
    """→ (number of points, response chunks)."""
    pts = parse_points(content_type, data, crs, filename)
    return locate_points(pts, current_index(), fmt)


def locate_points(pts: Points, index: LocateIndex, fmt: str | bool):
    """(number of points, response chunks) in ``fmt`` (ndjson, csv, arrow; True/False = csv/ndjson)."""
    if isinstance(fmt, bool):
        fmt = "csv" if fmt else "ndjson"
    lon, lat = to_lonlat(pts)
    found = index.grid.locate(lon, lat)  # -1 (outside) indexes the trailing all-null entry
    if fmt == "arrow":
        return found.size, _arrow_body(pts.ids, found, index)
    as_csv = fmt == "csv"
    body = _fast_body(pts.ids, found, index, as_csv)
    if body is not None:
        return found.size, body
    ids = pts.ids.to_pylist() if isinstance(pts.ids, pa.Array) else list(pts.ids)
    ids = _ids_for_output(ids)
    if as_csv:
        return len(ids), _csv(ids, found, index.csv_tail)
    return len(ids), _ndjson(ids, found, index.json_tail)


_OPENAPI_BODY = {
    "requestBody": {
        "description": "点位 points: JSON list / {points, crs} / GeoJSON FeatureCollection, CSV (id,lon,lat[,crs]) "
                       "as body or multipart upload field 'file'",
        "content": {
            "application/json": {"example": [{"id": "a1", "lon": 113.27, "lat": 23.13}]},
            "application/geo+json": {"example": {"type": "FeatureCollection", "features": [
                {"type": "Feature", "id": "a1", "properties": {},
                 "geometry": {"type": "Point", "coordinates": [113.27, 23.13]}}]}},
            "text/csv": {"example": "id,lon,lat\na1,113.27,23.13\n"},
            ARROW_STREAM: {"schema": {"type": "string", "format": "binary",
                                      "description": "Arrow IPC stream with columns lon, lat, optional id, crs"}},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"}, "crs": {"type": "string"}}}},
        },
    },
    "responses": {"200": {"content": {"application/x-ndjson": {}, "text/csv": {}, ARROW_STREAM: {}}}},
}


@router.post("/locate", summary="批量点位落格 batch locate points to grids", openapi_extra=_OPENAPI_BODY)
async def locate_batch(
    request: Request,
    crs: str | None = Query(None, description="坐标系 input CRS: wgs84 (default), cgcs2000, gcj02, bd09, EPSG:nnnn"),
    format: str | None = Query(None, description="输出格式 ndjson (default), csv or arrow; or send Accept: text/csv "
                                                "or application/vnd.apache.arrow.stream"),
    user=Depends(optional_user),
):
    """Locate up to 1,000,000 points in one request (10,000 and 1 MB without a token); one output row
    per input point, in input order.

    Each row is {"id", "grid_code", "community_code", "street_code", "district_code"}, codes null
    (empty in CSV) for points outside every grid. Errors name the 1-based row and the column.
    The body is counted while it streams in: past the limit → 413 at once, chunked or not.
    For large batches an Arrow IPC stream in (``Content-Type: application/vnd.apache.arrow.stream``)
    and/or out (``?format=arrow``: id plus the four codes as dictionary columns) skips all text work.
    """
    fmt = _output_format(format, request.headers.get("accept", ""))
    anonymous = user is None
    max_bytes = ANONYMOUS_MAX_BODY_BYTES if anonymous else MAX_BODY_BYTES
    limit_request_body(request, max_bytes, what="points input", hint=_LOGIN_HINT if anonymous else "")
    content_type = request.headers.get("content-type", "")
    filename = None
    if content_type.lower().startswith("multipart/form-data"):
        form = await request.form(max_part_size=16 * 1024 * 1024)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            upload = next((v for v in form.values() if not isinstance(v, str)), None)
        if upload is None:
            raise InvalidInput("multipart request has no uploaded file: send it in a field named 'file'",
                               extra={"column": "file"})
        form_crs = form.get("crs")
        if crs is None and isinstance(form_crs, str) and form_crs.strip():
            crs = form_crs
        data = await upload.read()
        content_type, filename = upload.content_type or "", upload.filename
    else:
        data = await request.body()
    if len(data) > MAX_BODY_BYTES:
        raise TooManyPoints(f"input of {len(data):,} bytes exceeds {MAX_BODY_BYTES:,} bytes")
    if crs is not None:
        normalize_crs(crs)  # unknown CRS → 422 before any parsing
    n, body = await run_in_threadpool(_locate_all, content_type, data, crs, filename, fmt)
    if anonymous and n > ANONYMOUS_MAX_POINTS:
        raise TooManyPoints(f"{n:,} points without a token; the limit is {ANONYMOUS_MAX_POINTS:,}{_LOGIN_HINT}")
    return StreamingResponse(body, media_type=FORMATS[fmt])
