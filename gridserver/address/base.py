"""The standard address base (标准地址库): create, edit, retire and alias standard addresses, with history.

Levels
    ``road`` (路/街/巷) → ``house`` (门牌号) → ``building`` (栋/座) → ``unit`` (单元) → ``floor`` (层) →
    ``room`` (室). District, street and community are the admin areas (``admin_areas``); every address
    records the codes of the grid, community, street and district its point falls in. A level may be
    skipped (a room directly under a house that has no buildings).

Code scheme (stable: never reused, never changed by an edit)
    In the spirit of GB/T 39609-2020 (地址编码规则: administrative division code followed by
    segments for the road and the house number, then the parts of the building), codes are
    prefix-hierarchical segments, each a level letter plus a serial within the parent::

        440104R00012                 road      6-digit district code + R + 5-digit serial
        440104R00012H0007            house     road code + H + 4-digit serial
        440104R00012H0007B003        building  house code + B + 3-digit serial
        440104R00012H0007B003U02     unit      building code + U + 2-digit serial
        440104R00012H0007B003U02F05  floor     parent code + F + 3-digit serial (F is 3 digits, so F005)
        440104R00012H0007B003U02S0012  room    parent code + S + 4-digit serial

    Serials come from ``address_code_counters`` (one counter per parent code and letter, only ever
    incremented), so a retired address's code is never handed out again. Serials are not the house
    or room numbers — numbers get renumbered, codes must not. The prefix records the parent at
    creation; ``parent_id`` stays the truth if an address is later re-parented. The district code
    (not the 15-digit grid code) heads the code because grids are redrawn; the grid code is kept as
    an attribute and refreshed when the point moves.

History
    A trigger writes ``address_history`` for every insert and update (before/after as JSON); the
    actor, action and reason come from :func:`set_actor`. Deleting a standard address is refused
    by another trigger: addresses are retired, never removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import text

from gridserver.address.keys import (FIELD_OF_LEVEL, FIELDS, LEVEL_OF_FIELD, RoadGazetteer,
                                     ancestor_keys, key_fields, level_name, make_key, standard_text)
from gridserver.address.normalize import normalize_address
from gridserver.errors import Conflict, InvalidInput, NotFound

#: Level letter and serial width of each level's code segment.
CODE_SEGMENT = {"road": ("R", 5), "house": ("H", 4), "building": ("B", 3), "unit": ("U", 2),
                "floor": ("F", 3), "room": ("S", 4)}
STATUSES = ("active", "retired", "pending")

_PROVINCE = {"44": "广东省"}
_CITY = {"4401": "广州市"}


def set_actor(conn, actor: str, action: str, reason: str | None = None) -> None:
    """Name who is changing addresses, how and why, for the history trigger (this transaction only)."""
    conn.execute(text("SELECT set_config('gridserver.actor', :a, true), set_config('gridserver.action', :b, true),"
                      " set_config('gridserver.reason', :c, true)"),
                 {"a": actor or "system", "b": action, "c": reason or ""})


def city_name(district_code: str) -> str:
    """``广州市`` for a district code of the city (its first four digits); "" for a city we do not know."""
    return _CITY.get(district_code[:4], "")


def upper_text(conn, district_code: str) -> str:
    """``广东省广州市越秀区`` for a district code (province/city from the code, district name from the areas)."""
    name = conn.execute(text("SELECT name FROM admin_areas WHERE code = :c AND valid_to IS NULL"),
                        {"c": district_code}).scalar()
    return _PROVINCE.get(district_code[:2], "") + city_name(district_code) + (name or "")


def copy_rows(conn, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> int:
    """COPY rows into ``table`` on the connection's own transaction; returns the row count."""
    raw = conn.connection.dbapi_connection
    n = 0
    with raw.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
                n += 1
    return n


def _natural(value: str) -> str:
    # Sort key that puts 2 before 13 and keeps letters after numbers.
    return "".join(f"{int(tok):08d}" if tok.isdigit() else tok for tok in _split_digits(value))


def _split_digits(value: str) -> list[str]:
    out, cur = [], ""
    for ch in value:
        if cur and (ch.isdigit() != cur[-1].isdigit()):
            out.append(cur)
            cur = ""
        cur += ch
    if cur:
        out.append(cur)
    return out


