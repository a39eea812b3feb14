"""HTTP routes for grid division drafts and grid versions (the rules live in ``areas/versions.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from gridserver.areas import versions
from gridserver.auth.deps import describe_scope, require_roles, user_in_scope
from gridserver.db.engine import get_session
from gridserver.errors import Forbidden, InvalidInput

router = APIRouter(prefix="/api/v1/grids", tags=["网格划分 grid division"])

WRITERS = ("admin", "district_operator", "street_operator")
READERS = WRITERS + ("analyst", "community_operator")


class DivideRequest(BaseModel):
    area: str = Field(..., description="区/街道/社区编码 district, street or community code")
    target_households: int = Field(300, description="每格目标户数 target households per grid")
    min: int = Field(200, description="每格最少户数")
    max: int = Field(500, description="每格最多户数")
    respect: list[str] = Field(["roads"], description="边界沿 roads, rivers")
    seed: int = 0
    method: str = Field("grow", description="grow (default), maxp, skater, kmeans")
    buildings: dict | None = Field(None, description="可选 GeoJSON FeatureCollection of buildings (properties "
                                   "building_code, households); default: the block-data tables")


class ActivateRequest(BaseModel):
    effective_from: str | None = Field(None, description="生效日期 2025-07-01 or ISO datetime; default now")


def _check_scope(user, area: str) -> None:
    if not user_in_scope(user, area):
        raise Forbidden(f"area {area} is outside your scope {describe_scope(user)}")


def buildings_from_geojson(fc: dict):
    """Buildings from a GeoJSON FeatureCollection (WGS84); 422 naming the feature when one is bad."""
    import shapely

    from gridserver.areas.division import Buildings

    if not isinstance(fc, dict) or fc.get("type") != "FeatureCollection" or not isinstance(fc.get("features"), list):
        raise InvalidInput("buildings must be a GeoJSON FeatureCollection")
    codes, geoms, hh = [], [], []
    for i, f in enumerate(fc["features"]):
        props = (f or {}).get("properties") or {}
        code = props.get("building_code") or props.get("code") or (f or {}).get("id")
        if not code:
            raise InvalidInput(f"buildings feature {i}: properties.building_code is missing")
        try:
            geom = shapely.geometry.shape(f["geometry"])
        except Exception as exc:  # noqa: BLE001 - any parse failure is the same user error
            raise InvalidInput(f"buildings feature {i} ({code}): bad geometry: {exc}") from None
        n = props.get("households", 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidInput(f"buildings feature {i} ({code}): households must be a whole number >= 0, got {n!r}")
        codes.append(str(code))
        geoms.append(geom)
        hh.append(n)
    if len(set(codes)) != len(codes):
        raise InvalidInput("buildings: duplicate building_code values")
    return Buildings(codes, geoms, hh)


@router.post("/drafts", status_code=201, summary="自动划分网格 propose grids for an area (draft)")
def create_draft(body: DivideRequest, user=Depends(require_roles(*WRITERS)),
                 session: Session = Depends(get_session, scope="function")):
    """Divide every community of ``area`` into grids and store the proposal as a draft with its quality
    report (and the same figures for the grids in force now)."""
    _check_scope(user, body.area)
    b = buildings_from_geojson(body.buildings) if body.buildings is not None else None
    prop = versions.propose(session, body.area, target=body.target_households, lo=body.min, hi=body.max,
                            seed=body.seed, method=body.method, respect=body.respect, buildings=b)
    draft_id = versions.save_draft(session, prop, created_by=user.username)
    return {"id": draft_id, "status": "draft", "report": prop.report(), "notes": prop.notes}


@router.get("/drafts", summary="划分草案列表 list drafts")
def list_drafts(area: str | None = None, user=Depends(require_roles(*READERS)),
                session: Session = Depends(get_session, scope="function")):
    items = versions.list_drafts(session, area)
    return {"items": [d for d in items if user_in_scope(user, d["area_code"])]}


@router.get("/drafts/{draft_id}", summary="划分草案 a draft as GeoJSON with its report")
def get_draft(draft_id: int, side: str = Query("draft", description="draft, or current: the grids in force now"),
              geometry: bool = True, user=Depends(require_roles(*READERS)),
              session: Session = Depends(get_session, scope="function")):
    """The draft's grids (or, ``side=current``, the grids in force now in the same communities) as a
    FeatureCollection, with the quality report of both for side-by-side review."""
    out = versions.get_draft(session, draft_id, geometry=geometry, side=side)
    _check_scope(user, out["draft"]["area_code"])
    return out


@router.post("/drafts/{draft_id}/activate", summary="启用草案 activate a draft as the new grid version")
def activate(draft_id: int, body: ActivateRequest | None = None, user=Depends(require_roles("admin", "district_operator")),
             session: Session = Depends(get_session, scope="function")):
    """One transaction: old grids closed, new grids opened, block data and open incidents re-linked;
    returns the change report."""
    row = versions.get_draft(session, draft_id, geometry=False)
    _check_scope(user, row["draft"]["area_code"])
    return versions.activate_draft(session, draft_id, activated_by=user.username,
                                   effective=(body.effective_from if body else None))


@router.post("/drafts/{draft_id}/discard", summary="放弃草案 discard a draft")
def discard(draft_id: int, user=Depends(require_roles(*WRITERS)), session: Session = Depends(get_session, scope="function")):
    row = versions.get_draft(session, draft_id, geometry=False)
    _check_scope(user, row["draft"]["area_code"])
    return versions.discard_draft(session, draft_id)


@router.get("/history", summary="网格版本历史 grid versions of an area")
def history(area: str = Query(..., description="区划编码 area code"), session: Session = Depends(get_session, scope="function")):
    return {"area": area, "versions": versions.history(session, area)}
