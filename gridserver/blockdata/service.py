"""Block-data services: grid linking, re-linking after a redraw (with history), roll-ups, profiles,
listings and the five-code links. Used by the importer, the CLI, the API and the grid-division work.

Grid rule (one rule, as in ``areas/locate.py``): a *point* belongs to the current grid that covers it,
the smallest code on shared edges. A *building* belongs to the grid holding the largest part of its
footprint (area in EPSG:4547; ties → smallest code); a building without footprint goes by its
address point. Houses, households and people follow their building; without a known building, their
standard address's point; businesses their building, else their own point, else their address point.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timezone

from sqlalchemy import text

from gridserver.errors import InvalidInput, NotFound

KINDS = ("building", "house", "household", "person", "business")
TABLE = {"building": "buildings", "house": "houses", "household": "households", "person": "people",
         "business": "businesses"}
TAGS = {"elderly_alone": "独居老人", "disabled": "残疾人", "left_behind_child": "留守儿童", "rental": "出租屋住户",
        "floating": "流动人口"}

#: The covering-grid rule for a point expression (same as areas/locate.py's single-point query).
_POINT_GRID = ("(SELECT a.code FROM admin_areas a WHERE a.level = 'grid' AND a.valid_to IS NULL "
               "AND ST_Covers(a.geom, {pt}) ORDER BY a.code LIMIT 1)")

_BUILDING_GRID = """
    SELECT r.id, coalesce(fp.code, {point_grid}) AS new_grid, coalesce(fp.n, 0) AS n_grids, fp.share
    FROM (SELECT * FROM buildings ORDER BY grid_code, id OFFSET 0) r   -- neighbours in a row: PostGIS reuses the prepared grid
    LEFT JOIN std_addresses s ON s.code = r.address_code
    LEFT JOIN LATERAL (
        SELECT c.code, count(*) OVER () AS n, c.part / nullif(sum(c.part) OVER (), 0) AS share FROM (
            SELECT a.code,
                   CASE WHEN ST_Covers(a.geom, r.geom) THEN ST_Area(ST_Transform(r.geom, 4547))
                        ELSE ST_Area(ST_Transform(ST_Intersection(a.geom, r.geom), 4547)) END AS part
            FROM admin_areas a
            WHERE a.level = 'grid' AND a.valid_to IS NULL AND ST_Intersects(a.geom, r.geom)
        ) c WHERE c.part > 0
        ORDER BY c.part DESC, c.code LIMIT 1
    ) fp ON r.geom IS NOT NULL
    WHERE {where}
