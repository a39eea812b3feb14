"""Grid versions: division drafts, activation in one transaction, and history ("as at") queries.

The database sits around the pure algorithm in ``areas/division``:

* ``propose`` reads the communities of an area, their buildings with household counts (block-data
  tables ``buildings``/``households``, or buildings handed in by the caller) and the lines to respect
  (roads; rivers when a water layer exists), divides each community and measures both the proposal
  and the existing grids; ``save_draft`` stores it as a draft (tables of migration 0011).
* ``activate_draft`` makes a draft the current grid version of its communities in ONE transaction:
  the current grids get ``valid_to = effective``, the draft's grids are inserted with
  ``valid_from = effective``, the topology check must find no problem among them, block data and
  open incidents are re-linked, and a change report (buildings/households/incidents moved per
  old → new grid) is stored on the draft.
* ``valid_at``: the SQL condition for "the version in force at time T" used by ``?at=`` on area
  listings and by ``locate``. A date means the end of that day in China time (the layout in force
  that evening, so a redraw effective that day counts).
"""

from __future__ import annotations

import importlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import numpy as np
import shapely
from sqlalchemy import text

from gridserver.areas.division import Buildings, Division, divide_community
from gridserver.areas.division.core import METHODS, check_bounds, existing_quality
from gridserver.areas.division.quality import combine
from gridserver.errors import Conflict, InvalidInput, NotFound

CHINA_TZ = timezone(timedelta(hours=8))
#: Road classes grid boundaries follow (OSM ``highway`` values): streets, lanes and footpaths.
ROAD_KINDS = ("motorway", "trunk", "primary", "secondary", "tertiary", "unclassified", "residential",
              "living_street", "pedestrian", "footway", "service")
#: The same in ``basemap_roads.class`` (footways and paths are loaded as ``path``).
TABLE_ROAD_CLASSES = ROAD_KINDS + ("path",)
RESPECT_CHOICES = ("roads", "rivers")
#: Incident statuses that are finished; every other status is open and is re-linked.
CLOSED_STATUSES = ("closed", "archived", "cancelled", "rejected")

Progress = Callable[[str, int, int], None]


# ----------------------------------------------------------------------------------------------
# "as at" queries


