"""The review queue (整体智治: collect → review → share): people settle what the matcher was unsure of.

The queue is the departmental records still ``new`` (a pending standard address was created for
them) or ``review`` (the matcher had no confident answer), not yet reviewed. Three decisions:

* **approve** — it is a real address: the pending address becomes active (a ``review`` record gets
  a new active address built from its parsed parts). Other records waiting on the same pending
  address are settled with it.
* **merge** — it is an existing address (the matcher's candidate, or a code the reviewer gives): the
  record is matched to it and its text kept as an alias; a pending duplicate is retired with
  ``replaced_by`` pointing at the target, and its standard text is kept as an alias too.
* **reject** — it is not an address: the record is rejected, a pending address made for it retired.

Every change to a standard address lands in its history (trigger), with the reviewer and reason.
"""

from __future__ import annotations

from sqlalchemy import text

from gridserver.address.base import (NewAddress, activate_address, add_alias, bulk_create, get_by_id,
                                     get_by_id_code, retire_address, set_actor)
from gridserver.errors import Conflict, InvalidInput, NotFound

_QUEUE_WHERE = "d.status IN ('review', 'new') AND d.reviewed_at IS NULL"

#: The area a queued record belongs to, for scope checks — ONE definition used by both the queue
#: filter (what a reviewer sees) and the decision check (what a reviewer may decide), most precise
#: first: the pending address made for it, the grid its own point lies in, then the matcher's
#: candidate; district codes last.
_AREA_JOINS = """LEFT JOIN std_addresses a ON a.id = d.address_id
                 LEFT JOIN std_addresses c ON c.id = d.candidate_id
                 LEFT JOIN LATERAL (SELECT code FROM admin_areas WHERE level = 'grid' AND valid_to IS NULL
                                    AND d.geom IS NOT NULL AND ST_Covers(geom, d.geom)
                                    ORDER BY code LIMIT 1) g ON true"""
_AREA_EXPR = ("coalesce(a.grid_code, a.community_code, a.street_code, g.code, c.grid_code, c.community_code, "
              "c.street_code, a.district_code, c.district_code)")


def list_queue(conn, *, limit: int = 50, offset: int = 0, source: str | None = None,
               scope_code: str | None = None) -> dict:
    """One page of the queue, oldest first: ``{"total", "items"}``; ``scope_code`` limits it to an area."""
    where = _QUEUE_WHERE
    params: dict = {"limit": limit, "offset": offset}
    if source:
        where += " AND d.source = :source"
        params["source"] = source
    if scope_code:
        where += f" AND {_AREA_EXPR} LIKE :scope"
        params["scope"] = scope_code + "%"
    base_sql = f"""FROM dept_records d
                   {_AREA_JOINS}
                   WHERE {where}"""
    total = conn.execute(text(f"SELECT count(*) {base_sql}"), params).scalar()
    rows = conn.execute(text(
        f"""SELECT d.id, d.source, d.source_key, d.row_no, d.raw_text, d.normalised, d.status, d.method, d.score,
                   d.reason, d.parsed, ST_X(d.geom) AS lon, ST_Y(d.geom) AS lat, d.created_at,
                   a.code AS pending_code, a.full_text AS pending_text, a.status AS pending_status,
                   c.code AS candidate_code, c.full_text AS candidate_text,
                   {_AREA_EXPR} AS area_code
            {base_sql} ORDER BY d.id LIMIT :limit OFFSET :offset"""), params).all()
    items = []
    for r in rows:
        d = dict(r._mapping)
        d["created_at"] = r.created_at.isoformat()
        items.append(d)
    return {"total": total, "limit": limit, "offset": offset, "items": items}


def _record(conn, record_id: int) -> dict:
    r = conn.execute(text("SELECT d.*, ST_X(d.geom) AS lon, ST_Y(d.geom) AS lat FROM dept_records d WHERE d.id = :i "
                          "FOR UPDATE"), {"i": record_id}).first()
    if r is None:
        raise NotFound(f"no departmental record {record_id} in the review queue")
    d = dict(r._mapping)
    if d["reviewed_at"] is not None or d["status"] not in ("review", "new"):
        raise Conflict(f"record {record_id} is not waiting for review (status {d['status']}"
                       f"{', reviewed by ' + d['reviewed_by'] if d['reviewed_by'] else ''})")
    return d


def record_area_code(conn, record_id: int) -> str | None:
    """The most precise area code known for a queued record (for scope checks)."""
    return conn.execute(text(f"SELECT {_AREA_EXPR} FROM dept_records d {_AREA_JOINS} WHERE d.id = :i"),
                        {"i": record_id}).scalar()


def merge_target(conn, record_id: int, target_code: str | None) -> dict | None:
    """The address ``merge`` would merge the record into (the given code, else the candidate), or None."""
    if target_code:
        r = conn.execute(text("SELECT code, grid_code, community_code, street_code, district_code FROM std_addresses "
                              "WHERE code = :c"), {"c": target_code}).first()
    else:
        r = conn.execute(text("SELECT s.code, s.grid_code, s.community_code, s.street_code, s.district_code "
                              "FROM dept_records d JOIN std_addresses s ON s.id = d.candidate_id WHERE d.id = :i"),
                         {"i": record_id}).first()
    return dict(r._mapping) if r is not None else None


