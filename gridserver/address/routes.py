"""HTTP API of the standard address base: geocode, reverse geocode, review queue, address by code."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from gridserver.address import access, base, geocode as geo, review
from gridserver.auth.deps import is_citywide, optional_user, require_roles, user_in_scope
from gridserver.db.engine import get_session
from gridserver.errors import Forbidden

router = APIRouter(prefix="/api/v1/address", tags=["地址 address"])

REVIEWERS = ("admin", "district_operator", "street_operator", "community_operator")
reviewer = require_roles(*REVIEWERS)


class ReviewDecision(BaseModel):
    reason: str | None = Field(None, max_length=500, description="why (kept in the address history)")


class MergeDecision(ReviewDecision):
    target_code: str | None = Field(None, description="code of the address to merge into; default: the candidate")


class RejectDecision(BaseModel):
    reason: str = Field(..., min_length=1, max_length=500, description="why the record is not an address")


@router.get("/geocode", summary="地址 → 标准地址与坐标 geocode from the standard address base")
def geocode_endpoint(q: str = Query(..., min_length=1, max_length=500, description="address text"),
                     session: Session = Depends(get_session, scope="function"), user=Depends(optional_user)):
    """Best standard address for the text: code, point (WGS84), grid and a confidence in [0, 1].

    Without a staff token whose scope covers the address, the answer stops at the road
    (``precision: road``, ``restricted`` says why)."""
    conn = session.connection()
    return access.geocode_for(conn, user, geo.geocode(conn, q))


@router.get("/reverse", summary="坐标 → 最近的标准地址 reverse geocode")
def reverse_endpoint(lon: float = Query(..., description="x / longitude in `crs`"),
                     lat: float = Query(..., description="y / latitude in `crs`"),
                     crs: str = Query("wgs84", description="wgs84, cgcs2000, gcj02, bd09 or an EPSG code"),
                     limit: int = Query(5, ge=1, le=100),
                     level: str = Query("house", description="road/house/building/unit/floor/room or any"),
                     max_distance_m: float = Query(500.0, gt=0, le=5000),
                     session: Session = Depends(get_session, scope="function"), user=Depends(optional_user)):
    """Nearest live standard addresses, nearest first, with distances in metres (EPSG:4547).

    ``level=road`` is public; other levels need a staff token and list only addresses in its scope."""
    return access.reverse_for(session.connection(), user, lon, lat, crs, limit=limit, level=level,
                              max_distance_m=max_distance_m)


def _scope_user(user):
    """The scope the queue is filtered to; None = everything (city-wide reviewers only)."""
    return None if is_citywide(user) else (user.scope_code or "-")  # "-" matches no area code


@router.get("/review", summary="待审核队列 review queue")
def review_queue(limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0),
                 source: str | None = Query(None, description="only records from this department"),
                 user=Depends(reviewer), session: Session = Depends(get_session, scope="function")):
    """Records the matcher was unsure of (review) or that created a pending address (new), oldest first.
    Operators see the records of their own area."""
    return review.list_queue(session.connection(), limit=limit, offset=offset, source=source,
                             scope_code=_scope_user(user))


def _check_scope(conn, user, record_id: int) -> None:
    """403 unless the record is in the reviewer's scope — by the same area the queue filters on."""
    if is_citywide(user):
        return
    area = review.record_area_code(conn, record_id)
    if area is None:
        # Outside every known area: only a citywide reviewer may decide.
        raise Forbidden(f"record {record_id} lies in no known area; only a citywide reviewer may decide it")
    if not user_in_scope(user, area):
        raise Forbidden(f"record {record_id} is in area {area}, outside your scope {user.scope_code}")


def _check_target_scope(conn, user, record_id: int, target_code: str | None) -> None:
    """403 unless the address a record is merged into is in the reviewer's scope too."""
    if is_citywide(user):
        return
    target = review.merge_target(conn, record_id, target_code)
    if target is None:
        return  # review.merge says what is missing
    area = access.area_code(target)
    if area is None or not user_in_scope(user, area):
        raise Forbidden(f"merge target {target['code']} is in area {area or '(none)'}, outside your scope "
                        f"{user.scope_code}")


def _decide(session: Session, user, record_id: int, action, *args, target_code: str | None = None, **kwargs):
    """Run one review action for ``user`` on a record in its scope, committed before the answer."""
    conn = session.connection()
    _check_scope(conn, user, record_id)
    if action is review.merge:
        _check_target_scope(conn, user, record_id, target_code)
        args = (target_code, *args)
    out = action(conn, record_id, *args, actor=user.username, **kwargs)
    session.commit()  # visible to the caller's next request as soon as it has the answer
    return out


@router.post("/review/{record_id}/approve", summary="审核通过 approve")
def approve_endpoint(record_id: int, body: ReviewDecision = Body(default_factory=ReviewDecision),
                     user=Depends(reviewer), session: Session = Depends(get_session, scope="function")):
    """It is a real address: the pending address becomes active (or one is created)."""
    return _decide(session, user, record_id, review.approve, reason=body.reason)


@router.post("/review/{record_id}/merge", summary="合并 merge into an existing address")
def merge_endpoint(record_id: int, body: MergeDecision = Body(default_factory=MergeDecision),
                   user=Depends(reviewer), session: Session = Depends(get_session, scope="function")):
    """It is an existing address: matched to it, its text kept as an alias."""
    return _decide(session, user, record_id, review.merge, target_code=body.target_code, reason=body.reason)


@router.post("/review/{record_id}/reject", summary="驳回 reject")
def reject_endpoint(record_id: int, body: RejectDecision, user=Depends(reviewer),
                    session: Session = Depends(get_session, scope="function")):
    """Not an address: the record is rejected, a pending address made for it retired."""
    return _decide(session, user, record_id, review.reject, reason=body.reason)


@router.get("/{code}", summary="标准地址详情 one standard address")
def address_endpoint(code: str, session: Session = Depends(get_session, scope="function"),
                     user=Depends(optional_user)):
    """A standard address by code with its aliases and full change history (retired ones too).

    Road codes are public (without history); below road level, and the history with its actor
    names, need a staff token whose scope covers the address (401 without a token, 403 outside)."""
    return access.address_for(user, base.get_address(session.connection(), code))
