"""Incident intake in two round trips: the hot path of ``POST /api/v1/incidents`` (and of every other
way a report comes in: hotline import, Open311, the address-only route go through ``create`` too).

1. One **context** statement reads everything intake needs: the caller's account (the token check:
   disabled accounts and revoked tokens are refused at once, as everywhere), the active taxonomy
   version and the calendar revision (the in-process copies of the taxonomy and the working-day
   overrides are used only while these match, so a ``taxonomy load`` or a calendar change in any
   process is seen by the next report), the grid chain covering the point (``areas.locate``'s query),
   whether a point no grid covers still lies in the territory, neighbouring areas within 5 m, duplicate
   candidates, and the stored answer of the ``Idempotency-Key``.
2. One **write** statement inserts the incident, its first event and (with a key) the idempotency
   record with its complete answer, as CTEs of one statement (atomic by itself on an autocommit
   connection), and returns the id. The 201 body is built from what was read, not re-read.

A concurrent request with the same key blocks inside statement 2 on the key's unique index until the
first commits, then fails with a unique violation that undoes all of its statement, and replays the
stored answer (a third round trip, only in that race). Before: about 12 round trips per report (pool
pre-ping, BEGIN, account, taxonomy version, locate, near boundary, insert, event, re-read, duplicates,
COMMIT; claim and save with a key; the calendar every 30 s).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from gridserver.areas import locate
from gridserver.auth import users
from gridserver.auth.deps import check_token_user, user_in_scope
from gridserver.db import idempotency as idem_mod
from gridserver.errors import Forbidden, InvalidInput, OutsideArea
from gridserver.incidents import deadlines, duplicates, routing, taxonomy

LIST_PATH = "/api/v1/incidents"


def _pyformat(sql: str) -> str:
    """A ``:name`` SQL text as psycopg's ``%(name)s`` (so the fragments keep one home each)."""
    return str(text(sql).compile(dialect=postgresql.psycopg.dialect()))


#: The key's stored answer, the principal (``Idempotency.principal``: user:<id>) from the token's username.
_LOOKUP_BY_USERNAME = idem_mod.LOOKUP_SQL.replace(
    "CAST(:idem_principal AS text)", "'user:' || (SELECT id FROM users WHERE username = CAST(:username AS text))")
_CONTEXT = _pyformat(f"""
    WITH chain AS MATERIALIZED ({locate._LOCATE_SQL.text}),
         loc AS (SELECT json_agg(chain) AS areas FROM chain)
    SELECT loc.areas,
           CASE WHEN loc.areas IS NULL THEN ({routing.TERRITORY_SQL}) END AS territory,
           (SELECT json_agg(n) FROM ({routing.NEAR_SQL}) n) AS near,
           (SELECT json_agg(c) FROM ({duplicates.CANDIDATES_SQL}) c) AS dups,
           (SELECT id FROM taxonomy_versions WHERE active) AS tax_version,
           ({deadlines.REVISION_SQL}) AS cal_rev,
           (SELECT row_to_json(u) FROM (SELECT {users._COLUMNS} FROM users
                                        WHERE username = CAST(:username AS text)) u) AS account,
           (SELECT row_to_json(k) FROM ({_LOOKUP_BY_USERNAME}) k) AS stored
    FROM loc
""")

