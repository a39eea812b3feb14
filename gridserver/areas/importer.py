"""Import admin areas and grids from GeoJSON, Shapefile (.shp or .zip), GeoPackage or GeoParquet.

Promise: nothing is half-imported. Every feature of every file is read, converted to WGS84 and
checked first (codes, parents, geometry); any problem rejects the whole import with a message
listing the first problems (feature index, code, reason) and their total. Only then are the
rows written, in ONE transaction, through a COPY into a temporary table.

Versioning: an area whose current name/parent/geometry differ from the file is closed
(``valid_to = now()``) and a new version is inserted; identical areas are left untouched, so a
re-import is idempotent. Feature indexes in messages are 0-based positions in the file.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from sqlalchemy import text

from gridserver.errors import InvalidInput
from gridserver.geo.crs import KNOWN, normalize_crs, to_wgs84

#: Code length per level; a code's parent is its prefix of the level above.
CODE_LENGTH = {"district": 6, "street": 9, "community": 12, "grid": 15}
PARENT_LEVEL = {"street": "district", "community": "street", "grid": "community"}
LEVEL_ALIASES = {
    "district": "district", "区": "district", "县": "district", "区县": "district",
    "street": "street", "街道": "street", "街": "street", "镇": "street", "subdistrict": "street",
    "community": "community", "社区": "community", "村": "community",
    "grid": "grid", "网格": "grid",
}
#: Columns tried for the code when the file has no ``code`` column (OSM tags, DataV/Amap adcode).
CODE_ALTERNATIVES = {
    "district": ("ref:admin:CN", "adcode", "ref:admin:CN:nbs"),
    "street": ("ref:admin:CN:nbs", "ref:admin:CN:mca", "ref:admin:CN"),
    "community": ("ref:admin:CN:nbs", "ref:admin:CN:mca"),
    "grid": ("grid_code",),
}
NAME_ALTERNATIVES = ("name:zh", "name:zh-Hans")
PARQUET_SUFFIXES = (".parquet", ".geoparquet")
MAX_LISTED = 20
#: Hostile-input bounds: vertices per area (a real community boundary has a few thousand), and how
#: far an uploaded .zip may inflate.
MAX_VERTICES = 250_000
MAX_UNZIPPED_BYTES = 2 * 1024**3
MAX_ZIP_RATIO = 200

Progress = Callable[[str, int, int], None]


@dataclass
class Problem:
    index: int | None
    code: str | None
    reason: str

    def __str__(self) -> str:
        where = f"feature {self.index}" if self.index is not None else "file"
        if self.code:
            where += f" (code {self.code})"
        return f"{where}: {self.reason}"


class AreaImportError(InvalidInput):
    """The file set was rejected; ``problems`` lists every problem found (nothing was written)."""

    code = "import_rejected"

    def __init__(self, what: str, problems: list[Problem]):
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        detail = f"{what}: {len(problems)} problem(s), nothing was imported:\n{shown}{more}"
        super().__init__(detail, extra={"problems": [p.__dict__ for p in problems[:200]],
                                        "problem_count": len(problems)})


@dataclass
class ImportReport:
    """What an import did (or, with dry_run, would do)."""

    files: list[str]
    level: str
    crs: str
    features: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    repaired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Prepared:
    """One file read, converted to WGS84 and checked (except for parents, checked set-wide)."""

    path: Path
    level: str
    crs: str
    codes: list[str]
    names: list[str]
    parents: list[str | None]
    geoms: np.ndarray
    props: list[str]
    problems: list[Problem]
    notes: list[str]
    repaired: list[str]


def normalize_level(level: str) -> str:
    key = (level or "").strip().lower()
    if key not in LEVEL_ALIASES:
        raise InvalidInput(f"unknown level {level!r}: use one of district, street, community, grid")
    return LEVEL_ALIASES[key]


# --- reading ----------------------------------------------------------------------------------
def check_zip(path: Path) -> None:
    """Refuse a .zip that is not one, or that would inflate beyond ``MAX_UNZIPPED_BYTES`` in all
    or ``MAX_ZIP_RATIO``× in one member (a zip bomb), before GDAL reads a byte of it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{path.name}: not a readable .zip archive ({exc})") from None
    total = sum(m.file_size for m in members)
    if total > MAX_UNZIPPED_BYTES:
        raise InvalidInput(f"{path.name}: would unpack to {total:,} bytes, more than the {MAX_UNZIPPED_BYTES:,} allowed")
    for m in members:
        if m.file_size > 1_000_000 and m.file_size > MAX_ZIP_RATIO * max(m.compress_size, 1):
            raise InvalidInput(f"{path.name}: member {m.filename!r} is compressed {m.file_size // max(m.compress_size, 1):,}:1 "
                               f"(over {MAX_ZIP_RATIO}:1), refused as a possible zip bomb")