@dataclass
class NewAddress:
    """One address to create: its key parts and, optionally, a point and how it was obtained."""

    road: str
    house_no: str = ""
    building: str = ""
    unit: str = ""
    floor: str = ""
    room: str = ""
    lon: float | None = None
    lat: float | None = None
    geom_source: str | None = None
    district_code: str | None = None

    def key(self) -> str:
        return make_key(normalize_address(self.road), self.house_no, self.building, self.unit, self.floor, self.room)


_TMP_COLUMNS = ("key", "level", "parent_key", "depth", "sort_key", "name", "tail", "road", "road_key", "house_no",
                "building", "unit", "floor", "room", "lon", "lat", "geom_source", "district_code")

_INSERT_LEVEL = text(
    """
    INSERT INTO std_addresses (code, level, parent_id, name, full_text, match_key, road, road_key, house_no, building,
                               unit, floor, room, geom, geom_source, grid_code, community_code, street_code,
                               district_code, status, source)
    SELECT next_address_code(coalesce(q.pcode, q.district_code), :letter, :width),
           q.level, q.pid, q.name, address_upper_text(q.dc) || q.tail, q.key, q.road, q.road_key, q.house_no, q.building,
           q.unit, q.floor, q.room, q.pt, q.gsrc, q.gcode, left(q.gcode, 12), left(q.gcode, 9), q.dc,
           :status, :source
    FROM (
        SELECT t.*, p.id AS pid, p.code AS pcode, g.code AS gcode,
               coalesce(left(g.code, 6), p.district_code, t.district_code) AS dc,
               coalesce(t.own_pt, p.geom) AS pt,
               CASE WHEN t.own_pt IS NULL THEN 'inherited' ELSE t.geom_source END AS gsrc
        FROM (SELECT *, CASE WHEN lon IS NULL THEN NULL ELSE ST_SetSRID(ST_MakePoint(lon, lat), 4326) END AS own_pt
              FROM tmp_new_addr WHERE depth = :depth) t
        LEFT JOIN std_addresses p ON p.match_key = t.parent_key AND p.status <> 'retired'
        LEFT JOIN LATERAL (
            SELECT a.code FROM admin_areas a
            WHERE a.level = 'grid' AND a.valid_to IS NULL AND ST_Covers(a.geom, coalesce(t.own_pt, p.geom))
            ORDER BY a.code LIMIT 1
        ) g ON true
        WHERE (t.depth = 0 OR p.id IS NOT NULL)
          AND NOT EXISTS (SELECT 1 FROM std_addresses x WHERE x.match_key = t.key AND x.status <> 'retired')
    ) q
    ORDER BY q.sort_key
    RETURNING id
    """
)


