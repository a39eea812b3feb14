"""Open311 GeoReport v2 (``/open311/v2``) over the same incidents, JSON and XML.

* Services = the active taxonomy's items (``service_code`` = item code, ``group`` = category name,
  ``type`` realtime, ``metadata`` false: no extra attributes are needed).
* ``POST requests.{fmt}`` takes the spec's form fields (``api_key`` in the body or query string,
  ``service_code``, ``lat``+``long`` or ``address_string``/``address_id``, ``description`` ≤ 4000,
  ``media_url``, ``email``/``first_name``/``last_name``/``phone``/``device_id``/``account_id``) and files
  through the normal intake (routing, deadlines, duplicates, event log) as the key's account.
  Keys come from ``gridserver users apikey NAME`` and are stored hashed. An address that cannot be
  placed goes to the manual dispatch queue; a point outside every grid is a 400.
* ``GET requests.{fmt}`` filters per the spec (ids override everything; ≤ 90-day span; default last
  90 days, at most 1000); ``status`` is ``open`` until the incident is resolved, then ``closed``.
  Reporter and contact details are never published.
* Errors: a list of ``{code, description}`` (``<errors><error>`` in XML); 404 unknown service,
  request, token or jurisdiction; 403 missing/wrong api_key; 400 the rest.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timedelta, timezone
from xml.sax.saxutils import escape

from fastapi import APIRouter, Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridserver.db.engine import get_session
from gridserver.db.idempotency import Idempotency, idempotency
from gridserver.errors import GridserverError
from gridserver.incidents import taxonomy, workflow
from gridserver.limits import BodyTooLarge, LimitedBodyRoute, max_body

router = APIRouter(prefix="/open311/v2", tags=["Open311 GeoReport v2"], route_class=LimitedBodyRoute)

#: A POST requests.{fmt} form: description ≤ 4000 characters, an address, contact fields, a media URL.
POST_MAX_BODY = 256 * 1024
SPEC = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-11-25T00:00:00Z"
CLOSED = ("resolved", "verified", "closed", "rated", "merged")
MAX_SPAN = timedelta(days=90)
CST = timezone(timedelta(hours=8))
_ITEM_NAMES = {"services": "service", "endpoints": "endpoint", "formats": "format", "attributes": "attribute",
               "values": "value", "service_requests": "request", "errors": "error"}


class Open311Error(Exception):
    def __init__(self, status: int, description: str):
        super().__init__(description)
        self.status, self.description = status, description


# --- output ---------------------------------------------------------------------------------------
def _xml_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, datetime):
        return _w3c(v)
    return escape(str(v))


def _xml(name: str, value) -> str:
    if isinstance(value, list):
        child = _ITEM_NAMES.get(name, "item")
        return f"<{name}>" + "".join(_xml(child, v) for v in value) + f"</{name}>"
    if isinstance(value, dict):
        return f"<{name}>" + "".join(_xml(k, v) for k, v in value.items()) + f"</{name}>"
    return f"<{name}>{_xml_value(value)}</{name}>"


def _render(fmt: str, root: str, content, status: int = 200) -> Response:
    if fmt == "xml":
        body = '<?xml version="1.0" encoding="utf-8"?>' + _xml(root, content)
        return Response(body.encode("utf-8"), status_code=status, media_type="text/xml; charset=utf-8")
    return JSONResponse(jsonable_encoder(content), status_code=status, media_type="application/json; charset=utf-8")


def _error(fmt: str, status: int, description: str) -> Response:
    return _render(fmt if fmt in ("json", "xml") else "xml", "errors", [{"code": status, "description": description}],
                   status)


def _w3c(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(CST).replace(microsecond=0).isoformat()


def _fmt(fmt: str) -> str:
    if fmt not in ("json", "xml"):
        raise Open311Error(404, f"unknown format {fmt!r}: use .json or .xml")
    return fmt


def _jurisdiction(session, params) -> None:
    j = (params.get("jurisdiction_id") or "").strip()
    if not j:
        return
    found = session.execute(text("SELECT 1 FROM admin_areas WHERE level = 'district' AND code = :c AND valid_to IS NULL"),
                            {"c": j}).first()
    if found is None:
        raise Open311Error(404, f"unknown jurisdiction_id {j!r}: use a district code served here (e.g. 440104)")


def _rollback(session) -> None:
    """An error answer is returned, not raised, so the request's session would commit: undo its
    writes (e.g. a claimed Idempotency-Key) first."""
    if session is not None:
        session.rollback()


def _wrap(fn):
    """Run an endpoint, turning Open311Error / domain errors into the spec's error list."""
    import functools
    import inspect

    @functools.wraps(fn)
    async def inner(*args, **kwargs):
        fmt = kwargs.get("fmt", "json")
        try:
            out = fn(*args, **kwargs)
            if inspect.isawaitable(out):
                out = await out
            return out
        except Open311Error as exc:
            _rollback(kwargs.get("session"))
            return _error(fmt, exc.status, exc.description)
        except BodyTooLarge:
            raise  # 413 body_too_large, like every other route
        except GridserverError as exc:
            _rollback(kwargs.get("session"))
            status = 404 if exc.status == 404 and exc.code == "not_found" else (403 if exc.status in (401, 403) else 400)
            return _error(fmt, status, exc.detail)

    return inner


