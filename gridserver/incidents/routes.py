"""HTTP routes: report an incident, read one, list with filters.

Every incident route needs a bearer token (reports contain personal descriptions and reporter
names); only the category list is public. Rules for who may write/read: see ``service``.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from gridserver.auth.deps import NO_TOKEN, check_token_user, current_user, oauth2_scheme
from gridserver.auth.security import decode_access_claims
from gridserver.auth.users import User, get_user
from gridserver.db.engine import get_session, pool, session_scope
from gridserver.db.idempotency import Idempotency, idempotency, shape
from gridserver.errors import Unauthorized
from gridserver.geo.crs import KNOWN
from gridserver.incidents import intake, service
from gridserver.incidents import taxonomy
from gridserver.incidents.schemas import IncidentIn, IncidentOut, IncidentPage

router = APIRouter(prefix="/api/v1/incidents", tags=["事件 incidents"])

CRS_HELP = f"坐标系 CRS of bbox: {', '.join(KNOWN)} or EPSG:nnnn"


@router.get("/categories", summary="事件分类 the incident categories and items (public)")
def categories(session: Session = Depends(get_session, scope="function")):
    """The active taxonomy: categories with label, default department, deadline, workflow and items."""
    return taxonomy.active(session).tree()


def token_claims(token: str | None = Depends(oauth2_scheme)) -> tuple[str, int]:
    """The verified token's (username, version), 401 without one; the account itself is checked by
    intake inside the statement it runs anyway (``intake.py``), so revocation is still immediate."""
    if not token:
        raise Unauthorized(NO_TOKEN)
    return decode_access_claims(token)


@router.post("", response_model=IncidentOut, status_code=201, summary="上报事件 report an incident")
def create(body: IncidentIn, claims: tuple[str, int] = Depends(token_claims),
           idem: Idempotency = Depends(idempotency)):
    """Locate the point to its grid, route it and store the report (two database round trips).

    422 for a bad category/coordinates/CRS; a point in no grid but inside the territory (a gap, a
    river) is stored for manual dispatch (``manual_reason``); 404 ``outside_area`` when it is outside
    the territory (nothing stored); 403 when the caller's role or scope does not allow reporting there.
    With an ``Idempotency-Key`` header a retry returns the original answer (``gridserver.db.idempotency``).
    """
    if body.lon is not None:
        with pool().connection() as conn:
            out = intake.create(conn, body, claims=claims, idem=idem)
    else:  # only an address: geocoding reads the address base through a session
        with session_scope() as session:
            user = check_token_user(get_user(session, claims[0]), *claims)
            if (replay := idem.replay(session, user)) is not None:
                return replay
            out = service.create_incident(session, body, user)
            location = {"Location": f"{service.LIST_PATH}/{out['id']}"}
            idem.save(session, out, 201, location)
        # committed before the response: a client may GET the Location right away
    if isinstance(out, JSONResponse):
        return out
    return JSONResponse(shape(IncidentOut, out), status_code=201,
                        headers={"Location": f"{service.LIST_PATH}/{out['id']}"})


@router.get("", response_model=IncidentPage, summary="事件列表 list incidents (filters, pages)")
def list_(
    bbox: str | None = Query(None, description="范围 minlon,minlat,maxlon,maxlat (in crs)",
                             examples=["113.25,23.12,113.29,23.15"]),
    crs: str = Query("wgs84", description=CRS_HELP),
    grid: str | None = Query(None, description="网格或上级区划编码 a grid code, or a community/street/district code"),
    status: str | None = Query(None, description="状态 status, e.g. reported"),
    category: str | None = Query(None, description="事件分类 category code"),
    since: datetime | None = Query(None, description="上报时间起 created at or after (ISO 8601; naive = UTC+8)"),
    until: datetime | None = Query(None, description="上报时间止 created before (ISO 8601; naive = UTC+8)"),
    reporter: str | None = Query(None, description="上报人 reporter username"),
    overdue: bool | None = Query(None, description="超时 only (true) or no (false) overdue open incidents"),
    department: str | None = Query(None, description="责任部门 department code"),
    manual: bool | None = Query(None, description="人工派遣队列 waiting for manual dispatch"),
    limit: int = Query(service.DEFAULT_LIMIT, ge=1, le=service.MAX_LIMIT, description="每页条数 page size"),
    offset: int = Query(0, ge=0, description="偏移 skip this many (random access)"),
    cursor: str | None = Query(None, description="游标 from the 'next' URL of the previous page"),
    session: Session = Depends(get_session, scope="function"),
    user: User = Depends(current_user),
):
    """Newest first. ``total`` counts all matches; ``next`` is the URL of the following page (cursor-based)."""
    filters = service.IncidentFilters(bbox=bbox, crs=crs, grid=grid, status=status, category=category,
                                      since=since, until=until, reporter=reporter, overdue=overdue,
                                      department=department, manual=manual, limit=limit,
                                      offset=offset, cursor=cursor)
    return service.list_incidents(session, filters, user)


@router.get("/{incident_id}", response_model=IncidentOut, summary="事件详情 one incident")
def get(incident_id: int, session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user)):
    return service.get_incident(session, incident_id, user)