def parse_at(value) -> datetime | None:
    """``2025-06-30`` (end of that day, UTC+8), an ISO datetime (naive = UTC+8), or None for "now"."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=CHINA_TZ)
    if isinstance(value, date):
        return datetime.combine(value, time(23, 59, 59, 999999), CHINA_TZ)
    s = str(value).strip()
    try:
        if len(s) == 10:
            return parse_at(date.fromisoformat(s))
        return parse_at(datetime.fromisoformat(s.replace("Z", "+00:00")))
    except ValueError:
        raise InvalidInput(f"at must be a date (2025-06-30) or an ISO datetime (2025-06-30T12:00:00+08:00), "
                           f"got {value!r}") from None


def valid_at(at: datetime | None, alias: str = "") -> str:
    """SQL condition on admin_areas rows: current (``at`` None) or in force at ``:at``."""
    p = f"{alias}." if alias else ""
    if at is None:
        return f"{p}valid_to IS NULL"
    return f"{p}valid_from <= :at AND ({p}valid_to IS NULL OR {p}valid_to > :at)"


# ----------------------------------------------------------------------------------------------
# inputs


def _table_columns(conn, table: str) -> set[str]:
    rows = conn.execute(text("SELECT column_name FROM information_schema.columns "
                             "WHERE table_schema = current_schema() AND table_name = :t"), {"t": table}).all()
    return {r[0] for r in rows}


def area_communities(conn, area_code: str) -> list[tuple[str, str, object]]:
    """Current communities of ``area_code`` (itself when it is a community): (code, name, geometry)."""
    code = (area_code or "").strip()
    if not code.isdigit() or len(code) not in (6, 9, 12):
        raise InvalidInput(f"--area must be a district (6), street (9) or community (12) code, got {area_code!r}")
    if conn.execute(text("SELECT 1 FROM admin_areas WHERE code = :c AND valid_to IS NULL"), {"c": code}).first() is None:
        raise NotFound(f"no current admin area with code {code!r}")
    rows = conn.execute(text(
        """SELECT code, name, ST_AsBinary(geom) AS wkb FROM admin_areas
           WHERE level = 'community' AND valid_to IS NULL AND code LIKE :c || '%' ORDER BY code"""),
        {"c": code}).all()
    if not rows:
        raise InvalidInput(f"area {code} has no current communities to divide")
    return [(r.code, r.name, shapely.from_wkb(bytes(r.wkb))) for r in rows]


def db_buildings(conn, area_code: str) -> Buildings | None:
    """Buildings with household counts from the block-data tables, or None when they do not exist.

    Households per building = ``count(households)`` joined on ``building_code``.
    """
    cols = _table_columns(conn, "buildings")
    if not {"building_code", "geom"} <= cols:
        return None
    has_hh = "building_code" in _table_columns(conn, "households")
    hh = "(SELECT count(*) FROM households h WHERE h.building_code = b.building_code)" if has_hh else "0"
    rows = conn.execute(text(
        f"""SELECT b.building_code, ST_AsBinary(b.geom) AS wkb, {hh} AS n FROM buildings b
            WHERE b.geom IS NOT NULL AND b.geom && (SELECT ST_Extent(geom)::geometry FROM admin_areas
                             WHERE code = :c AND valid_to IS NULL)
            ORDER BY b.building_code"""), {"c": area_code}).all()
    return Buildings([r.building_code for r in rows], [shapely.from_wkb(bytes(r.wkb)) for r in rows],
                     [int(r.n) for r in rows])


def _find_line_table(conn, names: tuple[str, ...]) -> tuple[str, set[str]] | None:
    for t in names:
        cols = _table_columns(conn, t)
        if "geom" in cols:
            return t, cols
    return None


def road_lines(conn, respect: tuple[str, ...], bbox) -> tuple[np.ndarray, list[str]]:
    """Lines grid boundaries should follow, WGS84, and notes on where they came from.

    Roads: the basemap table ``basemap_roads`` (migration 0009) when it has rows here, else the demo's
    road files. Rivers: outlines of ``basemap_areas`` of kind ``water``.
    """
    notes: list[str] = []
    out = []
    env = {"x0": bbox[0], "y0": bbox[1], "x1": bbox[2], "y1": bbox[3]}
    if "roads" in respect:
        rows = []
        if "class" in _table_columns(conn, "basemap_roads"):
            rows = conn.execute(text(
                """SELECT ST_AsBinary(geom) FROM basemap_roads
                   WHERE geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326) AND class = ANY(:kinds)"""),
                {**env, "kinds": list(TABLE_ROAD_CLASSES)}).all()
        if rows:
            out.append(shapely.from_wkb([bytes(r[0]) for r in rows]))
            notes.append(f"roads: {len(rows)} lines from basemap_roads")
        else:
            lines, src = file_roads(bbox)
            out.append(lines)
            notes.append(f"roads: {len(lines)} lines from {src}" if src else "roads: no road data found")
    if "rivers" in respect:
        rows = []
        if "kind" in _table_columns(conn, "basemap_areas"):
            rows = conn.execute(text(
                """SELECT ST_AsBinary(ST_Boundary(geom)) FROM basemap_areas
                   WHERE kind = 'water' AND geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)"""), env).all()
        out.append(shapely.from_wkb([bytes(r[0]) for r in rows if r[0] is not None]))
        notes.append(f"rivers: {len(rows)} water outlines from basemap_areas" if rows
                     else "rivers: no water areas here; only roads respected")
    lines = shapely.get_parts(np.concatenate(out)) if out else np.empty(0, dtype=object)
    lines = lines[shapely.get_dimensions(lines) == 1] if len(lines) else lines
    return lines, notes


def file_roads(bbox) -> tuple[np.ndarray, str | None]:
    """Roads from the demo's files when no road table exists: ``gis_data/demo/roads.gpkg``, else
    the shared Yuexiu OSM roads."""
    import geopandas as gpd

    from gridserver.settings import get_settings

    s = get_settings()
    for path in (s.gis_data_dir / "demo" / "roads.gpkg", s.shared_dir / "data" / "yuexiu" / "yuexiu_roads_osm_wgs84.geojson"):
        if Path(path).is_file():
            df = gpd.read_file(path, bbox=tuple(bbox), engine="pyogrio")
            if df.crs is not None and df.crs.to_epsg() != 4326:
                df = df.to_crs(4326)
            if "highway" in df.columns:
                df = df[df["highway"].isin(ROAD_KINDS)]
            return shapely.get_parts(np.asarray(df.geometry.values, dtype=object)), Path(path).name
    return np.empty(0, dtype=object), None


def current_grids(conn, community_codes: list[str]) -> dict[str, list[tuple[str, object]]]:
    rows = conn.execute(text(
        """SELECT parent_code, code, ST_AsBinary(geom) AS wkb FROM admin_areas
           WHERE level = 'grid' AND valid_to IS NULL AND parent_code = ANY(:p) ORDER BY code"""),
        {"p": community_codes}).all()
    out: dict[str, list] = {c: [] for c in community_codes}
    for r in rows:
        out[r.parent_code].append((r.code, shapely.from_wkb(bytes(r.wkb))))
    return out


# ----------------------------------------------------------------------------------------------
# proposing


@dataclass
class Proposal:
    area_code: str
    params: dict
    divisions: list[Division]
    existing: list[dict]
    old_grid_of: dict[str, str | None]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def report(self) -> dict:
        lo, hi = self.params["min"], self.params["max"]
        per = []
        for d, e in zip(self.divisions, self.existing):
            per.append({"community": d.community_code, "name": d.community_name,
                        "proposed": {k: v for k, v in d.report.items() if k != "per_grid"},
                        "existing": {k: v for k, v in e.items() if k != "per_grid"}, "seconds": round(d.seconds, 3)})
        with_existing = [e for e in self.existing if e.get("grids")]
        return {"proposed": combine([d.report for d in self.divisions], lo, hi),
                "existing": combine(with_existing, lo, hi),
                "communities": per, "seconds": round(self.seconds, 2), "method": self.params["method"]}


def normalize_respect(value) -> tuple[str, ...]:
    if value is None:
        return ("roads",)
    items = [v.strip() for v in (value.split(",") if isinstance(value, str) else value) if v and v.strip()]
    bad = [v for v in items if v not in RESPECT_CHOICES]
    if bad:
        raise InvalidInput(f"respect: unknown {bad[0]!r}; use a comma list of {', '.join(RESPECT_CHOICES)}")
    return tuple(dict.fromkeys(items))


def propose(conn, area_code: str, *, target: int = 300, lo: int = 200, hi: int = 500, seed: int = 0,
            method: str = "grow", respect=("roads",), buildings: Buildings | None = None,
            progress: Progress | None = None) -> Proposal:
    """Divide every community of ``area_code``; nothing is written (see ``save_draft``)."""
    import time as _time

    from gridserver.areas.division.units import _inside_index

    check_bounds(target, lo, hi)
    if method not in METHODS:
        raise InvalidInput(f"unknown division method {method!r}; use one of {', '.join(METHODS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative whole number, got {seed!r}")
    respect = normalize_respect(respect)
    t0 = _time.perf_counter()
    comms = area_communities(conn, area_code)
    notes: list[str] = []
    if buildings is None:
        buildings = db_buildings(conn, area_code)
        if buildings is None:
            raise InvalidInput("no building data: the block-data tables (buildings, households) do not exist yet; "
                               "load block data first or pass buildings from a file (--buildings FILE)")
        notes.append(f"buildings: {len(buildings)} from the block-data tables")
    if len(buildings) == 0:
        raise InvalidInput(f"area {area_code} has no buildings to divide")
    bounds = shapely.total_bounds(np.asarray([g for _, _, g in comms], dtype=object))
    lines, line_notes = road_lines(conn, respect, bounds)
    notes.extend(line_notes)
    # each building belongs to the community covering its interior point (smallest code on an edge)
    comm_geoms = np.asarray([g for _, _, g in comms], dtype=object)
    pts = buildings.points
    tree_hits = shapely.STRtree(comm_geoms).query(pts, predicate="covered_by")
    owner = np.full(len(buildings), -1, dtype=int)
    order = np.lexsort((tree_hits[1], tree_hits[0]))[::-1]
    owner[tree_hits[0][order]] = tree_hits[1][order]
    outside = int((owner < 0).sum())
    if outside:
        notes.append(f"buildings: {outside} outside every community of {area_code} were ignored")
    grids_now = current_grids(conn, [c for c, _, _ in comms])
    divisions, existing = [], []
    old_of: dict[str, str | None] = {}
    for i, (code, name, geom) in enumerate(comms):
        mine = buildings.subset(np.flatnonzero(owner == i))
        if progress:
            progress(code, i, len(comms))
        d = divide_community(code, name, geom, mine, lines, target=target, lo=lo, hi=hi, seed=seed, method=method)
        divisions.append(d)
        notes.extend(d.notes)
        old = grids_now.get(code) or []
        if old:
            existing.append(existing_quality(geom, [g for _, g in old], mine, lines, lo=lo, hi=hi))
            gi = _inside_index(mine.points, np.asarray([g for _, g in old], dtype=object)) if len(mine) else []
            for bc, k in zip(mine.codes, gi):
                old_of[bc] = old[k][0]
        else:
            existing.append({"grids": 0})
    if progress:
        progress("", len(comms), len(comms))
    params = {"area": area_code, "target_households": target, "min": lo, "max": hi, "seed": seed,
              "method": method, "respect": list(respect)}
    prop = Proposal(area_code, params, divisions, existing, old_of, notes, _time.perf_counter() - t0)
    prop._buildings = buildings  # noqa: SLF001 (kept for save_draft: interior points)
    return prop


# ----------------------------------------------------------------------------------------------
# drafts


def save_draft(conn, prop: Proposal, created_by: str | None = None) -> int:
    """Store a proposal as a draft; returns its id. Bulk: COPY-free executemany over a few thousand rows."""
    report = prop.report()
    row = conn.execute(text(
        """INSERT INTO grid_drafts (area_code, method, params, communities, report, notes, created_by)
           VALUES (:a, :m, CAST(:p AS jsonb), :c, CAST(:r AS jsonb), CAST(:n AS jsonb), :u) RETURNING id"""),
        {"a": prop.area_code, "m": prop.params["method"], "p": json.dumps(prop.params),
         "c": [d.community_code for d in prop.divisions], "r": json.dumps(report, ensure_ascii=False),
         "n": json.dumps(prop.notes, ensure_ascii=False), "u": created_by}).first()
    draft_id = int(row[0])
    grid_rows = [{"d": draft_id, "code": g.code, "name": g.name, "parent": d.community_code,
                  "wkb": shapely.to_wkb(g.geom), "h": g.households, "b": g.buildings}
                 for d in prop.divisions for g in d.grids]
    conn.execute(text(
        """INSERT INTO grid_draft_grids (draft_id, code, name, parent_code, geom, households, buildings)
           VALUES (:d, :code, :name, :parent, ST_Multi(ST_GeomFromWKB(:wkb, 4326)), :h, :b)"""), grid_rows)
    b = prop._buildings  # noqa: SLF001
    hh = dict(zip(b.codes.tolist(), b.households.tolist()))
    pts = dict(zip(b.codes.tolist(), shapely.to_wkb(b.points).tolist()))
    brows = [{"d": draft_id, "b": bc, "g": gc, "h": int(hh[bc]), "o": prop.old_grid_of.get(bc), "wkb": pts[bc]}
             for d in prop.divisions for bc, gc in zip(d.building_codes.tolist(), d.building_grid.tolist())]
    if brows:
        conn.execute(text(
            """INSERT INTO grid_draft_buildings (draft_id, building_code, grid_code, households, old_grid_code, point)
               VALUES (:d, :b, :g, :h, :o, ST_GeomFromWKB(:wkb, 4326))"""), brows)
    return draft_id


def _draft_row(conn, draft_id: int, lock: bool = False):
    row = conn.execute(text(
        f"""SELECT id, area_code, status, method, params, communities, report, notes, created_by, created_at,
                   activated_at, activated_by, effective_from, change_report
            FROM grid_drafts WHERE id = :id {'FOR UPDATE' if lock else ''}"""), {"id": draft_id}).mappings().first()
    if row is None:
        raise NotFound(f"no grid division draft with id {draft_id}")
    return row


def _iso(v):
    return v.isoformat() if isinstance(v, datetime) else v


def draft_summary(row) -> dict:
    return {"id": row["id"], "area_code": row["area_code"], "status": row["status"], "method": row["method"],
            "params": row["params"], "communities": list(row["communities"]), "created_by": row["created_by"],
            "created_at": _iso(row["created_at"]), "activated_at": _iso(row["activated_at"]),
            "effective_from": _iso(row["effective_from"]),
            "grids": row["report"].get("proposed", {}).get("grids"),
            "households_cv": row["report"].get("proposed", {}).get("households_cv"),
            "existing_households_cv": row["report"].get("existing", {}).get("households_cv")}


def list_drafts(conn, area: str | None = None, limit: int = 50) -> list[dict]:
    rows = conn.execute(text(
        """SELECT id, area_code, status, method, params, communities, report, notes, created_by, created_at,
                  activated_at, activated_by, effective_from, change_report
           FROM grid_drafts WHERE CAST(:a AS text) IS NULL OR area_code LIKE :a || '%' OR :a LIKE area_code || '%'
           ORDER BY id DESC LIMIT :l"""), {"a": area, "l": limit}).mappings().all()
    return [draft_summary(r) for r in rows]


def get_draft(conn, draft_id: int, *, geometry: bool = True, side: str = "draft") -> dict:
    """A draft as a GeoJSON FeatureCollection of its grids (``side="current"``: the grids in force now
    in the same communities, for a side-by-side view) with the draft's summary and quality report."""
    row = _draft_row(conn, draft_id)
    geo = ", ST_AsGeoJSON(geom, 7) AS geometry" if geometry else ""
    if side == "draft":
        rows = conn.execute(text(
            f"""SELECT code, name, parent_code, households, buildings {geo}
                FROM grid_draft_grids WHERE draft_id = :id ORDER BY code"""), {"id": draft_id}).mappings().all()
    elif side == "current":
        rows = conn.execute(text(
            f"""SELECT a.code, a.name, a.parent_code,
                       (SELECT coalesce(sum(b.households), 0) FROM grid_draft_buildings b
                         WHERE b.draft_id = :id AND b.old_grid_code = a.code) AS households,
                       (SELECT count(*) FROM grid_draft_buildings b
                         WHERE b.draft_id = :id AND b.old_grid_code = a.code) AS buildings {geo.replace('(geom', '(a.geom')}
                FROM admin_areas a WHERE a.level = 'grid' AND a.valid_to IS NULL AND a.parent_code = ANY(:c)
                ORDER BY a.code"""), {"id": draft_id, "c": list(row["communities"])}).mappings().all()
    else:
        raise InvalidInput(f"side must be 'draft' or 'current', got {side!r}")
    feats = []
    for r in rows:
        props = {k: r[k] for k in ("code", "name", "parent_code", "households", "buildings")}
        props["households"] = int(props["households"])
        props["buildings"] = int(props["buildings"])
        feats.append({"type": "Feature", "id": r["code"], "properties": props,
                      "geometry": json.loads(r["geometry"]) if geometry else None})
    return {"type": "FeatureCollection", "features": feats, "side": side, "draft": draft_summary(row),
            "report": row["report"], "notes": row["notes"], "change_report": row["change_report"]}