# --- discovery and services ----------------------------------------------------------------------
@router.get("/discovery.{fmt}", summary="Service discovery")
@_wrap
def discovery(fmt: str, request: Request):
    fmt = _fmt(fmt)
    base = str(request.base_url).rstrip("/") + "/open311/v2/"
    return _render(fmt, "discovery", {
        "changeset": CHANGESET, "contact": "越秀区城市运行管理中心 gridserver operators",
        "key_service": "api keys: gridserver users apikey NAME (ask the operators)",
        "endpoints": [{"specification": SPEC, "url": base, "changeset": CHANGESET, "type": "production",
                       "formats": ["text/xml", "application/json"]}]})


def _service(tax, item) -> dict:
    return {"service_code": item.code, "service_name": item.name,
            "description": f"{tax.nodes[item.parent].name} / {item.name}（{tax.department_name(item.departments[item.start_level])}，"
                           f"时限 {item.deadline}）",
            "metadata": False, "type": "realtime", "keywords": ",".join(item.keywords.split()),
            "group": tax.nodes[item.parent].name}


@router.get("/services.{fmt}", summary="Service list (taxonomy items)")
@_wrap
def services(fmt: str, request: Request, session: Session = Depends(get_session, scope="function")):
    fmt = _fmt(fmt)
    _jurisdiction(session, request.query_params)
    tax = taxonomy.active(session)
    session.commit()
    return _render(fmt, "services", [_service(tax, i) for i in tax.items()])


def _definition(fmt: str, code: str, request: Request, session) -> Response:
    fmt = _fmt(fmt)
    _jurisdiction(session, request.query_params)
    tax = taxonomy.active(session)
    node = tax.nodes.get(code)
    if node is None or not node.is_item:
        raise Open311Error(404, f"unknown service_code {code!r}: see services.{fmt}")
    return _render(fmt, "service_definition", {"service_code": code, "attributes": []})


@router.get("/services/{code}.{fmt}", summary="Service definition")
@_wrap
def service_definition(code: str, fmt: str, request: Request, session: Session = Depends(get_session, scope="function")):
    return _definition(fmt, code, request, session)


@router.get("/service/{code}.{fmt}", include_in_schema=False)
@_wrap
def service_definition_alias(code: str, fmt: str, request: Request,
                             session: Session = Depends(get_session, scope="function")):
    return _definition(fmt, code, request, session)  # the ``open311`` 1.1 client asks here


# --- requests -------------------------------------------------------------------------------------
_SELECT = """
    SELECT i.id, i.status, i.category, i.item_code, i.description, i.department_name, i.created_at, i.updated_at,
           i.closed_at, i.resolved_at, i.deadline_at, i.address_text, i.address_code, ST_X(i.geom) AS lon,
           ST_Y(i.geom) AS lat, i.contact->>'media_url' AS media_url, i.tracking_code, i.merged_into
    FROM incidents i
"""


def _request_out(tax, r) -> dict:
    code = r.item_code or r.category
    node = tax.nodes.get(code)
    closed = r.status in CLOSED
    notes = workflow.CITIZEN_WORDING.get(r.status, r.status)
    if r.merged_into:
        notes += f"（合并至 {r.merged_into}）"
    return {"service_request_id": str(r.id), "status": "closed" if closed else "open", "status_notes": notes,
            "service_name": node.name if node else code, "service_code": code, "description": r.description,
            "agency_responsible": r.department_name, "service_notice": None,
            "requested_datetime": _w3c(r.created_at),
            "updated_datetime": _w3c((r.closed_at or r.resolved_at or r.updated_at) if closed else r.updated_at),
            "expected_datetime": _w3c(r.deadline_at), "address": r.address_text, "address_id": r.address_code,
            "zipcode": None, "lat": r.lat, "long": r.lon, "media_url": r.media_url}