def bulk_create(conn, addresses: Sequence[NewAddress], *, status: str = "active", source: str = "manual",
                default_district: str | None = None) -> dict[str, int]:
    """Create the given addresses and any missing levels above them, set-based; returns key → id.

    Existing live addresses (same key) are reused, not duplicated, so calling this twice with the same
    input creates nothing the second time. A created ancestor takes the point of its first
    descendant in the input. Roads need a district code (``district_code`` or ``default_district``).
    Call :func:`set_actor` first to name the actor and reason in the history.
    """
    if status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    rows: dict[str, list] = {}
    # New addresses under an existing road are written with that road's own spelling.
    shown_roads = dict(conn.execute(text(
        "SELECT road_key, road FROM std_addresses WHERE level = 'road' AND status <> 'retired' AND road_key = ANY(:k)"),
        {"k": list({normalize_address(a.road) for a in addresses if a.road})}).all())
    for a in addresses:
        if not a.road:
            raise InvalidInput(f"an address needs a road: {a!r}")
        display = shown_roads.get(normalize_address(a.road), a.road.strip())
        for depth, (level, key) in enumerate(ancestor_keys(a.key())):
            if key in rows:
                r = rows[key]
                if r[14] is None and a.lon is not None:
                    r[14], r[15], r[16] = a.lon, a.lat, a.geom_source or "department"
                continue
            vals = key_fields(key)
            f = FIELD_OF_LEVEL[level]
            parents = [k for lv, k in ancestor_keys(key)[:-1]]
            parent_key = parents[-1] if parents else None
            real_depth = FIELDS.index(f)
            shown = [display] + [vals[x] for x in FIELDS[1:]]
            rows[key] = [key, level, parent_key, real_depth,
                         "|".join(_natural(vals[x]) for x in FIELDS),
                         display if f == "road" else level_name(f, vals[f]),
                         standard_text("", *shown),
                         display, vals["road"], vals["house_no"], vals["building"], vals["unit"], vals["floor"],
                         vals["room"], a.lon, a.lat, a.geom_source or "department",
                         a.district_code or default_district]
    if not rows:
        return {}
    missing = [r[0] for r in rows.values() if r[3] == 0 and not r[17]]
    if missing:
        known = dict(conn.execute(text("SELECT match_key, id FROM std_addresses WHERE match_key = ANY(:k) "
                                       "AND status <> 'retired'"), {"k": missing}).all())
        unknown = [k for k in missing if k not in known]
        if unknown:
            raise InvalidInput(f"new road {unknown[0].split('|')[0]!r} needs a district code")
    conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS tmp_new_addr (key text, level text, parent_key text, "
                      "depth int, sort_key text, name text, tail text, road text, road_key text, house_no text, building text, unit text, "
                      "floor text, room text, lon float8, lat float8, geom_source text, district_code text) "
                      "ON COMMIT DROP"))
    conn.execute(text("TRUNCATE tmp_new_addr"))
    copy_rows(conn, "tmp_new_addr", _TMP_COLUMNS, rows.values())
    conn.execute(text("ANALYZE tmp_new_addr"))
    for depth, f in enumerate(FIELDS):
        letter, width = CODE_SEGMENT[LEVEL_OF_FIELD[f]]
        conn.execute(_INSERT_LEVEL, {"letter": letter, "width": width, "depth": depth, "status": status,
                                     "source": source})
    got = dict(conn.execute(text("SELECT s.match_key, s.id FROM std_addresses s JOIN tmp_new_addr t "
                                 "ON s.match_key = t.key AND s.status <> 'retired'")).all())
    conn.execute(text("TRUNCATE tmp_new_addr"))
    return got


# --- reading ----------------------------------------------------------------------------------------
_COLUMNS = ("id, code, level, parent_id, name, full_text, match_key, road, road_key, house_no, building, unit, floor, room, "
            "ST_X(geom) AS lon, ST_Y(geom) AS lat, geom_source, grid_code, community_code, street_code, "
            "district_code, status, source, replaced_by, created_at, updated_at, retired_at")


def _row_dict(r) -> dict:
    d = dict(r._mapping)
    for k in ("created_at", "updated_at", "retired_at"):
        if d.get(k) is not None:
            d[k] = d[k].isoformat()
    return d


def get_address(conn, code: str, *, with_history: bool = True) -> dict:
    """One standard address by code with its aliases (and history); NotFound when the code is unknown."""
    r = conn.execute(text(f"SELECT {_COLUMNS} FROM std_addresses WHERE code = :c"), {"c": code}).first()
    if r is None:
        raise NotFound(f"no standard address with code {code!r}")
    out = _row_dict(r)
    out["aliases"] = [dict(x._mapping) for x in conn.execute(
        text("SELECT text, normalised, source FROM address_aliases WHERE address_id = :i ORDER BY id"),
        {"i": r.id})]
    if r.replaced_by:
        out["replaced_by_code"] = conn.execute(text("SELECT code FROM std_addresses WHERE id = :i"),
                                               {"i": r.replaced_by}).scalar()
    if with_history:
        out["history"] = history(conn, r.id)
    return out


def get_by_id(conn, address_id: int) -> dict:
    r = conn.execute(text(f"SELECT {_COLUMNS} FROM std_addresses WHERE id = :i"), {"i": address_id}).first()
    if r is None:
        raise NotFound(f"no standard address with id {address_id}")
    return _row_dict(r)