def read_file(path: Path, layer: str | None = None):
    """Read any supported vector file into a GeoDataFrame; unreadable files raise InvalidInput."""
    import geopandas as gpd

    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"{path}: file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise InvalidInput(f"{path}: the file is empty (0 bytes)")
    if path.is_file() and path.suffix.lower() == ".zip":
        check_zip(path)
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            return gpd.read_parquet(path)
        return gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as exc:  # pyogrio/GDAL/arrow raise many types; all mean "cannot read this file"
        reason = str(exc).split("; It might help")[0]
        raise InvalidInput(
            f"{path}: cannot read as GeoJSON/Shapefile/GeoPackage/GeoParquet: {reason}"
        ) from None


def _pick_column(columns, wanted: str | None, default: str, alternatives: Sequence[str], what: str,
                 notes: list[str], required: bool = True) -> str | None:
    """Find a column: the explicit option, else ``default`` (case-insensitive), else an alternative."""
    by_lower = {str(c).lower(): c for c in columns if c != "geometry"}
    if wanted:
        if wanted in columns:
            return wanted
        if wanted.lower() in by_lower:
            return by_lower[wanted.lower()]
        raise InvalidInput(f"column {wanted!r} given for the {what} does not exist; "
                           f"columns are: {', '.join(map(str, by_lower.values())) or '(none)'}")
    if default.lower() in by_lower:
        return by_lower[default.lower()]
    for alt in alternatives:
        if alt.lower() in by_lower:
            notes.append(f"no '{default}' column: {what} taken from column '{by_lower[alt.lower()]}'")
            return by_lower[alt.lower()]
    if required:
        nor = f" (nor {', '.join(repr(a) for a in alternatives)})" if alternatives else ""
        raise InvalidInput(
            f"the file has no '{default}' column{nor}; columns are: "
            f"{', '.join(map(str, by_lower.values())) or '(none)'} — choose one with --{what.split()[0]}-field"
        )
    return None


def _as_text(value) -> str | None:
    """Cell → stripped string; integer-valued floats lose their '.0' (pandas turns int+NaN into float)."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    s = str(value).strip()
    return s or None


def _vectorised(crs: str):
    def fn(xy: np.ndarray) -> np.ndarray:
        lon, lat = to_wgs84(xy[:, 0], xy[:, 1], crs)
        return np.column_stack([lon, lat])

    return fn


def _resolve_crs(gdf, crs: str | None, notes: list[str]) -> str:
    """The CRS to read coordinates in: --crs, else the file's, else WGS84 when they look like lon/lat."""
    declared = gdf.crs
    if crs is not None and str(crs).strip():
        name = normalize_crs(crs)  # raises UnknownCRS (422) for names nobody knows
        if declared is not None:
            dname = _crs_label(declared)
            if dname != name:
                notes.append(f"file declares {dname}; coordinates read as {name} (--crs)")
        return name
    if declared is not None:
        return _crs_label(declared)
    xmin, ymin, xmax, ymax = shapely.total_bounds(gdf.geometry.values)
    if np.all(np.isfinite([xmin, ymin, xmax, ymax])) and -180 <= xmin and xmax <= 180 and -90 <= ymin and ymax <= 90:
        notes.append("the file declares no coordinate system: assumed WGS84 (coordinates are within lon/lat ranges)")
        return "wgs84"
    raise InvalidInput(
        f"the file declares no coordinate system and its coordinates are not lon/lat "
        f"(bounds {xmin:.6g}, {ymin:.6g}, {xmax:.6g}, {ymax:.6g}): pass --crs, e.g. --crs EPSG:4547 "
        f"or one of {', '.join(KNOWN)}"
    )


def _crs_label(crs) -> str:
    epsg = crs.to_epsg()
    return normalize_crs(f"EPSG:{epsg}" if epsg else crs.to_wkt())


def _props(row: dict) -> str:
    out = {}
    for k, v in row.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        out[str(k)] = v
    return json.dumps(out, ensure_ascii=False, default=str)