def _parse_w3c(value: str, name: str) -> datetime:
    try:
        ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Open311Error(400, f"{name} must be a W3C datetime like 2026-11-01T00:00:00+08:00; got {value!r}") from None
    if ts.tzinfo is None:
        raise Open311Error(400, f"{name} needs a timezone (e.g. +08:00 or Z); got {value!r}")
    return ts


@router.get("/requests.{fmt}", summary="Service requests (filters per GeoReport v2)")
@_wrap
def list_requests(fmt: str, request: Request, session: Session = Depends(get_session, scope="function")):
    fmt = _fmt(fmt)
    q = {k: v for k, v in request.query_params.items() if v != ""}
    _jurisdiction(session, q)
    tax = taxonomy.active(session)
    conds, params = [], {}
    if "service_request_id" in q:
        ids = []
        for part in q["service_request_id"].split(","):
            if not part.strip().isdigit():
                raise Open311Error(400, f"service_request_id must be a comma list of ids; got {part!r}")
            ids.append(int(part))
        conds.append("i.id = ANY(:ids)")
        params["ids"] = ids
    else:
        if "service_code" in q:
            codes = [c.strip() for c in q["service_code"].split(",") if c.strip()]
            unknown = [c for c in codes if c not in tax.nodes]
            if unknown:
                raise Open311Error(404, f"unknown service_code {', '.join(unknown)}")
            conds.append("(i.item_code = ANY(:codes) OR (i.item_code IS NULL AND i.category = ANY(:codes)))")
            params["codes"] = codes
        if "status" in q:
            wanted = {s.strip() for s in q["status"].split(",")}
            bad = wanted - {"open", "closed"}
            if bad:
                raise Open311Error(400, f"status must be open and/or closed; got {', '.join(sorted(bad))}")
            if wanted == {"open"}:
                conds.append("i.status <> ALL(:closed)")
            elif wanted == {"closed"}:
                conds.append("i.status = ANY(:closed)")
            params["closed"] = list(CLOSED)
        end = _parse_w3c(q["end_date"], "end_date") if "end_date" in q else None
        start = _parse_w3c(q["start_date"], "start_date") if "start_date" in q else None
        if start and end and end - start > MAX_SPAN:
            raise Open311Error(400, "start_date to end_date may span at most 90 days")
        if start and end and end < start:
            raise Open311Error(400, "end_date is before start_date")
        if start is None:
            start = (end or datetime.now(timezone.utc)) - MAX_SPAN
        conds.append("i.created_at >= :start")
        params["start"] = start
        if end is not None:
            conds.append("i.created_at <= :end")
            params["end"] = end
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    rows = session.execute(text(_SELECT + where + " ORDER BY i.created_at DESC, i.id DESC LIMIT 1000"), params).all()
    return _render(fmt, "service_requests", [_request_out(tax, r) for r in rows])


@router.get("/requests/{request_id}.{fmt}", summary="One service request")
@_wrap
def get_request(request_id: str, fmt: str, request: Request, session: Session = Depends(get_session, scope="function")):
    fmt = _fmt(fmt)
    _jurisdiction(session, request.query_params)
    if not request_id.isdigit():
        raise Open311Error(404, f"no service request {request_id!r}")
    row = session.execute(text(_SELECT + " WHERE i.id = :i"), {"i": int(request_id)}).first()
    if row is None:
        raise Open311Error(404, f"no service request {request_id!r}")
    return _render(fmt, "service_requests", [_request_out(taxonomy.active(session), row)])


@router.get("/tokens/{token}.{fmt}", summary="Service request id for a token (= tracking code)")
@_wrap
def get_token(token: str, fmt: str, session: Session = Depends(get_session, scope="function")):
    fmt = _fmt(fmt)
    row = session.execute(text("SELECT id FROM incidents WHERE tracking_code = :t"), {"t": token.upper()}).first()
    if row is None:
        raise Open311Error(404, f"unknown token {token!r}")
    return _render(fmt, "service_requests", [{"service_request_id": str(row.id), "token": token.upper()}])


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_key(conn, name: str, username: str) -> str:
    """Create an API key named ``name`` for account ``username``; returns the key (shown once, stored hashed)."""
    from gridserver.auth.users import require_user
    from gridserver.errors import Conflict

    user = require_user(conn, username)
    key = "o311_" + secrets.token_urlsafe(24)
    exists = conn.execute(text("SELECT 1 FROM open311_api_keys WHERE name = :n"), {"n": name}).first()
    if exists:
        raise Conflict(f"an API key named {name!r} exists already")
    conn.execute(text("INSERT INTO open311_api_keys (name, key_hash, user_id) VALUES (:n, :h, :u)"),
                 {"n": name, "h": hash_key(key), "u": user.id})
    return key