_INSERT = """
    WITH ins AS (
        INSERT INTO incidents (category, item_code, taxonomy_version, workflow, channel, description, geom,
                               input_x, input_y, input_crs, address_text, geocoded, geocode_confidence,
                               address_code, grid_code, community_code, street_code, district_code, reporter_id,
                               source, department, department_name, route_level, route_area_code, route_rule,
                               manual_reason, near_boundary, due_at, deadline_at, tracking_code, webhook_url,
                               contact, created_at, updated_at)
        VALUES (%(category)s, %(item_code)s, %(taxonomy_version)s, %(workflow)s, %(channel)s, %(description)s,
                ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326), %(input_x)s, %(input_y)s, %(input_crs)s,
                %(address)s, %(geocoded)s, %(geocode_confidence)s, %(address_code)s, %(grid_code)s,
                %(community_code)s, %(street_code)s, %(district_code)s, %(reporter_id)s, %(source)s,
                %(department)s, %(department_name)s, %(route_level)s, %(route_area_code)s,
                CAST(%(route_rule_json)s AS jsonb), %(manual_reason)s, CAST(%(near_json)s AS jsonb), %(due_at)s,
                %(deadline_at)s, %(tracking_code)s, %(webhook_url)s, CAST(%(contact_json)s AS jsonb),
                %(created_at)s, %(created_at)s)
        RETURNING id),
    ev AS (
        INSERT INTO incident_events (incident_id, at, actor_id, actor, action, to_status, note, data)
        SELECT id, %(created_at)s, %(reporter_id)s, %(reporter)s, 'report', 'reported', %(event_note)s,
               CAST(%(event_json)s AS jsonb) FROM ins){idem}
    SELECT id FROM ins
"""
_WRITE = _INSERT.format(idem="")
_WRITE_KEYED = _INSERT.format(idem=f",\n    ik AS ({idem_mod.INSERT_ANSWER_SQL})")
#: The parameter names of the write (psycopg caches a statement's parsing only with ≤ 50 parameters given).
_WRITE_PARAMS = tuple(dict.fromkeys(re.findall(r"%\((\w+)\)s", _INSERT)))


def _field(data, name, default=None):
    return data.get(name, default) if isinstance(data, dict) else getattr(data, name, default)


def _ns(rows) -> list:
    return [SimpleNamespace(**r) for r in rows or ()]


def _tax(sa, db: str, vid: int | None) -> taxonomy.Taxonomy:
    """Taxonomy version ``vid`` (None: the active one) from the cache, loaded on a miss (once per version)
    through ``sa`` (the caller's SQLAlchemy session, so its own uncommitted load is seen) or a new session."""
    tax = taxonomy.cached(db, vid)
    if tax is not None:
        return tax
    if sa is not None:
        return taxonomy.version(sa, vid) if vid is not None else taxonomy.active(sa)
    from gridserver.db.engine import session_scope

    with session_scope() as s:  # rare: a new version, or none stored yet (loads the shipped default)
        return taxonomy.version(s, vid) if vid is not None else taxonomy.active(s)