def prepare(path: Path, level: str, crs: str | None = None, *, repair: bool = False, layer: str | None = None,
            code_field: str | None = None, name_field: str | None = None, parent_field: str | None = None,
            progress: Progress | None = None) -> Prepared:
    """Read one file and run every per-file check; problems are collected, not raised.

    Whole-file failures (unreadable, empty, unknown CRS, no code column) raise immediately.
    """
    path = Path(path)
    level = normalize_level(level)
    notes: list[str] = []
    if progress:
        progress("reading", 0, 1)
    gdf = read_file(path, layer)
    if len(gdf) == 0:
        raise InvalidInput(f"{path}: the file holds no features")
    if progress:
        progress("reading", 1, 1)
    columns = list(gdf.columns)
    code_col = _pick_column(columns, code_field, "code", CODE_ALTERNATIVES[level], "code", notes)
    name_col = _pick_column(columns, name_field, "name", NAME_ALTERNATIVES, "name", notes)
    parent_col = _pick_column(columns, parent_field, "parent_code", (), "parent code", notes, required=False)
    name = _resolve_crs(gdf, crs, notes)

    n = len(gdf)
    codes = [_as_text(v) for v in gdf[code_col].tolist()]
    names = [_as_text(v) for v in gdf[name_col].tolist()]
    given_parents = [_as_text(v) for v in gdf[parent_col].tolist()] if parent_col else [None] * n
    problems: list[Problem] = []

    # Whole-file code problems first: they make every other message ambiguous.
    missing = [i for i, c in enumerate(codes) if c is None]
    if missing:
        problems += [Problem(i, None, f"missing code (column '{code_col}' is empty)") for i in missing]
    counts = Counter(c for c in codes if c is not None)
    dups = {c for c, k in counts.items() if k > 1}
    if dups:
        for c in sorted(dups):
            rows = [i for i, x in enumerate(codes) if x == c]
            problems.append(Problem(rows[0], c, f"duplicate code: appears in features {', '.join(map(str, rows))}"))
    if problems:
        raise AreaImportError(f"{path.name}: codes must be present and unique", problems)

    want = CODE_LENGTH[level]
    plen = CODE_LENGTH.get(PARENT_LEVEL.get(level, ""), None)
    parents: list[str | None] = []
    for i, (code, nm, given) in enumerate(zip(codes, names, given_parents)):
        if nm is None:
            problems.append(Problem(i, code, f"missing name (column '{name_col}' is empty)"))
        if not (code.isascii() and code.isdigit()) or len(code) != want:
            problems.append(Problem(i, code, f"a {level} code must be exactly {want} digits"))
            parents.append(given)
            continue
        derived = code[:plen] if plen else None
        if given is not None and plen and given != derived:
            problems.append(Problem(i, code, f"parent code {given} is not the code's {plen}-digit prefix {derived}"))
        parents.append(given if given is not None else derived)

    if progress:
        progress("checking", 0, n)
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    repaired: list[str] = []
    geoms = _check_and_convert(geoms, codes, name, repair, problems, notes, repaired)
    if progress:
        progress("checking", n, n)
    extra = [c for c in columns if c not in ("geometry", code_col, name_col, parent_col)]
    props = [_props(r) for r in gdf[extra].to_dict("records")] if extra else ["{}"] * n
    return Prepared(path, level, name, codes, names, parents, geoms, props, problems, notes, repaired)