def _key_user(session, key: str | None):
    from gridserver.auth.users import User

    if not key:
        raise Open311Error(403, "api_key is required to submit a request (ask the operators for one)")
    row = session.execute(text(
        """SELECT u.id, u.username, u.full_name, u.role, u.scope_code, u.department, u.active, u.created_at
           FROM open311_api_keys k JOIN users u ON u.id = k.user_id
           WHERE k.key_hash = :h AND k.active"""), {"h": hash_key(key)}).first()
    if row is None or not row.active:
        raise Open311Error(403, "invalid api_key")
    return User(**row._mapping)


_POST_ANSWER = ("service_request_id", "service_notice", "account_id")


@router.post("/requests.{fmt}", summary="Create a service request (form fields per GeoReport v2)",
             openapi_extra=max_body(POST_MAX_BODY))
@_wrap
async def create_request(fmt: str, request: Request, session: Session = Depends(get_session, scope="function"),
                         idem: Idempotency = Depends(idempotency)):
    """The spec's form fields; the body ≤ 256 KB (413 ``body_too_large``). With an
    ``Idempotency-Key`` header a retry (same key, same form) returns the original answer and creates
    nothing (``gridserver.db.idempotency``; the key belongs to the api_key's account)."""
    from gridserver.incidents.service import create_incident

    fmt = _fmt(fmt)
    form = dict(await request.form())
    fields = {k: str(v) for k, v in {**request.query_params, **form}.items() if str(v) != ""}
    _jurisdiction(session, fields)
    user = _key_user(session, fields.get("api_key"))
    if (replay := idem.replay(session, user)) is not None:
        stored = [{k: d.get(k) for k in _POST_ANSWER} for d in json.loads(replay.body)]  # jsonb sorts keys
        again = _render(fmt, "service_requests", stored, replay.status_code)
        again.headers["Idempotent-Replayed"] = "true"
        return again
    code = fields.get("service_code")
    if not code:
        raise Open311Error(400, "service_code is required")
    node = taxonomy.active(session).nodes.get(code)
    if node is None:
        raise Open311Error(404, f"unknown service_code {code!r}: see services.{fmt}")
    desc = fields.get("description", "")
    if len(desc) > 4000:
        raise Open311Error(400, f"description is {len(desc)} characters; at most 4000")
    has_point = "lat" in fields or "long" in fields
    if has_point and not ("lat" in fields and "long" in fields):
        raise Open311Error(400, "lat and long must be given together")
    address = fields.get("address_string")
    if not has_point and not address and not fields.get("address_id"):
        raise Open311Error(400, "a location is required: lat and long, address_string or address_id")
    data = {"category": code, "description": desc, "address": address[:500] if address else None, "crs": "wgs84"}
    if has_point:
        try:
            data["lon"], data["lat"] = float(fields["long"]), float(fields["lat"])
        except ValueError:
            raise Open311Error(400, f"lat/long must be numbers; got lat={fields['lat']!r} long={fields['long']!r}") from None
    elif not address:
        row = session.execute(text("SELECT full_text FROM std_addresses WHERE code = :c"),
                              {"c": fields["address_id"]}).first() if fields.get("address_id") else None
        if row is None:
            raise Open311Error(404, f"unknown address_id {fields.get('address_id')!r}")
        data["address"] = row[0]
    contact = {k: fields[k] for k in ("email", "first_name", "last_name", "phone", "device_id", "account_id",
                                      "media_url") if k in fields}
    data["contact"] = contact or None
    from gridserver.errors import OutsideArea

    try:
        out = create_incident(session, data, user, source="open311", channel="open311",
                              outside="manual" if not has_point else "error", max_description=4000)
    except OutsideArea as exc:
        raise Open311Error(400, f"the location is outside the service area: {exc.detail}") from None
    notice = f"查询码 tracking code {out['tracking_code']}；责任部门 {out['department_name'] or '人工派遣'}"
    answer = [{"service_request_id": str(out["id"]), "service_notice": notice, "account_id": None}]
    idem.save(session, answer, 200)
    session.commit()
    return _render(fmt, "service_requests", answer)