def history(conn, address_id: int) -> list[dict]:
    """Every recorded change of an address, oldest first."""
    rows = conn.execute(text("SELECT changed_at, actor, action, reason, before, after FROM address_history "
                             "WHERE address_id = :i ORDER BY changed_at, id"), {"i": address_id}).all()
    return [{**dict(r._mapping), "changed_at": r.changed_at.isoformat()} for r in rows]


def road_gazetteer(conn) -> RoadGazetteer:
    """Live road names and road-level aliases of the base."""
    names = conn.execute(text("SELECT road_key FROM std_addresses WHERE level = 'road' AND status <> 'retired'")).scalars()
    aliases = conn.execute(text(
        "SELECT al.normalised, s.road_key FROM address_aliases al JOIN std_addresses s ON s.id = al.address_id "
        "WHERE s.level = 'road' AND s.status <> 'retired'")).all()
    return RoadGazetteer(list(names), {a: r for a, r in aliases})


# --- changing ---------------------------------------------------------------------------------------
def add_alias(conn, address_id: int, alias_text: str, *, source: str = "manual", match_key: str | None = None) -> bool:
    """Record another spelling of an address; returns False when that spelling is already known."""
    norm = normalize_address(alias_text)
    if not norm:
        return False
    res = conn.execute(text("INSERT INTO address_aliases (address_id, text, normalised, match_key, source) "
                            "VALUES (:i, :t, :n, :k, :s) ON CONFLICT (address_id, normalised) DO NOTHING"),
                       {"i": address_id, "t": alias_text, "n": norm, "k": match_key, "s": source})
    if res.rowcount != 1:
        return False
    # An alias is part of the address: its history says who added it and why.
    conn.execute(text(
        """INSERT INTO address_history (address_id, actor, action, reason, before, after)
           VALUES (:i, coalesce(nullif(current_setting('gridserver.actor', true), ''), current_user), 'alias',
                   nullif(current_setting('gridserver.reason', true), ''), NULL,
                   jsonb_build_object('alias', CAST(:t AS text), 'source', CAST(:s AS text)))"""),
        {"i": address_id, "t": alias_text, "s": source})
    return True


def _live_descendants(conn, address_id: int) -> list[int]:
    return list(conn.execute(text(
        """WITH RECURSIVE d AS (SELECT id FROM std_addresses WHERE parent_id = :i AND status <> 'retired'
                               UNION ALL
                               SELECT s.id FROM std_addresses s JOIN d ON s.parent_id = d.id
                               WHERE s.status <> 'retired')
           SELECT id FROM d"""), {"i": address_id}).scalars())


def retire_address(conn, code: str, *, actor: str, reason: str, replaced_by: int | None = None,
                   action: str = "retire") -> dict:
    """Retire an address and its live descendants (kept, never deleted); history names actor and reason.

    ``replaced_by`` points a merged duplicate at the address that replaces it.
    """
    if not reason:
        raise InvalidInput("retiring an address needs a reason")
    a = get_by_id_code(conn, code)
    if a["status"] == "retired":
        raise Conflict(f"address {code} is already retired")
    set_actor(conn, actor, action, reason)
    ids = [a["id"], *_live_descendants(conn, a["id"])]
    conn.execute(text("UPDATE std_addresses SET status = 'retired', retired_at = now(), updated_at = now(), "
                      "replaced_by = CASE WHEN id = :top THEN :rb ELSE replaced_by END WHERE id = ANY(:ids)"),
                 {"ids": ids, "top": a["id"], "rb": replaced_by})
    return get_address(conn, code, with_history=False)


def activate_address(conn, address_id: int, *, actor: str, reason: str | None = None) -> None:
    """Pending → active for an address and its pending ancestors (an approved room needs its building)."""
    set_actor(conn, actor, "approve", reason)
    conn.execute(text(
        """WITH RECURSIVE up AS (SELECT id, parent_id FROM std_addresses WHERE id = :i
                                UNION ALL
                                SELECT s.id, s.parent_id FROM std_addresses s JOIN up ON s.id = up.parent_id)
           UPDATE std_addresses SET status = 'active', updated_at = now()
           WHERE id IN (SELECT id FROM up) AND status = 'pending'"""), {"i": address_id})