def create(conn, data, *, sa=None, user=None, claims: tuple[str, int] | None = None, idem=None,
           point: tuple[float, float, str] | None = None, unplaced: str | None = None,
           geocode: tuple | None = None, source: str = "api", channel: str | None = None,
           outside: str = "error", now: datetime | None = None, max_description: int = 2000):
    """Locate, route and store one report on psycopg connection ``conn``; returns the IncidentOut fields
    (a dict), or a JSONResponse (the stored answer) when ``idem`` replays.

    The caller is ``user``, or the account named by a verified token's ``claims`` (username, token
    version), checked here from the context row. ``point`` = (lon, lat, crs name) in WGS84 when the
    caller already placed the report (geocoded, or ``unplaced``: kept for manual dispatch with that
    reason); else ``data``'s lon/lat/crs are validated and converted (422). A point covered by no grid
    goes to the manual dispatch queue when it lies in the territory (or ``outside="manual"``), else
    OutsideArea (404, nothing stored). Forbidden (403) for a role or scope that may not report there.
    On an autocommit connection the write commits by itself; in a caller's transaction (``sa``, the
    SQLAlchemy session ``conn`` belongs to) it does not.
    """
    from gridserver.incidents.service import check_can_report, new_tracking_code

    db = taxonomy._db_key(conn)
    code = _field(data, "category")
    tax = _tax(sa, db, None)
    if code not in tax.nodes:  # maybe a taxonomy loaded since: check the active version before refusing
        vid = conn.execute("SELECT id FROM taxonomy_versions WHERE active").fetchone()
        tax = _tax(sa, db, vid[0] if vid else None)
    node = tax.nodes.get(code)  # unknown → 422 once the caller is known to be allowed to ask
    if user is not None:
        check_can_report(user)
    description = _field(data, "description", "") or ""
    if len(description) > max_description:
        raise InvalidInput(f"description is {len(description)} characters, at most {max_description} are allowed")
    asked = _field(data, "channel")
    if asked is not None and asked not in ("citizen", "business"):
        raise InvalidInput(f"channel must be citizen or business (商家诉求); got {asked!r}")
    x, y = _field(data, "lon"), _field(data, "lat")
    if geocode is not None:  # the geocoded point is the input
        x, y = point[0], point[1]
    if point is None:
        if x is None or y is None:
            raise InvalidInput("give lon and lat (both), or an address 需要经纬度或地址")
        point = locate.to_storage(float(x), float(y), _field(data, "crs", "wgs84") or "wgs84")
    lon, lat, input_crs = point
    now = now or datetime.now(timezone.utc)
    params = {"lon": lon, "lat": lat, "near_deg": routing.NEAR_DEG, "terr_deg": routing.TERRITORY_DEG,
              "terr_m": routing.TERRITORY_M, "dup_deg": duplicates.search_deg(lat), "exclude": 0, "at": now,
              "username": claims[0] if claims else None, "idem_key": idem.key if idem is not None else None}
    for _ in range(3):
        params["category"] = (node.parent or node.code) if node else ""
        ctx = conn.execute(_CONTEXT, params).fetchone()
        areas_rows, territory, near_rows, dup_rows, tax_version, cal_rev, account, stored = ctx
        if claims is not None:
            if account is not None:
                account["created_at"] = datetime.fromisoformat(account["created_at"])
                account = users.User(**account)
            user = check_token_user(account, claims[0], claims[1])
            check_can_report(user)
        if stored is not None and idem is not None:
            return idem.answer(stored)
        if tax_version != tax.version:  # another process (or the CLI) loaded a taxonomy: use it
            tax = _tax(sa, db, tax_version)
            node = tax.node(code)
            if (node.parent or node.code) != params["category"]:
                continue  # the duplicate candidates were searched in another category: read again
        break
    node = tax.node(code)
    # an unplaced report only sits at a fallback point: it is in no area
    areas = {r["level"]: r for r in areas_rows or ()} if unplaced is None else {}
    codes = {lv: a["code"] for lv, a in areas.items()}
    if not areas and unplaced is None:
        if territory is None and outside != "manual":
            raise OutsideArea(
                f"点位不在本辖区内 point lon={x} lat={y} ({input_crs}) → WGS84 ({lon:.7f}, {lat:.7f}) is outside "
                f"every grid and more than {routing.TERRITORY_M:g} m outside the city's territory (every district, "
                f"street and community): nothing was stored")
        unplaced = (f"位置在辖区内但不在任何网格内（网格间空隙、河道等） the point lies inside {territory} but in no grid"
                    if territory else f"位置不在本辖区内 the point ({lon:.7f}, {lat:.7f}) lies outside the territory")
        if territory:  # a gap: keep the areas above it, so the right operators see the report
            codes = {lv: territory[:n] for lv, n in (("community", 12), ("street", 9), ("district", 6))
                     if len(territory) >= n}
    names = {lv: a["name"] for lv, a in areas.items()}
    if codes.get("grid"):
        check_can_report(user, codes["grid"], names.get("grid"))
        confirm = _field(data, "confirm_grid")
        if confirm and confirm != codes["grid"]:
            codes, names = routing.confirm_grid(conn, lon, lat, confirm)
            check_can_report(user, codes["grid"], names.get("grid"))
    elif codes and user.role != "citizen" and not user_in_scope(user, territory):
        raise Forbidden(f"点位不在您的管辖范围内 the point ({lon:.7f}, {lat:.7f}) lies in no grid, in {territory}, "
                        f"outside the scope of user {user.username!r}")
    r = routing.route(tax, node, codes)
    if unplaced:
        r.manual_reason = f"{r.manual_reason}: {unplaced}" if r.manual_reason else unplaced
    near = routing.near_from_rows(_ns(near_rows), [codes.get("grid"), codes.get("community")]) \
        if codes.get("grid") else None
    overrides = deadlines.overrides_at(db, cal_rev or 0, lambda: conn.execute(
        "SELECT day, workday FROM calendar_overrides").fetchall())
    deadline_at = deadlines.add_deadline(now, node.deadline, overrides).astimezone(timezone.utc)
    due_at = now + timedelta(minutes=float(tax.settings.get("dispatch_minutes", 30)))
    channel = channel or ("business" if asked == "business" else {"citizen": "citizen"}.get(user.role, "staff"))
    contact = _field(data, "contact")
    geocoded, confidence, address_code = geocode or (False, None, None)
    from gridserver.incidents.service import category_label

    category = node.parent or node.code
    out = {"id": 0, "category": category, "description": description, "status": "reported", "lon": lon, "lat": lat,
           "input_crs": input_crs, "input_x": None if x is None else float(x), "input_y": None if y is None else float(y),
           "address": _field(data, "address"), "geocoded": geocoded, "geocode_confidence": confidence,
           "address_code": address_code,
           **{f"{lv}_code": codes.get(lv) for lv in ("grid", "community", "street", "district")},
           **{f"{lv}_name": names.get(lv) for lv in ("grid", "community", "street", "district")},
           "created_at": now, "reporter": user.username, "item_code": node.code if node.is_item else None,
           "workflow": node.workflow, "channel": channel, "department": r.department,
           "department_name": r.department_name, "route_level": r.level, "route_area_code": r.area_code,
           "route_rule": r.rule, "manual_reason": r.manual_reason, "near_boundary": near, "due_at": due_at,
           "deadline_at": deadline_at, "escalation_level": 0, "supervised": False, "supervision_note": None,
           "merged_into": None, "tracking_code": new_tracking_code(), "rating": None, "rating_comment": None,
           "reopen_count": 0, "updated_at": now, "closed_at": None, "overdue": False,
           "category_label": category_label(category)}
    if out["item_code"]:
        out["item_label"] = category_label(out["item_code"])
    if codes.get("grid"):
        out["duplicates"] = duplicates.score_candidates(_ns(dup_rows), description, out["item_code"]) or None
    values = {**out, "taxonomy_version": tax.version, "reporter_id": user.id, "source": source,
           "webhook_url": _field(data, "webhook_url"),
           "route_rule_json": json.dumps(r.rule), "near_json": json.dumps(near) if near else None,
           "contact_json": json.dumps(contact) if contact else None, "event_note": description[:200],
           "event_json": json.dumps({"channel": channel, "route": r.rule, "department": r.department,
                                     "manual_reason": r.manual_reason, "near_boundary": bool(near)})}
    row = {k: values[k] for k in _WRITE_PARAMS}
    if idem is None or idem.key is None:
        out["id"] = conn.execute(_WRITE, row).fetchone()[0]
        return out
    return _write_keyed(conn, out, row, idem, user)