def _check_and_convert(geoms, codes, crs, repair, problems, notes, repaired) -> np.ndarray:
    """Type, emptiness, WGS84 conversion, lon/lat range and validity (with optional repair)."""
    out = geoms.copy()
    missing = shapely.is_missing(out)
    types = shapely.get_type_id(out)
    polygonal = np.isin(types, (3, 6))  # Polygon, MultiPolygon
    for i in np.flatnonzero(missing):
        problems.append(Problem(int(i), codes[i], "missing geometry"))
    for i in np.flatnonzero(~missing & ~polygonal):
        problems.append(Problem(int(i), codes[i], f"geometry type {out[i].geom_type}, "
                                                  "expected Polygon or MultiPolygon"))
    ok = ~missing & polygonal
    empty = ok & shapely.is_empty(np.where(ok, out, None))
    for i in np.flatnonzero(empty):
        problems.append(Problem(int(i), codes[i], "empty geometry"))
    ok &= ~empty
    vertices = shapely.get_num_coordinates(np.where(ok, out, None))
    for i in np.flatnonzero(ok & (vertices > MAX_VERTICES)):
        problems.append(Problem(int(i), codes[i], f"{int(vertices[i]):,} vertices, more than the {MAX_VERTICES:,} "
                                                  "allowed per area: simplify it first"))
    ok &= vertices <= MAX_VERTICES
    if not ok.any():
        return out
    sel = shapely.force_2d(out[ok])
    if crs not in ("wgs84", "cgcs2000"):
        # every vertex of every feature in one vectorised call (GCJ-02/BD-09 inverses iterate on arrays)
        sel = shapely.transform(sel, _vectorised(crs))
    out[ok] = sel
    bounds = shapely.bounds(sel)
    idx = np.flatnonzero(ok)
    finite = np.all(np.isfinite(bounds), axis=1)
    inrange = finite & (bounds[:, 0] >= -180) & (bounds[:, 2] <= 180) & (bounds[:, 1] >= -90) & (bounds[:, 3] <= 90)
    for j in np.flatnonzero(~inrange):
        i = int(idx[j])
        b = bounds[j]
        problems.append(Problem(i, codes[i], f"coordinates outside lon/lat range after conversion from {crs} "
                                             f"(bounds {b[0]:.6g}, {b[1]:.6g}, {b[2]:.6g}, {b[3]:.6g}): wrong --crs?"))
        ok[i] = False
    idx = np.flatnonzero(ok)
    valid = shapely.is_valid(out[idx])
    for j in np.flatnonzero(~valid):
        i = int(idx[j])
        reason = shapely.is_valid_reason(out[i])
        if not repair:
            problems.append(Problem(i, codes[i], f"invalid geometry: {reason} (use --repair to fix)"))
            continue
        fixed = _polygonal_part(shapely.make_valid(out[i]))
        if fixed is None:
            problems.append(Problem(i, codes[i], f"invalid geometry: {reason}; repair left no polygon"))
            continue
        before, after = shapely.area(out[i]), shapely.area(fixed)
        repaired.append(f"feature {i} (code {codes[i]}): {reason} → repaired as {fixed.geom_type} "
                        f"({len(shapely.get_parts(fixed))} part(s), area {before:.3g} → {after:.3g} deg²)")
        out[i] = fixed
    if repaired:
        notes.append(f"{len(repaired)} invalid geometr{'y' if len(repaired) == 1 else 'ies'} repaired (--repair)")
    return out


def _polygonal_part(geom):
    """Keep only the polygons of a make_valid result (it may add lines/points for collapsed parts)."""
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    if not parts:
        return None
    polys = shapely.get_parts(np.asarray(parts, dtype=object))
    return shapely.multipolygons(polys) if len(polys) > 1 else polys[0]


# --- writing ----------------------------------------------------------------------------------
def _check_parents(conn, preps: list[Prepared], parent_level_check: bool) -> None:
    if not parent_level_check:
        return
    in_set = {lvl: set() for lvl in CODE_LENGTH}
    for p in preps:
        in_set[p.level].update(p.codes)
    for p in preps:
        plevel = PARENT_LEVEL.get(p.level)
        if plevel is None:
            continue
        needed = sorted({c for c in p.parents if c} - in_set[plevel])
        found = set()
        if needed:
            found = set(conn.execute(
                text("SELECT code FROM admin_areas WHERE valid_to IS NULL AND level = :lvl AND code = ANY(:codes)"),
                {"lvl": plevel, "codes": needed},
            ).scalars())
        absent = set(needed) - found
        for i, (code, parent) in enumerate(zip(p.codes, p.parents)):
            if parent in absent:
                p.problems.append(Problem(i, code, f"parent {plevel} {parent} does not exist "
                                                   f"(import the {plevel} level first)"))


# 'same' = nothing the file carries differs from the current version, so a re-import is a no-op.
_CLASSIFY_SQL = """
    UPDATE _area_import i SET status = CASE
        WHEN a.name = i.name AND a.level = i.level AND a.parent_code IS NOT DISTINCT FROM i.parent_code
             AND (a.geom = i.geom OR ST_Equals(a.geom, i.geom)) THEN 'same'
        ELSE 'changed' END
    FROM admin_areas a WHERE a.code = i.code AND a.valid_to IS NULL
"""