def discard_draft(conn, draft_id: int) -> dict:
    row = _draft_row(conn, draft_id, lock=True)
    if row["status"] != "draft":
        raise Conflict(f"draft {draft_id} is {row['status']}; only a draft can be discarded")
    conn.execute(text("UPDATE grid_drafts SET status = 'discarded' WHERE id = :id"), {"id": draft_id})
    return {"id": draft_id, "status": "discarded"}


# ----------------------------------------------------------------------------------------------
# activation


def _optional(module: str, attr: str):
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise
    return getattr(mod, attr, None)


def _pairs(counter: Counter, hh: Counter | None = None) -> list[dict]:
    out = []
    for (a, b), n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
        item = {"from": a, "to": b, "count": n}
        if hh is not None:
            item["households"] = int(hh[(a, b)])
        out.append(item)
    return out


def _open_incidents(conn, communities: list[str]) -> dict[int, tuple[str | None, float, float]]:
    finished = _optional("gridserver.incidents.relink", "FINISHED") or CLOSED_STATUSES
    rows = conn.execute(text(
        """SELECT id, grid_code, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM incidents
           WHERE status <> ALL(:closed) AND (community_code = ANY(:c) OR left(grid_code, 12) = ANY(:c))"""),
        {"closed": list(finished), "c": communities}).all()
    return {int(r.id): (r.grid_code, float(r.lon), float(r.lat)) for r in rows}