def _settle(conn, ids: list[int], status: str, method: str, address_id: int | None, actor: str, reason: str | None):
    conn.execute(text("UPDATE dept_records SET status = :st, method = :m, address_id = :a, reviewed_by = :who, "
                      "reviewed_at = now(), reason = coalesce(:why, reason) WHERE id = ANY(:ids)"),
                 {"st": status, "m": method, "a": address_id, "who": actor, "why": reason, "ids": ids})


def _siblings(conn, address_id: int | None) -> list[int]:
    """Other queued 'new' records waiting on the same pending address."""
    if address_id is None:
        return []
    return list(conn.execute(text("SELECT d.id FROM dept_records d WHERE d.address_id = :a AND d.status = 'new' "
                                  "AND d.reviewed_at IS NULL"), {"a": address_id}).scalars())


def approve(conn, record_id: int, *, actor: str, reason: str | None = None) -> dict:
    """Accept the record as a real address (see module docstring); returns the active address."""
    rec = _record(conn, record_id)
    set_actor(conn, actor, "approve", reason or f"approved from {rec['source']} record {rec['source_key'] or rec['row_no']}")
    if rec["status"] == "new" and rec["address_id"]:
        addr_id = rec["address_id"]
        activate_address(conn, addr_id, actor=actor, reason=reason)
        ids = _siblings(conn, addr_id) or [record_id]
    else:
        key = rec["match_key"]
        parsed = rec["parsed"] or {}
        if not key:
            road = parsed.get("road")
            if not road:
                raise InvalidInput(f"record {record_id}: no road could be parsed from {rec['raw_text']!r}; "
                                   "merge it into an existing address or reject it")
            key = "|".join([road] + [parsed.get(f, "") for f in ("house_no", "building", "unit", "floor", "room")])
        district = None
        if rec["lon"] is not None:
            district = conn.execute(text("SELECT code FROM admin_areas WHERE level = 'district' AND valid_to IS NULL "
                                         "AND ST_Covers(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326)) LIMIT 1"),
                                    {"x": rec["lon"], "y": rec["lat"]}).scalar()
        if district is None:  # the district most roads of the base are in
            district = conn.execute(text("SELECT district_code FROM std_addresses WHERE level = 'road' AND "
                                         "district_code IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")).scalar()
        created = bulk_create(conn, [NewAddress(*key.split("|"), lon=rec["lon"], lat=rec["lat"],
                                                geom_source="department", district_code=district)],
                              status="active", source=rec["source"])
        addr_id = created.get(key)
        if addr_id is None:
            raise Conflict(f"record {record_id}: could not create {key!r}")
        activate_address(conn, addr_id, actor=actor, reason=reason)
        ids = [record_id]
    add_alias(conn, addr_id, rec["raw_text"], source=rec["source"])
    _settle(conn, ids, "matched", "approved", addr_id, actor, reason)
    return get_by_id(conn, addr_id)


def merge(conn, record_id: int, target_code: str | None = None, *, actor: str, reason: str | None = None) -> dict:
    """Match the record to an existing live address (default: the matcher's candidate); returns it."""
    rec = _record(conn, record_id)
    if target_code:
        target = get_by_id_code(conn, target_code)
    elif rec["candidate_id"]:
        target = get_by_id(conn, rec["candidate_id"])
    else:
        raise InvalidInput(f"record {record_id} has no candidate: give the code of the address to merge into")
    if target["status"] == "retired":
        raise Conflict(f"cannot merge into retired address {target['code']}")
    why = reason or f"merged {rec['source']} record {rec['source_key'] or rec['row_no']} into {target['code']}"
    set_actor(conn, actor, "merge", why)
    ids = [record_id]
    pending = rec["address_id"] if rec["status"] == "new" else None
    if pending and pending != target["id"]:
        dup = get_by_id(conn, pending)
        ids = _siblings(conn, pending) or ids
        if dup["status"] != "retired":
            retire_address(conn, dup["code"], actor=actor, reason=why, replaced_by=target["id"], action="merge")
        add_alias(conn, target["id"], dup["full_text"], source="merge", match_key=dup["match_key"])
    add_alias(conn, target["id"], rec["raw_text"], source=rec["source"], match_key=rec["match_key"])
    if target["status"] == "pending":
        activate_address(conn, target["id"], actor=actor, reason=why)
    _settle(conn, ids, "matched", "merged", target["id"], actor, reason)
    return get_by_id(conn, target["id"])


def reject(conn, record_id: int, *, actor: str, reason: str) -> dict:
    """Declare the record not an address; a pending address made only for it is retired."""
    if not reason:
        raise InvalidInput("rejecting needs a reason")
    rec = _record(conn, record_id)
    ids = [record_id]
    if rec["status"] == "new" and rec["address_id"]:
        a = get_by_id(conn, rec["address_id"])
        ids = _siblings(conn, a["id"]) or ids
        if a["status"] == "pending":
            retire_address(conn, a["code"], actor=actor, reason=f"rejected in review: {reason}", action="reject")
    conn.execute(text("UPDATE dept_records SET status = 'rejected', reviewed_by = :who, reviewed_at = now(), "
                      "reason = :why WHERE id = ANY(:ids)"), {"who": actor, "why": f"rejected in review: {reason}",
                                                               "ids": ids})
    return {"id": record_id, "status": "rejected", "records": len(ids), "reason": reason}
