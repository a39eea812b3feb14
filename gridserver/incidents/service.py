"""Incidents (事件), first slice: report a point, read one, list with filters and pages.

Who may report (create):
  * admin (anywhere, or inside its scope if it has one), citizen (anywhere);
  * district/street/community operators and grid workers only inside their scope, checked against
    the grid the point falls in (codes are prefix-hierarchical);
  * analyst and dept_handler are read-only here (dept handlers act in the later workflow).

Who may read (get/list) — every read needs a token:
  * admin/analyst without scope: everything; any other staff role: incidents whose grid lies in
    their scope (a report in no grid: the area kept around it); citizen: only their own reports.

Intake (``create_incident`` → ``intake.create``, two statements) also routes the report (``routing``),
sets its due times (``deadlines``) and writes the first event; the later steps are in ``workflow``.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import text

from gridserver.areas.locate import check_lonlat
from gridserver.auth.deps import CITYWIDE_ROLES, describe_scope, user_in_scope
from gridserver.auth.users import User
from gridserver.errors import Forbidden, InvalidInput, NotFound
from gridserver.geo.crs import normalize_crs, to_wgs84
from gridserver.incidents import taxonomy

REPORTER_ROLES = ("admin", "district_operator", "street_operator", "community_operator", "grid_worker",
                  "citizen")
DEFAULT_LIMIT, MAX_LIMIT = 50, 1000
#: Naive timestamps in filters are read as China Standard Time: the clock of every user of the service.
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
#: Area-code length → the incident column holding the code of that level.
CODE_COLUMN = {6: "district_code", 9: "street_code", 12: "community_code", 15: "grid_code"}
LIST_PATH = "/api/v1/incidents"

_SELECT = """
    SELECT i.id, i.category, i.description, i.status,
           ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, i.input_crs, i.input_x, i.input_y,
           i.address_text AS address, i.geocoded, i.geocode_confidence, i.address_code,
           i.grid_code, g.name AS grid_name, i.community_code, c.name AS community_name,
           i.street_code, s.name AS street_name, i.district_code, d.name AS district_name,
           i.created_at, u.username AS reporter, i.reporter_id,
           i.item_code, i.workflow, i.channel, i.department, i.department_name, i.route_level,
           i.route_area_code, i.route_rule, i.manual_reason, i.near_boundary, i.due_at, i.deadline_at,
           i.escalation_level, i.supervised, i.supervision_note, i.merged_into, i.tracking_code,
           i.rating, i.rating_comment, i.reopen_count, i.updated_at, i.closed_at,
           (i.due_at < now() AND i.status NOT IN ('closed', 'rated', 'merged')) AS overdue
    FROM incidents i
    LEFT JOIN admin_areas g ON g.code = i.grid_code AND g.valid_to IS NULL
    LEFT JOIN admin_areas c ON c.code = i.community_code AND c.valid_to IS NULL
    LEFT JOIN admin_areas s ON s.code = i.street_code AND s.valid_to IS NULL
    LEFT JOIN admin_areas d ON d.code = i.district_code AND d.valid_to IS NULL
    LEFT JOIN users u ON u.id = i.reporter_id