#: Uncovered pieces of a community smaller than this (m², EPSG:4547) are numerical dust left by noding
#: and storage; activation gives each to the new grid sharing most of its edge. Larger gaps still fail.
SLIVER_M2 = 1.0


def absorb_slivers(conn, communities: list[str], max_m2: float = SLIVER_M2) -> int:
    """Give every uncovered piece (< ``max_m2``) of each community to its current grid with the longest
    shared edge, so the grids tile the community exactly; returns how many grids grew."""
    return conn.execute(text(
        """WITH gaps AS MATERIALIZED (
               SELECT c.code AS parent,
                      (ST_Dump(ST_Difference(c.geom, ST_Union(g.geom)))).geom AS piece
               FROM admin_areas c
               JOIN admin_areas g ON g.parent_code = c.code AND g.level = 'grid' AND g.valid_to IS NULL
               WHERE c.level = 'community' AND c.valid_to IS NULL AND c.code = ANY(:c)
               GROUP BY c.code, c.geom),
           small AS MATERIALIZED (
               SELECT row_number() OVER () AS n, parent, piece FROM gaps
               WHERE ST_Dimension(piece) = 2 AND ST_Area(ST_Transform(piece, 4547)) < :max),
           best AS MATERIALIZED (
               SELECT DISTINCT ON (s.n) s.n, g.id, s.piece
               FROM small s
               JOIN admin_areas g ON g.parent_code = s.parent AND g.level = 'grid' AND g.valid_to IS NULL
                    AND ST_DWithin(g.geom, s.piece, 1e-7)
               ORDER BY s.n, ST_Length(ST_Intersection(ST_Boundary(g.geom), ST_Buffer(s.piece, 1e-7))) DESC, g.code),
           merged AS (SELECT id, ST_Union(piece) AS pieces, count(*) AS k FROM best GROUP BY id)
           UPDATE admin_areas a
           SET geom = ST_Multi(ST_CollectionExtract(ST_Union(a.geom, m.pieces), 3)),
               area_m2 = ST_Area(ST_Transform(ST_Union(a.geom, m.pieces), 4547))
           FROM merged m WHERE a.id = m.id
           RETURNING m.k"""), {"c": communities, "max": max_m2}).rowcount


