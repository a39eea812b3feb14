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
  request, token, jurisdiction or path; 403 missing/wrong api_key; 503 + ``Retry-After`` while the
  database is unavailable; 400 the rest.

What independent clients do and get (audit against ../shared/docs/specs.md §1):

* Every GET also answers HEAD, and also without the ``.json``/``.xml`` suffix: XML (the mandatory
  format) unless the ``Accept`` header asks for JSON. Unknown paths get the error list too (404;
  405 with ``Allow`` for a known path and another method).
* Form bodies are decoded by their declared ``charset`` (default UTF-8), raw or percent-encoded
  (Starlette's parser would read raw UTF-8 bytes as Latin-1); undecodable → 400. Values are stripped.
* ``service_code`` must be listed in ``services`` (a taxonomy item; category codes → 404); service
  descriptions spell the deadline out (时限 1 个工作日, not the taxonomy's ``1wd``).
* JSON is serialised straight from plain values (no ``jsonable_encoder`` walk: ~7× less CPU per answer).
* Datetime filters: W3C datetimes with a timezone; a ``+`` left unencoded in the query string (read
  as a space) is taken back; a date alone is that whole day in +08:00.
* XML output drops the characters XML 1.0 cannot carry (control characters; JSON keeps them) and
  keeps ``\r`` as ``&#13;``. A report kept for manual dispatch because its address could not be
  placed has ``lat``/``long`` null (its stand-in point is not published).
* Endpoint bodies run in the thread pool, so a request waiting on the database blocks no other.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import inspect
import json
import re
import secrets
from datetime import date, datetime, time, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from gridserver.db import idempotency as idem_mod
from gridserver.db.engine import get_session
from gridserver.db.idempotency import Idempotency, idempotency
from gridserver.errors import GridserverError, _database_error
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
FORMATS = ("json", "xml")
_ITEM_NAMES = {"services": "service", "endpoints": "endpoint", "formats": "format", "attributes": "attribute",
               "values": "value", "service_requests": "request", "errors": "error"}
#: Characters XML 1.0 cannot carry, even escaped (C0 controls but tab/LF/CR, surrogates, U+FFFE/FFFF).
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: An incident id (bigint): longer digit strings name no request.
_ID = re.compile(r"[0-9]{1,18}")
#: '…T00:00:00 08:00': a '+' of the offset left unencoded in a query string arrives as a space.
_SPACED_OFFSET = re.compile(r"(.*T.*\d) (\d{2}(?::?\d{2})?)")


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
    return escape(_XML_ILLEGAL.sub("", str(v)), {"\r": "&#13;"})  # a bare CR would be read back as LF


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
    # plain str/float/bool/None throughout (datetimes are _w3c strings): no jsonable_encoder walk (~0.1 ms a row)
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(body.encode("utf-8"), status_code=status, media_type="application/json; charset=utf-8")


def _error(fmt: str, exc: Open311Error) -> Response:
    out = _render(fmt, "errors", [{"code": exc.status, "description": exc.description}], exc.status)
    if exc.status == 503:
        from gridserver.settings import get_settings

        out.headers["Retry-After"] = str(get_settings().retry_after)
    return out


def _w3c(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(CST).replace(microsecond=0).isoformat()


def _negotiated(request: Request | None) -> str:
    """No suffix: XML (the spec's mandatory format) unless the Accept header names JSON first."""
    accept = request.headers.get("accept", "").lower() if request is not None else ""
    j, x = accept.find("json"), accept.find("xml")
    return "json" if j >= 0 and (x < 0 or j < x) else "xml"


def _fmt(request: Request) -> str:
    """The answer's format: the path's ``.json``/``.xml`` suffix, else negotiated."""
    fmt = request.path_params.get("fmt")
    if fmt is None:
        return _negotiated(request)
    if fmt not in FORMATS:
        raise Open311Error(404, f"unknown format {fmt!r}: use .json or .xml")
    return fmt


def _error_fmt(request: Request | None) -> str:
    fmt = request.path_params.get("fmt") if request is not None else None
    return fmt if fmt in FORMATS else _negotiated(request)


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
    try:
        session.rollback()
    except Exception:  # noqa: BLE001 — the database may be the reason we are here
        pass


def _as_open311(exc: GridserverError) -> Open311Error:
    if exc.status == 503:
        return Open311Error(503, exc.detail)
    status = 404 if exc.status == 404 and exc.code == "not_found" else (403 if exc.status in (401, 403) else 400)
    return Open311Error(status, exc.detail)


def _wrap(fn):
    """Run an endpoint (a plain function in the thread pool, so a database wait blocks no other
    request), turning Open311Error, domain errors and database faults into the spec's error list."""

    @functools.wraps(fn)
    async def inner(*args, **kwargs):
        try:
            if inspect.iscoroutinefunction(fn):
                return await fn(*args, **kwargs)
            return await run_in_threadpool(fn, *args, **kwargs)
        except BodyTooLarge:
            raise  # 413 body_too_large, like every other route
        except Open311Error as exc:
            err = exc
        except GridserverError as exc:
            err = _as_open311(exc)
        except Exception as exc:
            domain = _database_error(exc)  # down / statement timeout → 503, bad data → 400
            if domain is None:
                raise
            err = _as_open311(domain)
        if kwargs.get("session") is not None:
            await run_in_threadpool(_rollback, kwargs["session"])
        return _error(_error_fmt(kwargs.get("request")), err)

    return inner


def _get(path: str, summary: str, **kw):
    """A GET endpoint at ``path.{fmt}`` (documented), also at ``path`` without a suffix, and for HEAD
    at both (undocumented)."""

    def deco(fn):
        wrapped = _wrap(fn)
        router.add_api_route(f"{path}.{{fmt}}", wrapped, methods=["GET"], summary=summary, **kw)
        router.add_api_route(f"{path}.{{fmt}}", wrapped, methods=["HEAD"], include_in_schema=False)
        router.add_api_route(path, wrapped, methods=["GET", "HEAD"], include_in_schema=False)
        return wrapped

    return deco


# --- discovery and services ----------------------------------------------------------------------
@_get("/discovery", "服务发现 Service discovery")
def discovery(request: Request, fmt: str | None = None):
    fmt = _fmt(request)
    base = str(request.base_url).rstrip("/") + "/open311/v2/"
    return _render(fmt, "discovery", {
        "changeset": CHANGESET, "contact": "越秀区城市运行管理中心 gridserver operators",
        "key_service": "api keys: gridserver users apikey NAME (ask the operators)",
        "endpoints": [{"specification": SPEC, "url": base, "changeset": CHANGESET, "type": "production",
                       "formats": ["text/xml", "application/json"]}]})


def _deadline_words(deadline: str) -> str:
    """'3wd' → '3 个工作日', '4h' → '4 小时': the taxonomy's notation is not for the public."""
    amount, unit = taxonomy.parse_deadline(deadline, "deadline")
    return f"{amount:g} {'小时' if unit == 'h' else '个工作日'}"


def _service(tax, item) -> dict:
    return {"service_code": item.code, "service_name": item.name,
            "description": f"{tax.nodes[item.parent].name} / {item.name}（{tax.department_name(item.departments[item.start_level])}，"
                           f"时限 {_deadline_words(item.deadline)}）",
            "metadata": False, "type": "realtime", "keywords": ",".join(item.keywords.split()),
            "group": tax.nodes[item.parent].name}


@_get("/services", "服务列表 Service list (taxonomy items)")
def services(request: Request, fmt: str | None = None, session: Session = Depends(get_session, scope="function")):
    fmt = _fmt(request)
    _jurisdiction(session, request.query_params)
    tax = taxonomy.active(session)
    session.commit()
    return _render(fmt, "services", [_service(tax, i) for i in tax.items()])


def _item(tax, code: str | None, fmt: str):
    """The service ``code`` names: a taxonomy item (what services.{fmt} lists), else 404."""
    node = tax.nodes.get(code or "")
    if node is None or not node.is_item:
        raise Open311Error(404, f"unknown service_code {code!r}: see services.{fmt}")
    return node


@_get("/services/{code}", "服务定义 Service definition")
def service_definition(code: str, request: Request, fmt: str | None = None,
                       session: Session = Depends(get_session, scope="function")):
    fmt = _fmt(request)
    _jurisdiction(session, request.query_params)
    _item(taxonomy.active(session), code, fmt)
    return _render(fmt, "service_definition", {"service_code": code, "attributes": []})


_get("/service/{code}", "Service definition (open311 1.1 client path)", include_in_schema=False)(
    service_definition.__wrapped__)  # the ``open311`` 1.1 client asks here


# --- requests -------------------------------------------------------------------------------------
# A report kept for manual dispatch because its address could not be placed sits at a stand-in point
# (no input coordinates, not geocoded): its location is unknown, so lat/long are null.
_SELECT = """
    SELECT i.id, i.status, i.category, i.item_code, i.description, i.department_name, i.created_at, i.updated_at,
           i.closed_at, i.resolved_at, i.deadline_at, i.address_text, i.address_code,
           CASE WHEN i.input_x IS NULL AND NOT i.geocoded THEN NULL ELSE ST_X(i.geom) END AS lon,
           CASE WHEN i.input_x IS NULL AND NOT i.geocoded THEN NULL ELSE ST_Y(i.geom) END AS lat,
           i.contact->>'media_url' AS media_url, i.tracking_code, i.merged_into
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


def _parse_w3c(value: str, name: str, *, end: bool = False) -> datetime:
    """A W3C datetime with its timezone; a date alone is that whole day in +08:00 (from its first
    instant, or to its last for ``end``)."""
    v = value.strip()
    if m := _SPACED_OFFSET.fullmatch(v):
        v = f"{m.group(1)}+{m.group(2)}"
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
        try:
            first = datetime.combine(date.fromisoformat(v), time(), CST)
        except ValueError:
            raise Open311Error(400, f"{name} is not a calendar date: {value!r}") from None
        return first + timedelta(days=1, microseconds=-1) if end else first
    try:
        ts = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", v))
    except ValueError:
        raise Open311Error(400, f"{name} must be a W3C datetime like 2026-11-01T00:00:00+08:00; got {value!r}") from None
    if ts.tzinfo is None:
        raise Open311Error(400, f"{name} needs a timezone (e.g. +08:00 or Z); got {value!r}")
    return ts


def _comma_list(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


#: Filters that "can be declared multiple times, comma delimited": repeated parameters are joined.
_LIST_FILTERS = ("service_request_id", "service_code", "status")


def _query(request: Request) -> dict[str, str]:
    values: dict[str, list[str]] = {}
    for k, v in request.query_params.multi_items():
        if v.strip():
            values.setdefault(k, []).append(v.strip())
    return {k: ",".join(vs) if k in _LIST_FILTERS else vs[-1] for k, vs in values.items()}


@_get("/requests", "诉求列表 Service requests (filters per GeoReport v2)")
def list_requests(request: Request, fmt: str | None = None, session: Session = Depends(get_session, scope="function")):
    fmt = _fmt(request)
    q = _query(request)
    _jurisdiction(session, q)
    tax = taxonomy.active(session)
    conds, params = [], {}
    if _comma_list(q.get("service_request_id", "")):
        ids = []
        for part in _comma_list(q["service_request_id"]):
            if not (part.isascii() and part.isdigit()):
                raise Open311Error(400, f"service_request_id must be a comma list of ids; got {part!r}")
            if _ID.fullmatch(part):  # longer: no such request
                ids.append(int(part))
        conds.append("i.id = ANY(:ids)")
        params["ids"] = ids
    else:
        if codes := _comma_list(q.get("service_code", "")):
            unknown = [c for c in codes if c not in tax.nodes]
            if unknown:
                raise Open311Error(404, f"unknown service_code {', '.join(unknown)}")
            conds.append("(i.item_code = ANY(:codes) OR (i.item_code IS NULL AND i.category = ANY(:codes)))")
            params["codes"] = codes
        if wanted := {s.lower() for s in _comma_list(q.get("status", ""))}:
            bad = wanted - {"open", "closed"}
            if bad:
                raise Open311Error(400, f"status must be open and/or closed; got {', '.join(sorted(bad))}")
            if wanted == {"open"}:
                conds.append("i.status <> ALL(:closed)")
            elif wanted == {"closed"}:
                conds.append("i.status = ANY(:closed)")
            params["closed"] = list(CLOSED)
        end = _parse_w3c(q["end_date"], "end_date", end=True) if "end_date" in q else None
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


@_get("/requests/{request_id}", "单条诉求 One service request")
def get_request(request_id: str, request: Request, fmt: str | None = None,
                session: Session = Depends(get_session, scope="function")):
    fmt = _fmt(request)
    _jurisdiction(session, request.query_params)
    if not _ID.fullmatch(request_id):
        raise Open311Error(404, f"no service request {request_id!r}")
    row = session.execute(text(_SELECT + " WHERE i.id = :i"), {"i": int(request_id)}).first()
    if row is None:
        raise Open311Error(404, f"no service request {request_id!r}")
    return _render(fmt, "service_requests", [_request_out(taxonomy.active(session), row)])


@_get("/tokens/{token}", "凭证查诉求 Service request id for a token (= tracking code)")
def get_token(token: str, request: Request, fmt: str | None = None,
              session: Session = Depends(get_session, scope="function")):
    fmt = _fmt(request)
    _jurisdiction(session, request.query_params)
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


# --- POST requests --------------------------------------------------------------------------------
async def _raw_body(request: Request) -> bytes:
    """The POST body as sent, read before the Idempotency-Key helper (which would parse it with
    Starlette's form parser and keep no bytes), under the route's limit and, with a key, the helper's."""
    if request.headers.get(idem_mod.HEADER) is not None:
        idem_mod.limit_key_body(request)
    return await request.body()


def _charset(params: str) -> str:
    for part in params.split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset":
            value = value.strip().strip('"')
            try:
                return codecs.lookup(value).name
            except LookupError:
                raise Open311Error(400, f"unknown charset {value!r} in the Content-Type header") from None
    return "utf-8"


async def _fields(request: Request, body: bytes) -> dict[str, str]:
    """The POST's parameters: the query string (where the ``open311`` 1.1 client puts ``api_key``),
    then the form. Values stripped; empty = absent (spec)."""
    mime, _, ct_params = request.headers.get("content-type", "").partition(";")
    mime = mime.strip().lower()
    pairs = list(request.query_params.multi_items())
    if mime == "multipart/form-data":
        pairs += [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
    elif body.strip():
        if mime not in ("application/x-www-form-urlencoded", ""):
            raise Open311Error(400, "the POST body must be a form (application/x-www-form-urlencoded or "
                                    f"multipart/form-data); got {mime}")
        charset = _charset(ct_params)
        try:  # raw bytes and %-escapes both in the declared charset (UTF-8 when none is declared)
            pairs += parse_qsl(body.decode(charset), keep_blank_values=True, encoding=charset, errors="strict")
        except UnicodeDecodeError:
            raise Open311Error(400, f"the form is not valid {charset.upper()} text: send UTF-8 or declare the "
                                    "charset (Content-Type: application/x-www-form-urlencoded; charset=GBK)") from None
    out = {}
    for k, v in pairs:
        if str(v).strip():
            out[k] = str(v).strip()
    return out


_POST_ANSWER = ("service_request_id", "service_notice", "account_id")


@router.post("/requests.{fmt}", summary="提交诉求 Create a service request (form fields per GeoReport v2)",
             openapi_extra=max_body(POST_MAX_BODY))
@router.post("/requests", include_in_schema=False, openapi_extra=max_body(POST_MAX_BODY))
@_wrap
async def create_request(request: Request, fmt: str | None = None, body: bytes = Depends(_raw_body),
                         session: Session = Depends(get_session, scope="function"),
                         idem: Idempotency = Depends(idempotency)):
    """The spec's form fields; the body ≤ 256 KB (413 ``body_too_large``). With an
    ``Idempotency-Key`` header a retry (same key, same form) returns the original answer and creates
    nothing (``gridserver.db.idempotency``; the key belongs to the api_key's account)."""
    fmt = _fmt(request)
    fields = await _fields(request, body)
    return await run_in_threadpool(_create, fmt, fields, session, idem, str(request.base_url).rstrip("/"))


def _create(fmt: str, fields: dict, session, idem: Idempotency, base_url: str) -> Response:
    from gridserver.errors import OutsideArea
    from gridserver.incidents.service import create_incident

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
    _item(taxonomy.active(session), code, fmt)
    desc = fields.get("description", "")
    if len(desc) > 4000:
        raise Open311Error(400, f"description is {len(desc)} characters; at most 4000")
    if "media_url" in fields:
        url = urlsplit(fields["media_url"])
        if url.scheme.lower() not in ("http", "https") or not url.netloc:
            raise Open311Error(400, f"media_url must be an http(s) URL; got {fields['media_url'][:200]!r}")
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
    try:
        out = create_incident(session, data, user, source="open311", channel="open311",
                              outside="manual" if not has_point else "error", max_description=4000)
    except OutsideArea as exc:
        raise Open311Error(400, f"the location is outside the service area: {exc.detail}") from None
    notice = (f"查询码 tracking code {out['tracking_code']}；责任部门 {out['department_name'] or '人工派遣'}；"
              f"进度查询 {base_url}/track?code={out['tracking_code']}")
    answer = [{"service_request_id": str(out["id"]), "service_notice": notice, "account_id": None}]
    idem.save(session, answer, 200)
    session.commit()
    return _render(fmt, "service_requests", answer)


# --- anything else under the base: the spec's error list (404, or 405 for a known path) ---------------
@router.api_route("/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def unknown_path(rest: str, request: Request):
    suffix = rest.rsplit(".", 1)[-1] if "." in rest.rsplit("/", 1)[-1] else None
    fmt = suffix if suffix in FORMATS else _negotiated(request)
    allowed = sorted({m for r in router.routes if getattr(r, "endpoint", None) is not unknown_path
                      and r.path_regex.fullmatch(request.url.path) for m in r.methods})
    if allowed:
        out = _error(fmt, Open311Error(405, f"{request.method} is not allowed on {rest!r}: use {', '.join(allowed)}"))
        out.headers["Allow"] = ", ".join(allowed)
        return out
    return _error(fmt, Open311Error(404, f"no Open311 endpoint {rest!r} here: see discovery.{fmt} "
                                         "(discovery, services, services/{code}, requests, requests/{id}, tokens/{token})"))