"""


def _field(data, name, default=None):
    return data.get(name, default) if isinstance(data, dict) else getattr(data, name, default)


def check_category(code: str, session=None) -> None:
    """InvalidInput (422) listing the valid codes when ``code`` is not a category or item of the
    active taxonomy (the shipped default when no session is given)."""
    tax = taxonomy.active(session) if session is not None else _default_tax()
    tax.node(code)


_DEFAULT_TAX = []


def _default_tax():
    if not _DEFAULT_TAX:
        _DEFAULT_TAX.append(taxonomy.default_taxonomy())
    return _DEFAULT_TAX[0]


def category_label(code: str, tax=None) -> str:
    n = (tax or _default_tax()).nodes.get(code)
    return n.name if n else code


#: Characters of tracking codes: no 0/O/1/I/L, easy to read out on the phone.
_TRACK_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def new_tracking_code() -> str:
    import secrets

    n, out = secrets.randbelow(len(_TRACK_ALPHABET) ** 8), []  # one draw from the OS, not eight
    for _ in range(8):
        n, d = divmod(n, len(_TRACK_ALPHABET))
        out.append(_TRACK_ALPHABET[d])
    return "YX" + "".join(out)


def check_can_report(user: User, grid_code: str | None = None, grid_name: str | None = None) -> None:
    """Forbidden (403) unless ``user`` may report an incident in ``grid_code`` (None: role check only)."""
    if user.role not in REPORTER_ROLES:
        raise Forbidden(f"角色 {user.role} 不能上报事件 role {user.role!r} may not report incidents; "
                        f"allowed roles: {', '.join(REPORTER_ROLES)}")
    if grid_code is None or user.role == "citizen":
        return
    if not user_in_scope(user, grid_code):
        raise Forbidden(f"点位所在网格 {grid_code} ({grid_name or '?'}) 不在您的管辖范围 {describe_scope(user)} 内: "
                        f"the point lies in grid {grid_code}, outside the scope {describe_scope(user)} "
                        f"of user {user.username!r}")


def create_incident(session, data, user: User, *, source: str = "api", channel: str | None = None,
                    outside: str = "error", now=None, max_description: int = 2000) -> dict:
    """Locate and store a new incident reported by ``user`` in ``session``'s transaction (no commit);
    return it as IncidentOut fields.

    ``data`` is an IncidentIn or a dict with lon, lat, crs (default wgs84), category, description,
    address. Raises InvalidInput/UnknownCRS (422), OutsideArea (404, nothing stored) or Forbidden (403).
    A point no grid covers but inside the territory waits in the manual dispatch queue with the reason;
    ``outside="manual"`` also keeps reports that cannot be placed at all (outside the territory, an
    address that does not geocode) there instead of refusing them. The report is routed (department,
    level, rule), gets its dispatch due time, overall deadline, a tracking code and a first event: all
    in ``intake.create`` (two statements).
    """
    from gridserver.incidents import intake

    check_can_report(user)
    x, y = _field(data, "lon"), _field(data, "lat")
    address = _field(data, "address")
    point, unplaced, geocode = None, None, None
    if x is None and y is None and address and address.strip():
        # no point: place the report at the standard address its text matches (NotFound → 404)
        from gridserver.address.geocode import geocode_for_incident

        try:
            x, y, confidence, address_code = geocode_for_incident(session, address)
            point, geocode = (float(x), float(y), "wgs84"), (True, confidence, address_code)
        except NotFound as exc:
            if outside != "manual":
                raise
            unplaced = f"地址无法定位 the address could not be placed: {exc.detail}"
            point = (*_fallback_point(session), "wgs84")  # kept at the district's centre for manual dispatch
    return intake.create(intake.driver_connection(session), data, sa=session, user=user, point=point,
                         unplaced=unplaced, geocode=geocode, source=source, channel=channel, outside=outside,
                         now=now, max_description=max_description)


def _fallback_point(session) -> tuple[float, float]:
    row = session.execute(text("""SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_PointOnSurface(geom) AS c FROM admin_areas
                                  WHERE valid_to IS NULL ORDER BY length(code), code LIMIT 1) q""")).first()
    return (float(row[0]), float(row[1])) if row else (0.0, 0.0)


def _out(row) -> dict:
    out = dict(row._mapping)
    out.pop("reporter_id", None)
    out["category_label"] = category_label(out["category"])
    if out.get("item_code"):
        out["item_label"] = category_label(out["item_code"])
    return out


def _visibility(user: User) -> tuple[str, dict]:
    """SQL condition (on alias ``i``) selecting the incidents ``user`` may read."""
    if user.role == "citizen":
        return "i.reporter_id = :viewer_id", {"viewer_id": user.id}
    if user.scope_code is None:
        return ("TRUE", {}) if user.role in CITYWIDE_ROLES else ("FALSE", {})
    # a report in no grid (manual dispatch: a gap inside the territory) belongs to the area around it
    return ("COALESCE(i.grid_code, i.community_code, i.street_code, i.district_code) LIKE :viewer_scope",
            {"viewer_scope": user.scope_code + "%"})


def check_can_read(user: User, incident: dict) -> None:
    """Forbidden (403) unless ``user`` may read this incident (see the module docstring)."""
    if user.role == "citizen":
        if incident["reporter"] != user.username:
            raise Forbidden(f"公众只能查看本人上报的事件 citizens can read only their own reports; "
                            f"incident {incident['id']} was reported by someone else")
        return
    area = next((incident.get(f"{lv}_code") for lv in ("grid", "community", "street", "district")
                 if incident.get(f"{lv}_code")), None)
    if not user_in_scope(user, area):
        raise Forbidden(f"事件 {incident['id']} 所在网格 {area} ({incident['grid_name'] or '?'}) "
                        f"不在您的管辖范围 {describe_scope(user)} 内: outside the scope of user {user.username!r}")


def get_incident(session, incident_id: int, user: User | None = None) -> dict:
    """One incident as IncidentOut fields; NotFound (404) if absent, Forbidden (403) if ``user`` may not read it."""
    row = session.execute(text(_SELECT + " WHERE i.id = :id"), {"id": incident_id}).first()
    if row is None:
        raise NotFound(f"事件不存在 no incident with id {incident_id}")
    out = _out(row)
    if user is not None:
        check_can_read(user, out)
    return out


# --- listing ------------------------------------------------------------------------------------
@dataclass
class IncidentFilters:
    """List filters as given by the caller (strings are validated by ``list_incidents``)."""

    bbox: str | None = None  # "minlon,minlat,maxlon,maxlat" in ``crs``
    crs: str = "wgs84"
    grid: str | None = None  # a grid code, or any area code (district/street/community) as prefix
    status: str | None = None
    category: str | None = None
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at < until
    reporter: str | None = None  # username
    overdue: bool | None = None  # past the current step's due time, still open
    department: str | None = None  # responsible department code
    manual: bool | None = None  # waiting in the manual dispatch queue
    tracking_code: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    cursor: str | None = None


def parse_bbox(value: str, crs: str | None = "wgs84") -> tuple[float, float, float, float]:
    """Parse "minx,miny,maxx,maxy" given in ``crs`` into a WGS84 (minlon, minlat, maxlon, maxlat)."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 4:
        raise InvalidInput(f"bbox must be 4 comma-separated numbers minlon,minlat,maxlon,maxlat; got {value!r}")
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError:
        raise InvalidInput(f"bbox must be 4 numbers minlon,minlat,maxlon,maxlat; got {value!r}") from None
    name = normalize_crs(crs)
    for x, y in ((x0, y0), (x1, y1)):
        check_lonlat(x, y, name)
    if not (x0 < x1 and y0 < y1):
        raise InvalidInput(f"bbox needs minlon < maxlon and minlat < maxlat; got {value!r}")
    # all four corners: in a projected or shifted CRS the box is not axis-aligned in WGS84
    xs, ys = to_wgs84(np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]), name)
    return float(np.min(xs)), float(np.min(ys)), float(np.max(xs)), float(np.max(ys))


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=LOCAL_TZ)


