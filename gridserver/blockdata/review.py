"""Decisions on the block-data review queue (``bd_review`` rows with status ``review``).

An import keeps a row whose address could not be matched (people, households, businesses: the
record is stored without address; buildings without any code are not stored) and lists it in
``bd_review``. A reviewer settles it:

* **link** (status ``resolved``) — to a standard ``address_code`` (or an existing ``building_code``): the record gets the
  address, house and building codes the importer would have given it, and its grid is set by the
  one covering-grid rule (:func:`gridserver.blockdata.service.link_grids`); a queued building row
  becomes a building. Roll-ups of the old and new grid are refreshed.
* **reject** — with a reason: the row stays as it is (nothing is deleted), marked ``rejected`` (like rows
  the validator rejected, but with a ``decision``).

Who, when, why and what are recorded in the row's ``data.decision``. The area a queued row belongs
to (for scope checks) is defined once here and used both by the listing filter and the decisions:
the grid of its stored record, else the grid covering its own point, else the grid it was linked
into. A row with no known area can be seen and decided only by city-wide reviewers.
"""

from __future__ import annotations

import json
import re

from sqlalchemy import text

from gridserver.blockdata import service
from gridserver.blockdata.privacy import generalise_address
from gridserver.errors import Conflict, InvalidInput, NotFound

#: The record a queued row was stored as, by its natural key (indexed): the person's ID-number HMAC
#: (written into the review row by the importer), household code, credit code. Review rows written
#: before the HMAC was kept fall back to matching the stored raw row's content (slow, unindexed).
_SLOW_PERSON = ("(SELECT t.{col} FROM people t JOIN bd_raw_rows w ON w.id = t.raw_row_id WHERE w.kind = r.kind "
                "AND w.source = r.source AND w.data = (r.data - 'decision' - 'id_hash') ORDER BY t.id LIMIT 1)")
_KEYED = {"people": ("people", "id_hash", "id_hash"), "households": ("households", "household_code", "household_code"),
          "businesses": ("businesses", "credit_code", "credit_code")}


def _record_sql(col: str) -> dict[str, str]:
    out = {}
    for kind, (table, key, field) in _KEYED.items():
        q = f"(SELECT t.{col} FROM {table} t WHERE t.{key} = r.data->>'{field}')"
        if kind == "people":
            q = f"(CASE WHEN r.data ? 'id_hash' THEN {q} ELSE {_SLOW_PERSON.format(col=col)} END)"
        out[kind] = q
    return out


_RECORD = _record_sql("id")
_RECORD_GRID = _record_sql("grid_code")

#: ONE definition of a queued row's area (alias ``r`` = bd_review).
AREA_EXPR = (
    "coalesce(CASE r.kind " + " ".join(f"WHEN '{k}' THEN {s}" for k, s in _RECORD_GRID.items()) + " END, "
    "CASE WHEN jsonb_typeof(r.data->'pt') = 'array' THEN "
    + service._POINT_GRID.format(pt="ST_SetSRID(ST_MakePoint((r.data->'pt'->>0)::float8, (r.data->'pt'->>1)::float8), 4326)")
    + " END, r.data->'decision'->>'grid_code')"
)

_ONE = {"people": "person", "households": "household", "businesses": "business", "buildings": "building"}


def list_review(conn, *, import_id=None, status=None, limit=100, scope_code: str | None = None) -> list[dict]:
    """Queued rows (oldest first) with their ``area_code``; ``scope_code`` keeps those inside it."""
    # the raw-row fallback's estimate is huge (it rarely runs); without this, JIT compiling costs ~1 s
    conn.execute(text("SET LOCAL jit = off"))
    rows = conn.execute(text(
        f"SELECT * FROM (SELECT r.id, r.import_id, r.kind, r.source, r.row_no, r.column_name, r.status, r.reason, "
        f"r.data, r.created_at, {AREA_EXPR} AS area_code FROM bd_review r "
        f"WHERE (CAST(:i AS bigint) IS NULL OR r.import_id = :i) AND (CAST(:s AS text) IS NULL OR r.status = :s)) q "
        f"WHERE CAST(:scope AS text) IS NULL OR q.area_code LIKE :scope || '%' ORDER BY q.id LIMIT :n"),
        {"i": import_id, "s": status, "n": limit, "scope": scope_code}).mappings().all()
    out = []
    for r in rows:
        d = dict(r)
        d["data"] = {k: v for k, v in (d["data"] or {}).items() if k != "id_hash"}
        out.append(d)
    return out