"""

_CHILD_GRID = {
    "house": "coalesce(b.grid_code, {pg})",
    "household": "coalesce(b.grid_code, {pg})",
    "person": "coalesce(b.grid_code, {pg})",
    "business": "coalesce(b.grid_code, {own}, {pg})",
}


def _child_sql(kind: str, where: str) -> str:
    pg = _POINT_GRID.format(pt="s.geom")
    expr = _CHILD_GRID[kind].format(pg=pg, own=_POINT_GRID.format(pt="r.geom"))
    return (f"SELECT r.id, {expr} AS new_grid FROM {TABLE[kind]} r "
            f"LEFT JOIN buildings b ON b.building_code = r.building_code AND b.grid_code IS NOT NULL "
            f"LEFT JOIN std_addresses s ON s.code = r.address_code AND r.address_code IS NOT NULL "
            f"WHERE {where}")


def _apply(conn, kind: str, select_sql: str, params: dict, *, at, reason: str, moves: Counter) -> tuple[int, list]:
    """Compute new grids into a temp table, record changes (old grid known) and apply them."""
    conn.execute(text("DROP TABLE IF EXISTS tmp_relink"))
    conn.execute(text(f"CREATE TEMP TABLE tmp_relink ON COMMIT DROP AS {select_sql}"), params)
    conn.execute(text("CREATE INDEX ON tmp_relink (id)"))
    conn.execute(text("ANALYZE tmp_relink"))
    t = TABLE[kind]
    for old, new, n in conn.execute(text(
            f"SELECT r.grid_code, t.new_grid, count(*) FROM {t} r JOIN tmp_relink t ON t.id = r.id "
            f"WHERE r.grid_code IS NOT NULL AND r.grid_code IS DISTINCT FROM t.new_grid GROUP BY 1, 2")).all():
        moves[f"{old}→{new}"] += n
    conn.execute(text(
        f"INSERT INTO bd_grid_changes (kind, record_id, old_grid, new_grid, changed_at, reason) "
        f"SELECT :k, r.id, r.grid_code, t.new_grid, coalesce(CAST(:at AS timestamptz), now()), :why "
        f"FROM {t} r JOIN tmp_relink t ON t.id = r.id "
        f"WHERE r.grid_code IS NOT NULL AND r.grid_code IS DISTINCT FROM t.new_grid"),
        {"k": kind, "at": at, "why": reason})
    n = conn.execute(text(f"UPDATE {t} r SET grid_code = t.new_grid FROM tmp_relink t "
                          f"WHERE t.id = r.id AND r.grid_code IS DISTINCT FROM t.new_grid")).rowcount
    straddling = []
    if kind == "building":
        straddling = [dict(r._mapping) for r in conn.execute(text(
            "SELECT b.building_code, t.new_grid AS grid_code, t.n_grids, round(t.share::numeric, 3) AS share "
            "FROM tmp_relink t JOIN buildings b ON b.id = t.id WHERE t.n_grids > 1 ORDER BY b.building_code"))]
    conn.execute(text("DROP TABLE tmp_relink"))
    return n, straddling


def link_grids(conn, *, kinds=KINDS, where: dict[str, str] | None = None, params: dict | None = None,
               at=None, reason: str = "link") -> dict:
    """Set grid_code of the selected records by the rule above (``where[kind]`` is an SQL filter on
    alias ``r``; default: all). Changes of an already-set grid are recorded in bd_grid_changes.

    Returns {"changed": {kind: n}, "moves": {"old→new": n}, "straddling": [...buildings in >1 grid]}.
    """
    where = where or {}
    params = params or {}
    moves: Counter = Counter()
    changed, straddling = {}, []
    for kind in KINDS:
        if kind not in kinds:
            continue
        w = where.get(kind, "true")
        if kind == "building":
            sql = _BUILDING_GRID.format(point_grid=_POINT_GRID.format(pt="s.geom"), where=w)
        else:
            sql = _child_sql(kind, w)
        changed[kind], st = _apply(conn, kind, sql, params, at=at, reason=reason, moves=moves)
        straddling += st
    return {"changed": changed, "moves": dict(moves), "straddling": straddling}


def grid_into(conn, kind: str, tmp: str, *, key: str, reason: str, at=None) -> set[str]:
    """Fill ``tmp.grid_code`` (a staging table with building_code, address_code and the natural
    ``key``) by the rule for ``kind`` (house/household/person), and record in bd_grid_changes the
    existing records whose grid this will change. Used by bulk imports before their upsert."""
    expr = _CHILD_GRID[kind].format(pg=_POINT_GRID.format(pt="s.geom"), own="NULL")
    conn.execute(text(f"ALTER TABLE {tmp} ADD COLUMN IF NOT EXISTS grid_code text"))
    conn.execute(text(
        f"UPDATE {tmp} t SET grid_code = q.g FROM (SELECT r.ctid AS rid, {expr} AS g FROM {tmp} r "
        f"LEFT JOIN buildings b ON b.building_code = r.building_code AND b.grid_code IS NOT NULL "
        f"LEFT JOIN std_addresses s ON s.code = r.address_code AND r.address_code IS NOT NULL) q WHERE t.ctid = q.rid"))
    conn.execute(text(
        f"INSERT INTO bd_grid_changes (kind, record_id, old_grid, new_grid, changed_at, reason) "
        f"SELECT DISTINCT ON (x.id) :k, x.id, x.grid_code, t.grid_code, coalesce(CAST(:at AS timestamptz), now()), :why "
        f"FROM {TABLE[kind]} x JOIN {tmp} t ON t.{key} = x.{key} "
        f"WHERE x.grid_code IS NOT NULL AND x.grid_code IS DISTINCT FROM t.grid_code ORDER BY x.id"),
        {"k": kind, "at": at, "why": reason})
    # grids whose roll-ups this changes: the new ones and those records leave
    return set(conn.execute(text(
        f"SELECT grid_code FROM {tmp} WHERE grid_code IS NOT NULL UNION "
        f"SELECT x.grid_code FROM {TABLE[kind]} x JOIN {tmp} t ON t.{key} = x.{key} WHERE x.grid_code IS NOT NULL")).scalars())


def relink_all(conn, at=None) -> dict:
    """Re-assign every building, house, household, person and business to the CURRENT grids.

    Call after activating new grids (in the same transaction is fine). Each change is recorded in
    ``bd_grid_changes`` (changed_at = ``at`` or now), so listings with ``?at=DATE`` still answer who
    was in a grid before. Roll-ups are refreshed. Returns counts moved per old→new grid::

        {"moved": {"440104001001001→440104001001005": 812, ...}, "changed": {"person": 812, ...},
         "total_moved": 1234, "straddling": 17}
    """
    r = link_grids(conn, at=at, reason="relink after grid redraw")
    refresh_rollups(conn)
    return {"moved": r["moves"], "changed": r["changed"], "total_moved": sum(r["changed"].values()),
            "straddling": len(r["straddling"])}


# --- roll-ups --------------------------------------------------------------------------------------
_AGE = ("CASE WHEN {y} - birth_year <= 14 THEN '0-14' WHEN {y} - birth_year <= 34 THEN '15-34' "
        "WHEN {y} - birth_year <= 59 THEN '35-59' WHEN {y} - birth_year <= 79 THEN '60-79' ELSE '80+' END")

_ROLLUP_SQL = """
INSERT INTO bd_rollup (grid_code, metric, value, last_at)
SELECT grid_code, metric, sum(n), max(last_at) FROM (
    -- each base table is read once: every row counts towards several metrics
    SELECT grid_code, unnest(ARRAY['buildings', 'source.building.' || source]) AS metric, count(*) AS n,
           max(confirmed_at) AS last_at FROM buildings WHERE {w} GROUP BY 1, 2
    UNION ALL SELECT grid_code, 'houses', count(*), max(confirmed_at) FROM houses WHERE {w} GROUP BY 1
    UNION ALL SELECT grid_code, unnest(ARRAY['households', 'source.household.' || source]), count(*), max(confirmed_at)
        FROM households WHERE {w} GROUP BY 1, 2
    UNION ALL SELECT grid_code, unnest(ARRAY['businesses', 'business.category.' || coalesce(category, '未分类'),
                                             'source.business.' || source]), count(*), max(confirmed_at)
        FROM businesses WHERE {w} GROUP BY 1, 2
    UNION ALL SELECT grid_code, m, count(*), max(confirmed_at) FROM (
        SELECT grid_code, confirmed_at,
               unnest(ARRAY['people', 'people.sex.' || coalesce(sex, '?'), 'people.age.' || coalesce({age}, '?'),
                            'people.residence.' || residence, 'source.person.' || source]) AS m
        FROM people WHERE {w}) p GROUP BY 1, 2
    UNION ALL SELECT p.grid_code, 'tag.' || t.tag, count(*), max(t.set_at) FROM person_tags t JOIN people p ON p.id = t.person_id
        WHERE t.removed_at IS NULL AND {pw} GROUP BY 1, 2
) x WHERE grid_code IS NOT NULL GROUP BY 1, 2
"""


def refresh_rollups(conn, grids: list[str] | None = None) -> int:
    """Recompute the per-grid roll-ups (all grids, or only ``grids``); returns rows written."""
    if grids is not None:
        grids = sorted({g for g in grids if g})
        if not grids:
            return 0
        conn.execute(text("DELETE FROM bd_rollup WHERE grid_code = ANY(:g)"), {"g": grids})
        w, pw = "grid_code = ANY(:g)", "p.grid_code = ANY(:g)"
    else:
        conn.execute(text("DELETE FROM bd_rollup"))
        w, pw = "true", "true"
    year = date.today().year
    return conn.execute(text(_ROLLUP_SQL.format(w=w, pw=pw, age=_AGE.format(y=year))), {"g": grids}).rowcount


# --- areas -----------------------------------------------------------------------------------------
def area_info(conn, code: str) -> dict:
    """The current admin area (level, name) or NotFound."""
    row = conn.execute(text("SELECT code, level, name, parent_code FROM admin_areas WHERE code = :c AND valid_to IS NULL"),
                       {"c": code}).mappings().first()
    if row is None:
        raise NotFound(f"区划不存在 no current area or grid with code {code!r}")
    return dict(row)


def profile(conn, code: str, area: dict | None = None) -> dict:
    """The area's profile (网格画像) from the roll-ups plus live incident counts and the grid workers.

    Two statements: the roll-up sums, and one row with incidents, workers and the grid count."""
    area = area or area_info(conn, code)
    level = area["level"]
    # a grid is one key of the roll-up; a parent sums its grids (prefix codes)
    in_area = "grid_code = :c" if level == "grid" else "grid_code LIKE :p"
    rows = conn.execute(text(f"SELECT metric, sum(value) AS v, max(last_at) AS last_at FROM bd_rollup "
                             f"WHERE {in_area} GROUP BY metric"), {"c": code, "p": code + "%"}).all()
    m = {r.metric: int(r.v) for r in rows}
    last = {r.metric: r.last_at for r in rows}

    def group(prefix: str) -> dict:
        return {k[len(prefix):]: v for k, v in sorted(m.items()) if k.startswith(prefix)}

    freshness = []
    for k, v in sorted(m.items()):
        if k.startswith("source."):
            _, kind, src = k.split(".", 2)
            freshness.append({"kind": kind, "source": src, "rows": v,
                              "last_confirmed": last[k].isoformat() if last[k] else None})
    live = conn.execute(text(
        "SELECT (SELECT count(*) FROM incidents i WHERE i.{lv}_code = :c AND i.created_at >= now() - interval '30 days' "
        "        AND i.status <> 'closed') AS open, "
        "       (SELECT count(*) FROM incidents i WHERE i.{lv}_code = :c AND i.created_at >= now() - interval '30 days' "
        "        AND i.status = 'closed') AS closed, "
        "       (SELECT coalesce(json_agg(json_build_object('username', u.username, 'full_name', u.full_name, "
        "                'scope_code', u.scope_code) ORDER BY u.scope_code, u.username), '[]') FROM "
        "          (SELECT * FROM users WHERE role = 'grid_worker' AND active AND scope_code LIKE :p "
        "           ORDER BY scope_code, username LIMIT 200) u) AS workers, "
        "       CASE WHEN :lv = 'grid' THEN 1 ELSE (SELECT count(*) FROM admin_areas WHERE level = 'grid' "
        "            AND valid_to IS NULL AND code LIKE :p) END AS grids".replace("{lv}", level)),
        {"c": code, "p": code + "%", "lv": level}).first()
    inc, workers, n_grids = live, live.workers, live.grids
    tags = group("tag.")
    return {
        "area": area, "grids": n_grids,
        "buildings": m.get("buildings", 0), "houses": m.get("houses", 0), "households": m.get("households", 0),
        "people": {"total": m.get("people", 0), "by_sex": group("people.sex."), "by_age": group("people.age."),
                   "by_residence": group("people.residence.")},
        "businesses": {"total": m.get("businesses", 0), "by_category": group("business.category.")},
        "tagged_groups": {k: {"label": TAGS.get(k, k), "people": v} for k, v in tags.items()},
        "incidents_30d": {"open": inc.open, "closed": inc.closed},
        "workers": workers,
        "freshness": freshness,
    }


# --- listings --------------------------------------------------------------------------------------
LIST_KINDS = {"people": "person", "households": "household", "buildings": "building", "businesses": "business"}
_FILTERS = {
    "people": {"sex": "r.sex = :sex", "residence": "r.residence = :residence", "building_code": "r.building_code = :building_code",
               "household_code": "r.household_code = :household_code", "tag": "EXISTS (SELECT 1 FROM person_tags t WHERE "
               "t.person_id = r.id AND t.removed_at IS NULL AND t.tag = :tag)",
               "min_age": "r.birth_year <= :year - :min_age", "max_age": "r.birth_year >= :year - :max_age"},
    "households": {"building_code": "r.building_code = :building_code"},
    "buildings": {"use": "r.use = :use"},
    "businesses": {"category": "r.category = :category", "building_code": "r.building_code = :building_code"},
}
_COLUMNS = {
    "people": "r.id, r.id_hash, r.id_masked, r.name, r.name_masked, r.phone_masked, r.sex, r.birth_year, r.residence, "
              "r.household_code, r.house_code, r.building_code, r.address_code, r.source, r.confirmed_at, "
              "(SELECT coalesce(array_agg(t.tag ORDER BY t.tag), '{}') FROM person_tags t WHERE t.person_id = r.id "
              "AND t.removed_at IS NULL) AS tags",
    "households": "r.id, r.household_code, r.house_code, r.building_code, r.address_code, r.kind, r.members, r.source, r.confirmed_at",
    "buildings": "r.id, r.building_code, r.address_code, r.name, r.floors, r.use, r.year_built, r.source, r.confirmed_at, "
                 "(SELECT count(*) FROM households h WHERE h.building_code = r.building_code) AS households",
    "businesses": "r.id, r.credit_code, r.name, r.category, r.address_code, r.building_code, r.house_code, r.source, "
                  "r.confirmed_at, ST_X(r.geom) AS lon, ST_Y(r.geom) AS lat",
}


def list_records(conn, what: str, code: str, *, at: datetime | None = None, filters: dict | None = None,
                 limit: int = 50, cursor: int | None = None) -> dict:
    """A page of records in area ``code`` (grid or parent), keyset-paginated by id.

    With ``at``, the records that were in the area at that time: grid as of ``at`` (the old grid of
    the first change after ``at``, else the current grid), created on or before ``at``.
    """
    if what not in LIST_KINDS:
        raise NotFound(f"unknown listing {what!r}; use {', '.join(LIST_KINDS)}")
    if not 1 <= limit <= 1000:
        raise InvalidInput(f"limit must be between 1 and 1000, got {limit}")
    kind = LIST_KINDS[what]
    t = TABLE[kind]
    params: dict = {"p": code + "%", "limit": limit + 1, "cursor": cursor or 0, "year": date.today().year}
    conds = ["r.id > :cursor"]
    for name, value in (filters or {}).items():
        if value is None:
            continue
        if name not in _FILTERS[what]:
            raise InvalidInput(f"unknown filter {name!r} for {what}; use {', '.join(_FILTERS[what])}")
        conds.append(_FILTERS[what][name])
        params[name] = value
    if at is None:
        grid_expr = "r.grid_code"
        conds.append("r.grid_code LIKE :p")
        frm = f"{t} r"
    else:
        params["at"] = at
        params["kind"] = kind
        grid_expr = "coalesce(c.old_grid, r.grid_code)"
        frm = (f"{t} r LEFT JOIN LATERAL (SELECT g.old_grid FROM bd_grid_changes g WHERE g.kind = :kind "
               f"AND g.record_id = r.id AND g.changed_at > :at ORDER BY g.changed_at, g.id LIMIT 1) c ON true")
        conds.append("r.created_at <= :at")
        conds.append(f"r.id IN (SELECT id FROM {t} WHERE grid_code LIKE :p UNION "
                     f"SELECT record_id FROM bd_grid_changes WHERE kind = :kind AND old_grid LIKE :p AND changed_at > :at)")
        conds.append(f"{grid_expr} LIKE :p")
    sql = (f"SELECT {_COLUMNS[what]}, {grid_expr} AS grid_code FROM {frm} WHERE {' AND '.join(conds)} "
           f"ORDER BY r.id LIMIT :limit")
    rows = [dict(r._mapping) for r in conn.execute(text(sql), params)]
    more = len(rows) > limit
    rows = rows[:limit]
    total = None
    if at is None and not filters:
        total = conn.execute(text("SELECT coalesce(sum(value), 0) FROM bd_rollup WHERE grid_code LIKE :p AND metric = :m"),
                             {"p": code + "%", "m": what}).scalar()
    return {"rows": rows, "next": rows[-1]["id"] if more else None, "total": total}


# --- five-code links -------------------------------------------------------------------------------
def links(conn, *, address_code=None, building_code=None, house_code=None, credit_code=None, person=None) -> dict:
    """Any one of the five codes → the others: the building, house(s), address, people and businesses."""
    given = {k: v for k, v in dict(address_code=address_code, building_code=building_code, house_code=house_code,
                                   credit_code=credit_code, person=person).items() if v}
    if len(given) != 1:
        raise InvalidInput("give exactly one of address_code, building_code, house_code, credit_code, person "
                           f"(got {', '.join(given) or 'none'})")
    (key, value), = given.items()
    b_codes: set[str] = set()
    h_codes: set[str] = set()
    a_codes: set[str] = set()
    p_ids: set[int] = set()
    c_codes: set[str] = set()
    if key == "person":
        from gridserver.blockdata.codes import validate_id_number
        from gridserver.blockdata.privacy import pii_hash

        v = value.strip()
        if len(v) == 18:  # an ID number: looked up by its HMAC, never stored
            try:
                v = pii_hash(validate_id_number(v))
            except ValueError as exc:
                raise InvalidInput(f"person: {exc}") from None
        row = conn.execute(text("SELECT id, building_code, house_code, address_code FROM people WHERE id_hash = :v"),
                           {"v": v}).first()
        if row is None:
            raise NotFound("no person with this ID")
        p_ids.add(row.id)
        b_codes |= {row.building_code} - {None}
        h_codes |= {row.house_code} - {None}
        a_codes |= {row.address_code} - {None}
    elif key == "credit_code":
        row = conn.execute(text("SELECT building_code, house_code, address_code FROM businesses WHERE credit_code = :v"),
                           {"v": value.strip().upper()}).first()
        if row is None:
            raise NotFound(f"no business with credit code {value}")
        c_codes.add(value.strip().upper())
        b_codes |= {row.building_code} - {None}
        h_codes |= {row.house_code} - {None}
        a_codes |= {row.address_code} - {None}
    elif key == "house_code":
        row = conn.execute(text("SELECT building_code, address_code FROM houses WHERE house_code = :v"), {"v": value}).first()
        if row is None:
            raise NotFound(f"no house {value}")
        h_codes.add(value)
        b_codes |= {row.building_code} - {None}
        a_codes |= {row.address_code} - {None}
    elif key == "building_code":
        if conn.execute(text("SELECT 1 FROM buildings WHERE building_code = :v"), {"v": value}).first() is None:
            raise NotFound(f"no building {value}")
        b_codes.add(value)
    else:
        a = conn.execute(text("SELECT code FROM std_addresses WHERE code = :v"), {"v": value}).first()
        if a is None:
            raise NotFound(f"no standard address {value}")
        a_codes.add(value)
        whole = set(conn.execute(text("SELECT building_code FROM buildings WHERE address_code = :v OR building_code = :v"),
                                 {"v": value}).scalars())
        b_codes |= whole | set(conn.execute(text(
            "SELECT building_code FROM houses WHERE address_code = :v AND building_code IS NOT NULL"), {"v": value}).scalars())
        h_codes |= set(conn.execute(text("SELECT house_code FROM houses WHERE address_code = :v"), {"v": value}).scalars())
    # widen: from a building (or a building's address) to everything in it; from a house to what is in it
    scope_b = list(b_codes) if key == "building_code" else (list(whole) if key == "address_code" else [])
    scope_h = list(h_codes)
    q = {"b": scope_b, "h": scope_h, "a": list(a_codes)}
    p_ids |= set(conn.execute(text("SELECT id FROM people WHERE building_code = ANY(:b) OR house_code = ANY(:h) "
                                   "OR address_code = ANY(:a)"), q).scalars()) if key != "person" else set()
    if key != "credit_code":
        c_codes |= set(conn.execute(text("SELECT credit_code FROM businesses WHERE building_code = ANY(:b) "
                                         "OR house_code = ANY(:h) OR address_code = ANY(:a)"), q).scalars())
    if scope_b:
        h_codes |= set(conn.execute(text("SELECT house_code FROM houses WHERE building_code = ANY(:b)"), q).scalars())
    buildings = [dict(r._mapping) for r in conn.execute(text(
        "SELECT building_code, address_code, grid_code, floors, use FROM buildings WHERE building_code = ANY(:b) "
        "ORDER BY building_code"), {"b": list(b_codes)})]
    for b in buildings:
        if b["address_code"]:
            a_codes.add(b["address_code"])
    people = [dict(r._mapping) for r in conn.execute(text(
        "SELECT id, id_hash, id_masked, name, name_masked, phone_masked, sex, birth_year, residence, household_code, "
        "house_code, building_code, address_code, grid_code FROM people WHERE id = ANY(:i) ORDER BY id LIMIT 1000"),
        {"i": list(p_ids)})]
    businesses = [dict(r._mapping) for r in conn.execute(text(
        "SELECT credit_code, name, category, address_code, building_code, house_code, grid_code FROM businesses "
        "WHERE credit_code = ANY(:c) ORDER BY credit_code"), {"c": list(c_codes)})]
    grids = sorted({x["grid_code"] for x in buildings + people + businesses if x.get("grid_code")})
    return {"query": {key: value}, "address_codes": sorted(a_codes), "building_codes": sorted(b_codes),
            "house_codes": sorted(h_codes), "credit_codes": sorted(c_codes), "buildings": buildings,
            "people": people, "businesses": businesses, "grid_codes": grids}


# --- tags ------------------------------------------------------------------------------------------
def set_tag(conn, person_id: int, tag: str, *, actor: str, note: str | None = None, remove: bool = False) -> dict:
    """Set (or remove) a key-group tag on a person, recording who and when; refreshes that grid's roll-up."""
    if tag not in TAGS:
        raise InvalidInput(f"unknown tag {tag!r}; use {', '.join(TAGS)}")
    grid = conn.execute(text("SELECT grid_code FROM people WHERE id = :i"), {"i": person_id}).first()
    if grid is None:
        raise NotFound(f"no person {person_id}")
    if remove:
        conn.execute(text("UPDATE person_tags SET removed_at = now(), removed_by = :a WHERE person_id = :i AND tag = :t "
                          "AND removed_at IS NULL"), {"a": actor, "i": person_id, "t": tag})
    else:
        conn.execute(text("INSERT INTO person_tags (person_id, tag, note, set_by) VALUES (:i, :t, :n, :a) "
                          "ON CONFLICT (person_id, tag) WHERE removed_at IS NULL DO NOTHING"),
                     {"i": person_id, "t": tag, "n": note, "a": actor})
    refresh_rollups(conn, [grid.grid_code])
    return {"person_id": person_id, "tag": tag, "active": not remove, "by": actor,
            "at": datetime.now(timezone.utc).isoformat()}


# --- access log ------------------------------------------------------------------------------------
def log_access(conn, user, *, action: str, target: str, area_code: str | None, purpose: str | None, rows: int) -> None:
    """Append one row to the access log (who, what, when, why) for a read of unmasked personal data."""
    conn.execute(text("INSERT INTO bd_access_log (username, role, action, target, area_code, purpose, rows) "
                      "VALUES (:u, :r, :a, :t, :c, :p, :n)"),
                 {"u": user.username, "r": user.role, "a": action, "t": target, "c": area_code, "p": purpose, "n": rows})