def activate_draft(conn, draft_id: int, *, activated_by: str | None = None, effective=None) -> dict:
    """Make the draft the grid version of its communities; everything in the caller's ONE transaction.

    Raises Conflict when the draft is not a draft any more or its communities' grids changed since it
    was made, InvalidInput when ``effective`` is before the grids it replaces began or the new grids
    fail the topology check. Returns the change report (also stored on the draft).
    """
    from gridserver.areas.topology import check_topology

    row = _draft_row(conn, draft_id, lock=True)
    if row["status"] != "draft":
        raise Conflict(f"draft {draft_id} is {row['status']}; only a draft can be activated")
    comms = list(row["communities"])
    at = parse_at(effective) if effective is not None else conn.execute(text("SELECT now()")).scalar_one()
    changed = conn.execute(text(
        """SELECT code FROM admin_areas WHERE parent_code = ANY(:c) AND level = 'grid'
           AND (valid_from > :made OR (valid_to IS NOT NULL AND valid_to > :made)) LIMIT 1"""),
        {"c": comms, "made": row["created_at"]}).first()
    gone = conn.execute(text(
        """SELECT c FROM unnest(CAST(:c AS text[])) c WHERE NOT EXISTS (
               SELECT 1 FROM admin_areas a WHERE a.code = c AND a.valid_to IS NULL AND a.valid_from <= :made)"""),
        {"c": comms, "made": row["created_at"]}).first()
    if changed or gone:
        what = f"grid {changed[0]}" if changed else f"community {gone[0]}"
        raise Conflict(f"draft {draft_id} is stale: {what} changed after the draft was made; divide again")
    latest = conn.execute(text(
        "SELECT max(valid_from) FROM admin_areas WHERE level = 'grid' AND valid_to IS NULL AND parent_code = ANY(:c)"),
        {"c": comms}).scalar_one()
    if latest is not None and at < latest:
        raise InvalidInput(f"effective date {at.isoformat()} is before the current grids began ({latest.isoformat()})")
    before_inc = _open_incidents(conn, comms) if _table_columns(conn, "incidents") else {}

    closed = conn.execute(text(
        """UPDATE admin_areas SET valid_to = :at
           WHERE level = 'grid' AND valid_to IS NULL AND parent_code = ANY(:c)"""), {"at": at, "c": comms}).rowcount
    opened = conn.execute(text(
        """INSERT INTO admin_areas (level, code, name, parent_code, geom, area_m2, source, valid_from, props)
           SELECT 'grid', code, name, parent_code, geom, ST_Area(ST_Transform(geom, 4547)), :src, :at,
                  jsonb_build_object('households', households, 'buildings', buildings, 'draft_id', draft_id)
           FROM grid_draft_grids WHERE draft_id = :id ORDER BY code"""),
        {"id": draft_id, "at": at, "src": f"division draft {draft_id}"}).rowcount
    absorb_slivers(conn, comms)
    problems = []
    for c in comms:
        problems.extend(check_topology(conn, parent_code=c, level="grid"))
    if problems:
        shown = "; ".join(p.describe() for p in problems[:5])
        raise InvalidInput(f"draft {draft_id} fails the topology check ({len(problems)} problem(s)): {shown}")

    relink: dict = {}
    fn = _optional("gridserver.blockdata.service", "relink_all")
    if fn is not None:
        relink["blockdata"] = fn(conn, at=at)
    elif {"building_code", "grid_code"} <= _table_columns(conn, "buildings"):
        n = conn.execute(text(
            """UPDATE buildings b SET grid_code = d.grid_code FROM grid_draft_buildings d
               WHERE d.draft_id = :id AND d.building_code = b.building_code
                 AND b.grid_code IS DISTINCT FROM d.grid_code"""), {"id": draft_id}).rowcount
        relink["blockdata"] = {"note": "gridserver.blockdata.service.relink_all not available: buildings.grid_code "
                                       "set from the draft", "buildings_updated": n}
        if {"building_code", "grid_code"} <= _table_columns(conn, "households"):
            relink["blockdata"]["households_updated"] = conn.execute(text(
                """UPDATE households h SET grid_code = b.grid_code FROM buildings b
                   WHERE h.building_code = b.building_code AND h.grid_code IS DISTINCT FROM b.grid_code
                     AND b.building_code IN (SELECT building_code FROM grid_draft_buildings WHERE draft_id = :id)"""),
                {"id": draft_id}).rowcount
    else:
        relink["blockdata"] = "no block-data tables and no gridserver.blockdata.service.relink_all: nothing to re-link"
    fn = _optional("gridserver.incidents.relink", "relink_open_incidents")
    if fn is not None:
        relink["incidents"] = fn(conn)
    elif before_inc:
        relink["incidents"] = _relink_incidents_fallback(conn, before_inc)
    else:
        relink["incidents"] = "no open incidents in these communities"
    after_inc = _open_incidents(conn, comms) if before_inc else {}

    # change report: buildings/households from the draft's assignment, incidents before/after
    moved_b, moved_h = Counter(), Counter()
    nb = nh = 0
    for r in conn.execute(text(
            "SELECT old_grid_code, grid_code, households FROM grid_draft_buildings WHERE draft_id = :id"),
            {"id": draft_id}):
        if r.old_grid_code != r.grid_code:
            moved_b[(r.old_grid_code, r.grid_code)] += 1
            moved_h[(r.old_grid_code, r.grid_code)] += int(r.households)
            nb += 1
            nh += int(r.households)
    moved_i = Counter()
    for iid, (old, _, _) in before_inc.items():
        new = after_inc.get(iid, (None,))[0]
        if old != new:
            moved_i[(old, new)] += 1
    report = {
        "draft_id": draft_id, "effective_from": at.isoformat(), "communities": comms,
        "grids_closed": closed, "grids_opened": opened,
        "buildings": {"moved": nb, "households_moved": nh, "by_pair": _pairs(moved_b, moved_h)},
        "incidents": {"open": len(before_inc), "moved": sum(moved_i.values()), "by_pair": _pairs(moved_i)},
        "relink": relink,
    }
    conn.execute(text(
        """UPDATE grid_drafts SET status = 'superseded'
           WHERE status = 'active' AND id <> :id AND communities && CAST(:c AS text[])"""), {"id": draft_id, "c": comms})
    conn.execute(text(
        """UPDATE grid_drafts SET status = 'active', activated_at = now(), activated_by = :u, effective_from = :at,
                  change_report = CAST(:r AS jsonb) WHERE id = :id"""),
        {"id": draft_id, "u": activated_by, "at": at, "r": json.dumps(report, ensure_ascii=False, default=str)})
    return report