def queued(conn, review_id: int, *, lock: bool = False) -> dict:
    """The queued row with its area_code and record id; NotFound / Conflict if not waiting for a decision."""
    rec = "CASE r.kind " + " ".join(f"WHEN '{k}' THEN {s}" for k, s in _RECORD.items()) + " END"
    conn.execute(text("SET LOCAL jit = off"))
    if lock:  # one decision per row: a second reviewer waits, then sees it decided
        conn.execute(text("SELECT 1 FROM bd_review WHERE id = :i FOR UPDATE"), {"i": review_id})
    row = conn.execute(text(f"SELECT r.*, {AREA_EXPR} AS area_code, {rec} AS record_id FROM bd_review r WHERE r.id = :i"),
                       {"i": review_id}).mappings().first()
    if row is None:
        raise NotFound(f"待核实记录不存在 no block-data review row {review_id}")
    d = dict(row)
    if d["status"] != "review":
        dec = (d["data"] or {}).get("decision") or {}
        who = f", decided by {dec['by']} at {dec['at']}" if dec.get("by") else ""
        raise Conflict(f"review row {review_id} is not waiting for a decision (status {d['status']}{who})",
                       code="review_not_pending")
    return d


def target(conn, *, address_code: str | None, building_code: str | None) -> dict:
    """The standard address / building a row is to be linked to, with the grid it lies in (for scope checks)."""
    if bool(address_code) == bool(building_code):
        raise InvalidInput("give exactly one of address_code or building_code", code="invalid_input")
    if address_code:
        a = conn.execute(text(
            "SELECT s.code, s.level, s.status, " + service._POINT_GRID.format(pt="s.geom") + " AS grid_code, "
            "coalesce(s.grid_code, s.community_code, s.street_code, s.district_code) AS area_code "
            "FROM std_addresses s WHERE s.code = :c"), {"c": address_code}).mappings().first()
        if a is None:
            raise InvalidInput(f"address_code: 标准地址不存在 no standard address {address_code!r}", code="invalid_input")
        if a["status"] not in ("active",):
            raise InvalidInput(f"address_code: standard address {address_code!r} is {a['status']}, not active",
                               code="invalid_input")
        return {"address_code": a["code"], "level": a["level"], "building_code": None,
                "area_code": a["grid_code"] or a["area_code"]}
    b = conn.execute(text("SELECT building_code, address_code, grid_code FROM buildings WHERE building_code = :c"),
                     {"c": building_code}).mappings().first()
    if b is None:
        raise InvalidInput(f"building_code: 建筑不存在 no building {building_code!r}", code="invalid_input")
    return {"address_code": None, "level": None, "building_code": b["building_code"],
            "building_address": b["address_code"], "area_code": b["grid_code"]}


def _building_for(conn, address_code: str) -> str | None:
    """The known building of an address (same guesses as the importer)."""
    g = generalise_address(address_code) or ""
    guesses = [c for c in (g, re.sub(r"B\d{3}$", "", g)) if c]
    return conn.execute(text("SELECT building_code FROM buildings WHERE building_code = ANY(:c) "
                             "ORDER BY array_position(CAST(:c AS text[]), building_code) LIMIT 1"),
                        {"c": guesses}).scalar() if guesses else None


def _decide(conn, review_id: int, status: str, decision: dict) -> None:
    conn.execute(text("UPDATE bd_review SET status = :st, data = data || jsonb_build_object('decision', "
                      "CAST(:d AS jsonb) || jsonb_build_object('at', now())) WHERE id = :i"),
                 {"st": status, "d": json.dumps(decision, ensure_ascii=False), "i": review_id})


