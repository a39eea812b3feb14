"""Incidents (事件), first slice: report a point, read one, list with filters and pages.

Who may report (create):
  * admin (anywhere, or inside its scope if it has one), citizen (anywhere);
  * district/street/community operators and grid workers only inside their scope, checked against
    the grid the point falls in (codes are prefix-hierarchical);
  * analyst and dept_handler are read-only here (dept handlers act in the later workflow).

Who may read (get/list) — every read needs a token:
  * admin/analyst without scope: everything; any other staff role: incidents whose grid lies in
    their scope; citizen: only their own reports.

The full workflow (dispatch, status transitions, SLA) is a later issue; status stays 'reported'.
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

from gridserver.areas.locate import check_lonlat, locate_point
from gridserver.auth.deps import CITYWIDE_ROLES, describe_scope, user_in_scope
from gridserver.auth.users import User
from gridserver.errors import Forbidden, InvalidInput, NotFound
from gridserver.geo.crs import normalize_crs, to_wgs84
from gridserver.incidents.categories import CATEGORIES, category_label

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
           i.created_at, u.username AS reporter, i.reporter_id
    FROM incidents i
    LEFT JOIN admin_areas g ON g.code = i.grid_code AND g.valid_to IS NULL
    LEFT JOIN admin_areas c ON c.code = i.community_code AND c.valid_to IS NULL
    LEFT JOIN admin_areas s ON s.code = i.street_code AND s.valid_to IS NULL
    LEFT JOIN admin_areas d ON d.code = i.district_code AND d.valid_to IS NULL
    LEFT JOIN users u ON u.id = i.reporter_id
"""


def _field(data, name, default=None):
    return data.get(name, default) if isinstance(data, dict) else getattr(data, name, default)


def check_category(code: str) -> None:
    """InvalidInput (422) listing the valid codes when ``code`` is not a known category."""
    if code not in CATEGORIES:
        valid = ", ".join(f"{k} ({v['label']})" for k, v in CATEGORIES.items())
        raise InvalidInput(f"未知事件分类 unknown category {code!r}; valid categories: {valid}")


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


def create_incident(session, data, user: User, *, source: str = "api") -> dict:
    """Locate and store a new incident reported by ``user``; return it as IncidentOut fields.

    ``data`` is an IncidentIn or a dict with lon, lat, crs (default wgs84), category, description,
    address. Raises InvalidInput/UnknownCRS (422), OutsideArea (404, nothing stored) or Forbidden (403).
    Does not commit.
    """
    category = _field(data, "category")
    check_category(category)
    check_can_report(user)
    x, y = _field(data, "lon"), _field(data, "lat")
    address = _field(data, "address")
    description = _field(data, "description", "") or ""
    if len(description) > 2000:
        raise InvalidInput(f"description is {len(description)} characters, at most 2000 are allowed")
    crs = _field(data, "crs", "wgs84") or "wgs84"
    geocoded, confidence, address_code = False, None, None
    if x is None and y is None and address and address.strip():
        # no point: place the report at the standard address its text matches (NotFound → 404)
        from gridserver.address.geocode import geocode_for_incident

        x, y, confidence, address_code = geocode_for_incident(session, address)
        crs, geocoded = "wgs84", True
    if x is None or y is None:
        raise InvalidInput("give lon and lat (both), or an address 需要经纬度或地址")
    loc = locate_point(session, float(x), float(y), crs)
    check_can_report(user, loc.code("grid"), loc.areas.get("grid", {}).get("name"))
    new_id = session.execute(
        text("""INSERT INTO incidents (category, description, geom, input_x, input_y, input_crs, address_text,
                                       geocoded, geocode_confidence, address_code,
                                       grid_code, community_code, street_code, district_code, reporter_id, source)
                VALUES (:category, :description, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :x, :y, :crs,
                        :address, :geocoded, :confidence, :address_code,
                        :grid, :community, :street, :district, :reporter, :source)
                RETURNING id"""),
        {"category": category, "description": description, "lon": loc.lon, "lat": loc.lat,
         "x": float(x), "y": float(y), "crs": loc.input_crs, "address": address,
         "geocoded": geocoded, "confidence": confidence, "address_code": address_code,
         "grid": loc.code("grid"), "community": loc.code("community"), "street": loc.code("street"),
         "district": loc.code("district"), "reporter": user.id, "source": source},
    ).scalar_one()
    return get_incident(session, new_id)


def _out(row) -> dict:
    out = dict(row._mapping)
    out.pop("reporter_id", None)
    out["category_label"] = category_label(out["category"])
    return out


def _visibility(user: User) -> tuple[str, dict]:
    """SQL condition (on alias ``i``) selecting the incidents ``user`` may read."""
    if user.role == "citizen":
        return "i.reporter_id = :viewer_id", {"viewer_id": user.id}
    if user.scope_code is None:
        return ("TRUE", {}) if user.role in CITYWIDE_ROLES else ("FALSE", {})
    return "i.grid_code LIKE :viewer_scope", {"viewer_scope": user.scope_code + "%"}


def check_can_read(user: User, incident: dict) -> None:
    """Forbidden (403) unless ``user`` may read this incident (see the module docstring)."""
    if user.role == "citizen":
        if incident["reporter"] != user.username:
            raise Forbidden(f"公众只能查看本人上报的事件 citizens can read only their own reports; "
                            f"incident {incident['id']} was reported by someone else")
        return
    if not user_in_scope(user, incident["grid_code"]):
        raise Forbidden(f"事件 {incident['id']} 所在网格 {incident['grid_code']} ({incident['grid_name'] or '?'}) "
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
        conds.append("i.category = :category")
        params["category"] = query["category"] = f.category
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