def _relink_incidents_fallback(conn, before: dict[int, tuple[str | None, float, float]]) -> dict:
    """Until the incident package's relink exists: locate each open incident again (single-point path)."""
    from gridserver.areas.locate import locate_point
    from gridserver.errors import OutsideArea

    updated = 0
    for iid, (old, lon, lat) in before.items():
        try:
            loc = locate_point(conn, lon, lat, "wgs84")
        except OutsideArea:
            continue
        if loc.code("grid") != old:
            conn.execute(text(
                """UPDATE incidents SET grid_code = :g, community_code = :c, street_code = :s, district_code = :d,
                          updated_at = now() WHERE id = :id"""),
                {"g": loc.code("grid"), "c": loc.code("community"), "s": loc.code("street"),
                 "d": loc.code("district"), "id": iid})
            updated += 1
    return {"note": "gridserver.incidents.relink.relink_open_incidents not available: open incidents located again "
                    "with areas.locate", "open": len(before), "updated": updated}


def history(conn, area: str) -> list[dict]:
    """Grid versions of an area: one entry per (valid_from, valid_to) among its grids, newest first."""
    rows = conn.execute(text(
        """SELECT valid_from, valid_to, count(*) AS grids, min(source) AS source
           FROM admin_areas WHERE level = 'grid' AND code LIKE :a || '%'
           GROUP BY valid_from, valid_to ORDER BY valid_from DESC, valid_to NULLS FIRST"""), {"a": area}).mappings().all()
    return [{"valid_from": _iso(r["valid_from"]), "valid_to": _iso(r["valid_to"]), "grids": r["grids"],
             "source": r["source"]} for r in rows]