def link(conn, row: dict, tgt: dict, *, actor: str, note: str | None = None) -> dict:
    """Link the queued ``row`` (from :func:`queued`) to ``tgt`` (from :func:`target`)."""
    kind, one = row["kind"], _ONE[row["kind"]]
    table = service.TABLE[one]
    ac, level = tgt["address_code"], tgt["level"]
    bc = tgt["building_code"] or (_building_for(conn, ac) if ac else None)
    if tgt["building_code"] and not ac:
        ac = tgt.get("building_address")
    if kind == "buildings":
        code = tgt["building_code"] or (ac if level in ("house", "building") else generalise_address(ac))
        data = row["data"] or {}
        rid = conn.execute(text(
            "INSERT INTO buildings (building_code, address_code, name, geom, source) VALUES (:c, :a, nullif(:n, ''), "
            "CASE WHEN :fp <> '' THEN ST_Multi(ST_GeomFromText(:fp, 4326)) END, :s) "
            "ON CONFLICT (building_code) DO UPDATE SET address_code = coalesce(buildings.address_code, EXCLUDED.address_code), "
            "geom = coalesce(buildings.geom, EXCLUDED.geom), updated_at = now() RETURNING id"),
            {"c": code, "a": ac, "n": data.get("name", ""), "fp": data.get("footprint_wkt", ""), "s": row["source"]}).scalar()
    else:
        rid = row["record_id"]
        if rid is None:
            raise Conflict(f"review row {row['id']}: its {one} record is no longer stored from this row "
                           f"(re-imported since?)", code="review_record_gone")
        now = conn.execute(text(f"SELECT address_code FROM {table} WHERE id = :i FOR UPDATE"), {"i": rid}).scalar()
        if now is not None:
            raise Conflict(f"review row {row['id']}: its {one} record already has address {now} (a later import "
                           f"linked it); reject this row instead", code="review_record_linked")
        house = ac if (kind in ("households", "people") or level in ("room", "floor", "unit")) and tgt["address_code"] else None
        conn.execute(text(f"UPDATE {table} SET address_code = :a, building_code = coalesce(:b, building_code), "
                          f"house_code = coalesce(:h, house_code), updated_at = now() WHERE id = :i"),
                     {"a": ac, "b": bc, "h": house, "i": rid})
        if house:  # the house (房) implied by a room-level address, as the importer makes it
            conn.execute(text(
                "INSERT INTO houses (house_code, building_code, address_code, floor, room, source) "
                "SELECT :h, :b, s.code, nullif(s.floor, ''), nullif(s.room, ''), :src FROM std_addresses s "
                "WHERE s.code = :h AND :k IN ('households', 'people') ON CONFLICT (house_code) DO NOTHING"),
                {"h": house, "b": bc, "src": row["source"], "k": kind})
            service.link_grids(conn, kinds=["house"], where={"house": "r.grid_code IS NULL AND r.house_code = :h"},
                               params={"h": house}, reason=f"house implied by review {row['id']}")
    old = conn.execute(text(f"SELECT grid_code FROM {table} WHERE id = :i"), {"i": rid}).scalar()
    service.link_grids(conn, kinds=[one], where={one: "r.id = :rid"}, params={"rid": rid},
                       reason=f"review {row['id']} linked by {actor}")
    rec = conn.execute(text(f"SELECT grid_code, address_code, building_code FROM {table} WHERE id = :i"),
                       {"i": rid}).mappings().first()
    service.refresh_rollups(conn, [g for g in (old, rec["grid_code"]) if g])
    decision = {"action": "link", "by": actor, "reason": note, "record_kind": one, "record_id": rid,
                "address_code": rec["address_code"], "building_code": rec["building_code"], "grid_code": rec["grid_code"]}
    _decide(conn, row["id"], "resolved", decision)
    return {"id": row["id"], "status": "resolved", **decision}


def reject(conn, row: dict, *, actor: str, reason: str) -> dict:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason: 驳回须说明理由 a rejection needs a reason", code="invalid_input")
    decision = {"action": "reject", "by": actor, "reason": reason}
    _decide(conn, row["id"], "rejected", decision)
    return {"id": row["id"], "status": "rejected", **decision}