def _write(conn, preps: list[Prepared], source: str | None, report: ImportReport, progress: Progress | None) -> None:
    conn.execute(text("""
        CREATE TEMP TABLE _area_import (
            level text, code text PRIMARY KEY, name text, parent_code text,
            geom geometry(MultiPolygon, 4326), props jsonb, source text, status text NOT NULL DEFAULT 'new'
        ) ON COMMIT DROP"""))
    total = sum(len(p.codes) for p in preps)
    done = 0
    raw = conn.connection.driver_connection  # psycopg3: COPY runs inside the same transaction
    with raw.cursor() as cur, cur.copy(
        "COPY _area_import (level, code, name, parent_code, geom, props, source) FROM STDIN"
    ) as copy:
        for p in preps:
            multi = [g if g.geom_type == "MultiPolygon" else shapely.multipolygons([g]) for g in p.geoms]
            wkb = shapely.to_wkb(shapely.set_srid(np.asarray(multi, dtype=object), 4326), hex=True, include_srid=True)
            src = source or p.path.name
            for k in range(len(p.codes)):
                copy.write_row((p.level, p.codes[k], p.names[k], p.parents[k], wkb[k], p.props[k], src))
                done += 1
                if progress and done % 500 == 0:
                    progress("writing", done, total)
    conn.execute(text("ANALYZE _area_import"))
    conn.execute(text(_CLASSIFY_SQL))
    counts = dict(conn.execute(text("SELECT status, count(*) FROM _area_import GROUP BY status")).all())
    report.inserted = counts.get("new", 0)
    report.updated = counts.get("changed", 0)
    report.unchanged = counts.get("same", 0)
    if report.updated:
        conn.execute(text("""UPDATE admin_areas a SET valid_to = now() FROM _area_import i
                             WHERE a.code = i.code AND a.valid_to IS NULL AND i.status = 'changed'"""))
    if report.inserted or report.updated:
        conn.execute(text("""
            INSERT INTO admin_areas (level, code, name, parent_code, geom, area_m2, props, source)
            SELECT level, code, name, parent_code, geom, ST_Area(ST_Transform(geom, 4547)), props, source
            FROM _area_import WHERE status IN ('new', 'changed') ORDER BY code"""))
    conn.execute(text("DROP TABLE _area_import"))
    if progress:
        progress("writing", total, total)


def import_many(sources: Sequence[tuple[Path, str]], crs: str | None = None, repair: bool = False,
                source: str | None = None, parent_level_check: bool = True, progress: Progress | None = None,
                *, conn=None, dry_run: bool = False, **fields) -> ImportReport:
    """Import several files (each with its level) as one set: parents may come from the set itself.

    All files are checked before anything is written; the write is one transaction (a savepoint
    when ``conn`` — a SQLAlchemy Connection inside the caller's transaction — is given).
    """
    t0 = time.perf_counter()
    preps = [prepare(Path(p), lvl, crs, repair=repair, progress=progress, **fields) for p, lvl in sources]
    levels = sorted({p.level for p in preps}, key=list(CODE_LENGTH).index)
    report = ImportReport(files=[str(p.path) for p in preps], level=",".join(levels),
                          crs=",".join(sorted({p.crs for p in preps})), dry_run=dry_run)
    report.features = sum(len(p.codes) for p in preps)
    for p in preps:
        report.notes += p.notes
        report.repaired += p.repaired
    all_codes = Counter(c for p in preps for c in p.codes)
    cross = sorted(c for c, k in all_codes.items() if k > 1)

    def run(c) -> None:
        _check_parents(c, preps, parent_level_check)
        problems = [Problem(None, code, "code appears in more than one file") for code in cross]
        for p in preps:
            problems += [Problem(q.index, q.code, f"{p.path.name}: {q.reason}" if len(preps) > 1 else q.reason)
                         for q in sorted(p.problems, key=lambda q: (q.index is None, q.index or 0))]
        if problems:
            names = ", ".join(p.path.name for p in preps)
            raise AreaImportError(f"cannot import {names} as {report.level}", problems)
        if not dry_run:
            _write(c, preps, source, report, progress)

    if conn is None:
        from gridserver.db.engine import get_engine

        with get_engine().begin() as c:
            run(c)
    else:
        with conn.begin_nested():
            run(conn)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def import_areas(path, level: str, crs: str | None = None, repair: bool = False, source: str | None = None,
                 parent_level_check: bool = True, progress: Progress | None = None, *, layer: str | None = None,
                 code_field: str | None = None, name_field: str | None = None, parent_field: str | None = None,
                 conn=None, dry_run: bool = False) -> ImportReport:
    """Import one file of admin areas or grids of ``level`` (see the module docstring for the rules).

    Raises InvalidInput/UnknownCRS (nothing written) on any problem; returns counts of inserted,
    updated (new version, history kept) and unchanged areas, notes (assumed CRS, column choices)
    and what --repair fixed.
    """
    return import_many([(Path(path), level)], crs=crs, repair=repair, source=source,
                       parent_level_check=parent_level_check, progress=progress, conn=conn, dry_run=dry_run,
                       layer=layer, code_field=code_field, name_field=name_field, parent_field=parent_field)