def _write_keyed(conn, out: dict, row: dict, idem, user) -> JSONResponse:
    """The write with the idempotency record and its complete answer in the same statement."""
    import psycopg

    from gridserver.incidents.schemas import IncidentOut

    body = idem_mod.shape(IncidentOut, out)
    principal = idem.principal(user)
    try:
        new_id = conn.execute(_WRITE_KEYED, {**row, "idem_principal": principal, "idem_key": idem.key,
                                             "idem_endpoint": idem.endpoint, "idem_hash": idem.request_hash,
                                             "idem_body": json.dumps(body, ensure_ascii=False),
                                             "idem_path": LIST_PATH}).fetchone()[0]
    except psycopg.errors.UniqueViolation as exc:
        if not idem_mod.is_key_conflict(exc):
            raise
        # a concurrent request with this key committed first (we waited for it): answer as it did
        found = conn.execute(_pyformat(idem_mod.LOOKUP_SQL), {"idem_principal": principal, "idem_key": idem.key})
        cols = [c.name for c in found.description]
        return idem.answer(dict(zip(cols, found.fetchone())))
    body["id"] = new_id
    return JSONResponse(body, status_code=201, headers={"Location": f"{LIST_PATH}/{new_id}"})


def driver_connection(conn):
    """The psycopg connection under a SQLAlchemy session or connection (same transaction), or ``conn``."""
    if hasattr(conn, "pgconn"):
        return conn
    proxied = conn.connection() if callable(getattr(conn, "connection", None)) else conn.connection
    if hasattr(proxied, "connection") and not hasattr(proxied, "driver_connection"):  # a Session's Connection
        proxied = proxied.connection
    return proxied.driver_connection