def encode_cursor(created_at: datetime, incident_id: int) -> str:
    raw = json.dumps([created_at.isoformat(), incident_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) position a cursor points after; InvalidInput for anything we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, incident_id = json.loads(raw)
        return _aware(datetime.fromisoformat(ts)), int(incident_id)
    except (ValueError, TypeError, json.JSONDecodeError):
        raise InvalidInput(f"invalid cursor {cursor!r}: use the 'next' URL of a previous page") from None


def _where(f: IncidentFilters, user: User | None) -> tuple[list[str], dict, dict]:
    """SQL conditions, their parameters, and the normalised query parameters for ``next`` links."""
    conds, params, query = [], {}, {}
    if user is not None:
        cond, p = _visibility(user)
        conds.append(cond)
        params.update(p)
    if f.bbox is not None:
        x0, y0, x1, y1 = parse_bbox(f.bbox, f.crs)
        conds.append("i.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")
        params.update(x0=x0, y0=y0, x1=x1, y1=y1)
        query.update(bbox=f.bbox, crs=f.crs)
    if f.grid is not None:
        column = CODE_COLUMN.get(len(f.grid))
        if column is None or not f.grid.isdigit():
            raise InvalidInput(f"grid must be an area code of 6 (district), 9 (street), 12 (community) or "
                               f"15 (grid) digits; got {f.grid!r}")
        conds.append(f"i.{column} = :area")
        params["area"] = f.grid
        query["grid"] = f.grid
    if f.status is not None:
        if not re.fullmatch(r"[a-z_]{1,32}", f.status):
            raise InvalidInput(f"status must be a status code like 'reported'; got {f.status!r}")
        conds.append("i.status = :status")
        params["status"] = query["status"] = f.status
    if f.category is not None:
        check_category(f.category)
        conds.append("(i.category = :category OR i.item_code = :category)")
        params["category"] = query["category"] = f.category
    if f.overdue is not None:
        conds.append(("" if f.overdue else "NOT ") +
                     "(i.due_at IS NOT NULL AND i.due_at < now() AND i.status NOT IN ('closed', 'rated', 'merged'))")
        query["overdue"] = str(f.overdue).lower()
    if f.department is not None:
        conds.append("i.department = :department")
        params["department"] = query["department"] = f.department
    if f.manual is not None:
        conds.append(("" if f.manual else "NOT ") + "(i.manual_reason IS NOT NULL AND i.department IS NULL)")
        query["manual"] = str(f.manual).lower()
    if f.tracking_code is not None:
        conds.append("i.tracking_code = :tracking_code")
        params["tracking_code"] = query["tracking_code"] = f.tracking_code
    since = _aware(f.since) if f.since else None
    until = _aware(f.until) if f.until else None
    if since and until and since >= until:
        raise InvalidInput(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
    if since:
        conds.append("i.created_at >= :since")
        params["since"] = since
        query["since"] = since.isoformat()
    if until:
        conds.append("i.created_at < :until")
        params["until"] = until
        query["until"] = until.isoformat()
    if f.reporter is not None:
        conds.append("u.username = :reporter")
        params["reporter"] = query["reporter"] = f.reporter
    return conds, params, query


def list_incidents(session, filters: IncidentFilters, user: User | None = None) -> dict:
    """A page of incidents readable by ``user`` matching ``filters``, newest first.

    Returns {"items", "total" (all matches), "limit", "offset" (None when paging by cursor),
    "next"}. ``next`` is a relative URL carrying a keyset cursor: stable while new reports arrive,
    unlike offsets. Raises InvalidInput (422) for bad filters.
    """
    f = filters
    if not 1 <= f.limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}; got {f.limit}")
    if f.offset < 0:
        raise InvalidInput(f"offset must be >= 0; got {f.offset}")
    if f.cursor and f.offset:
        raise InvalidInput("give either offset or cursor, not both")
    conds, params, query = _where(f, user)
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    total = session.execute(
        text("SELECT count(*) FROM incidents i LEFT JOIN users u ON u.id = i.reporter_id" + where), params
    ).scalar_one()
    page_conds, page_params = list(conds), dict(params, limit=f.limit + 1, offset=f.offset)
    if f.cursor:
        c_at, c_id = decode_cursor(f.cursor)
        page_conds.append("(i.created_at, i.id) < (:c_at, :c_id)")
        page_params.update(c_at=c_at, c_id=c_id, offset=0)
    page_where = (" WHERE " + " AND ".join(page_conds)) if page_conds else ""
    rows = session.execute(
        text(_SELECT + page_where + " ORDER BY i.created_at DESC, i.id DESC LIMIT :limit OFFSET :offset"),
        page_params,
    ).all()
    items = [_out(r) for r in rows[: f.limit]]
    next_url = None
    if len(rows) > f.limit:  # one extra row fetched: there is a next page
        last = items[-1]
        next_url = LIST_PATH + "?" + urlencode(
            {**query, "limit": f.limit, "cursor": encode_cursor(last["created_at"], last["id"])})
    return {"items": items, "total": total, "limit": f.limit, "offset": None if f.cursor else f.offset,
            "next": next_url}