def get_by_id_code(conn, code: str) -> dict:
    r = conn.execute(text(f"SELECT {_COLUMNS} FROM std_addresses WHERE code = :c"), {"c": code}).first()
    if r is None:
        raise NotFound(f"no standard address with code {code!r}")
    return _row_dict(r)


def update_address(conn, code: str, *, actor: str, reason: str, lon: float | None = None,
                   lat: float | None = None, name: str | None = None) -> dict:
    """Move an address (new point, area codes refreshed) and/or rename its own level.

    A rename changes this level's part for the address and every live descendant (their keys and
    standard texts follow); the old spelling is kept as an alias. The code never changes.
    """
    if not reason:
        raise InvalidInput("changing an address needs a reason")
    a = get_by_id_code(conn, code)
    if a["status"] == "retired":
        raise Conflict(f"address {code} is retired and cannot be changed")
    set_actor(conn, actor, "update", reason)
    if (lon is None) != (lat is None):
        raise InvalidInput("give both lon and lat to move an address")
    if lon is not None:
        conn.execute(text(
            """UPDATE std_addresses s SET geom = ST_SetSRID(ST_MakePoint(:x, :y), 4326), geom_source = 'survey',
                   grid_code = g.code, community_code = left(g.code, 12), street_code = left(g.code, 9),
                   district_code = coalesce(left(g.code, 6), s.district_code), updated_at = now()
               FROM (SELECT (SELECT code FROM admin_areas WHERE level = 'grid' AND valid_to IS NULL
                             AND ST_Covers(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326)) ORDER BY code LIMIT 1) AS code) g
               WHERE s.id = :i"""), {"x": lon, "y": lat, "i": a["id"]})
    if name is not None:
        f = FIELD_OF_LEVEL[a["level"]]
        from gridserver.address.keys import canon_part

        new_val = canon_part(f, name)
        if not new_val:
            raise InvalidInput(f"{name!r} is not a valid {a['level']} name")
        display = name.strip() if f == "road" else new_val
        if display != a[f]:
            _rename(conn, a, f, new_val, display)
    return get_address(conn, code, with_history=False)


def _rename(conn, a: dict, f: str, new_val: str, display: str) -> None:
    ids = [a["id"], *_live_descendants(conn, a["id"])]
    rows = conn.execute(text("SELECT id, match_key, district_code, road, house_no, building, unit, floor, room, full_text "
                             "FROM std_addresses WHERE id = ANY(:ids)"), {"ids": ids}).all()
    idx = FIELDS.index(f)
    new_keys = []
    for r in rows:
        vals = r.match_key.split("|")
        vals[idx] = new_val
        new_keys.append("|".join(vals))
    clash = conn.execute(text("SELECT code FROM std_addresses WHERE match_key = ANY(:k) AND status <> 'retired' "
                              "AND NOT (id = ANY(:ids)) LIMIT 1"), {"k": new_keys, "ids": ids}).scalar()
    if clash:
        raise Conflict(f"renaming would duplicate the live address {clash}; merge them instead")
    upper = {}
    for r, key in zip(rows, new_keys):
        dc = r.district_code or ""
        upper.setdefault(dc, upper_text(conn, dc) if dc else "")
        field_vals = [r.road, r.house_no, r.building, r.unit, r.floor, r.room]
        field_vals[idx] = display
        extra = ", road_key = :rk" if f == "road" else ""
        conn.execute(text(f"UPDATE std_addresses SET {f} = :v{extra}, match_key = :k, full_text = :t, "
                          "name = CASE WHEN id = :top THEN :n ELSE name END, updated_at = now() WHERE id = :i"),
                     {"v": display, "rk": new_val, "k": key, "t": standard_text(upper[dc], *field_vals), "i": r.id,
                      "top": a["id"], "n": display if f == "road" else level_name(f, new_val)})
        if r.id == a["id"]:
            add_alias(conn, r.id, r.full_text, source="rename", match_key=r.match_key)
            if f == "road":  # the old road name alone is what departments will keep writing
                add_alias(conn, r.id, a["road"], source="rename", match_key=r.match_key)
