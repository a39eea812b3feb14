"""Block-data API: five-code links, area profiles and listings, tags, datasets, access log.

Routes only route: access decisions come from :mod:`gridserver.blockdata.privacy`, data from
:mod:`gridserver.blockdata.service`. Every response of unmasked personal data is logged first.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridserver.auth.deps import current_user, is_citywide, require_roles, user_in_scope
from gridserver.auth.users import User
from gridserver.blockdata import privacy, service
from gridserver.blockdata import review as bd_review
from gridserver.blockdata.datasets import list_datasets, update_dataset
from gridserver.db.engine import get_session
from gridserver.errors import Forbidden, InvalidInput, NotFound

router = APIRouter(prefix="/api/v1", tags=["实有人口房屋法人 block data"])
_S = Depends(get_session, scope="function")


def _at(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time.max, tzinfo=timezone.utc)
        d = datetime.fromisoformat(value)
        return d if d.tzinfo else d.replace(tzinfo=timezone.utc)
    except ValueError:
        raise InvalidInput(f"at must be a date (YYYY-MM-DD) or an ISO timestamp, got {value!r}") from None


def _denied(user: User, code: str) -> Forbidden:
    return Forbidden(f"无权查看 role {user.role!r} with scope {user.scope_code or '-'} may not see records of area {code}",
                     code="forbidden")


@router.get("/links", summary="五码关联 any one code → the others")
def links(address_code: str | None = None, building_code: str | None = None, house_code: str | None = None,
          credit_code: str | None = None, person: str | None = Query(None, description="ID number or its hash"),
          purpose: str | None = Query(None, description="why you look (recorded in the access log)"),
          user: User = Depends(current_user), session: Session = _S):
    """Person ID ↔ credit code ↔ house code ↔ building code ↔ address code. People are shown per their
    grid as the caller's role allows (unmasked reads are logged); others' records are left out."""
    if user.role == "citizen":
        raise Forbidden("公众账号不能查询他人信息 citizens may not look up records of others")
    out = service.links(session, address_code=address_code, building_code=building_code, house_code=house_code,
                        credit_code=credit_code, person=person)
    year = date.today().year
    people, full = [], 0
    for p in out["people"]:
        view = privacy.view_for(user, p["grid_code"] or "")
        if view == privacy.NONE:
            continue
        full += view == privacy.FULL
        people.append(privacy.shape_person(p, view, year))
    hidden = len(out["people"]) - len(people)
    if out["query"].get("person") and not people:
        raise _denied(user, ",".join(out["grid_codes"]) or "?")
    out["people"] = people
    out["people_hidden"] = hidden
    out["businesses"] = [privacy.shape_business(b, privacy.view_for(user, b["grid_code"] or "") or privacy.DEIDENTIFIED)
                         for b in out["businesses"]]
    if full:
        service.log_access(session, user, action="links", target=f"{next(iter(out['query']))}={next(iter(out['query'].values()))}"
                           if "person" not in out["query"] else "person=<id>",
                           area_code=",".join(out["grid_codes"])[:200], purpose=purpose, rows=full)
    return out


@router.get("/areas/{code}/profile", summary="网格画像 profile of a grid/community/street/district")
def area_profile(code: str, user: User = Depends(current_user), session: Session = _S):
    """Counts from the roll-up tables (not recounted per request), incidents of the last 30 days, workers."""
    area = service.area_info(session, code)
    if not privacy.can_see_aggregates(user, code):
        raise _denied(user, code)
    return service.profile(session, code, area)


@router.get("/areas/{code}/{what}", summary="区域内人/户/房/法人 people|households|buildings|businesses of an area")
def area_records(code: str, what: str, limit: int = Query(50, ge=1, le=1000), cursor: int | None = None,
                 at: str | None = Query(None, description="YYYY-MM-DD: who was in the area then"),
                 purpose: str | None = Query(None, description="why you look (recorded in the access log)"),
                 sex: str | None = None, residence: str | None = None, tag: str | None = None,
                 min_age: int | None = None, max_age: int | None = None, building_code: str | None = None,
                 household_code: str | None = None, category: str | None = None, use: str | None = None,
                 user: User = Depends(current_user), session: Session = _S):
    """Paginated (``next`` is the cursor), filterable, each row with its codes; masked by role."""
    if what not in service.LIST_KINDS:
        raise NotFound(f"unknown listing {what!r}; use {', '.join(service.LIST_KINDS)}")
    service.area_info(session, code)
    view = privacy.view_for(user, code)
    if view == privacy.NONE:
        raise _denied(user, code)
    given = dict(sex=sex, residence=residence, tag=tag, min_age=min_age, max_age=max_age, building_code=building_code,
                 household_code=household_code, category=category, use=use)
    filters = {k: v for k, v in given.items() if v is not None}
    page = service.list_records(session, what, code, at=_at(at), filters=filters, limit=limit, cursor=cursor)
    year = date.today().year
    shape = {"people": lambda r: privacy.shape_person(r, view, year), "households": lambda r: privacy.shape_household(r, view),
             "buildings": lambda r: privacy.shape_building(r, view), "businesses": lambda r: privacy.shape_business(r, view)}[what]
    rows = [shape(r) for r in page["rows"]]
    if view == privacy.FULL and what in ("people", "households") and rows:
        service.log_access(session, user, action=f"list {what}", target=f"areas/{code}/{what}", area_code=code,
                           purpose=purpose, rows=len(rows))
    return {"area": code, "view": view, "at": at, "rows": rows, "next": page["next"], "total": page["total"]}


class TagIn(BaseModel):
    tag: str
    note: str | None = None


def _person_grid(session, person_id: int) -> str:
    g = session.execute(text("SELECT grid_code FROM people WHERE id = :i"), {"i": person_id}).first()
    if g is None:
        raise NotFound(f"no person {person_id}")
    return g.grid_code or ""


@router.post("/people/{person_id}/tags", status_code=201, summary="设置重点人群标签 tag a person (key groups)")
def add_tag(person_id: int, body: TagIn, user: User = Depends(current_user), session: Session = _S):
    """Grid workers (their grid) and operators (their area) may tag; who and when are recorded."""
    grid = _person_grid(session, person_id)
    if privacy.view_for(user, grid) != privacy.FULL:
        raise _denied(user, grid)
    return service.set_tag(session, person_id, body.tag, actor=user.username, note=body.note)


@router.delete("/people/{person_id}/tags/{tag}", summary="移除标签 remove a key-group tag")
def remove_tag(person_id: int, tag: str, user: User = Depends(current_user), session: Session = _S):
    grid = _person_grid(session, person_id)
    if privacy.view_for(user, grid) != privacy.FULL:
        raise _denied(user, grid)
    return service.set_tag(session, person_id, tag, actor=user.username, remove=True)


@router.get("/access-log", summary="个人信息访问日志 reads of unmasked personal data (admin)")
def access_log(limit: int = Query(100, ge=1, le=1000), username: str | None = None,
               user: User = Depends(require_roles("admin")), session: Session = _S):
    rows = session.execute(text("SELECT id, at, username, role, action, target, area_code, purpose, rows FROM bd_access_log "
                                "WHERE (CAST(:u AS text) IS NULL OR username = :u) ORDER BY id DESC LIMIT :n"),
                           {"u": username, "n": limit}).mappings().all()
    return {"rows": [dict(r) for r in rows]}


@router.get("/datasets", summary="数据集登记 datasets, their providers and freshness (overdue marked)")
def datasets(user: User = Depends(current_user), session: Session = _S):
    if user.role == "citizen":
        raise Forbidden("公众账号无权查看 citizens may not see the dataset registry")
    return {"datasets": list_datasets(session)}


class DatasetIn(BaseModel):
    provider: str | None = None
    update_rule: str | None = None


@router.patch("/datasets/{name}", summary="修改数据集登记 set provider / update rule (admin)")
def patch_dataset(name: str, body: DatasetIn, user: User = Depends(require_roles("admin")), session: Session = _S):
    return update_dataset(session, name, provider=body.provider, update_rule=body.update_rule)


_REVIEWERS = ("admin", "district_operator", "street_operator")


@router.get("/blockdata/review", summary="待核实 rows that could not be linked or were rejected")
def review(import_id: int | None = None, status: str | None = None, limit: int = Query(100, ge=1, le=1000),
           user: User = Depends(require_roles(*_REVIEWERS)), session: Session = _S):
    """Rows inside the reviewer's scope (each with its ``area_code``; rows of unknown area only city-wide)."""
    if not is_citywide(user) and not user.scope_code:
        return {"rows": []}
    scope = None if is_citywide(user) else user.scope_code
    return {"rows": bd_review.list_review(session, import_id=import_id, status=status, limit=limit, scope_code=scope)}


class ReviewLinkIn(BaseModel):
    address_code: str | None = None
    building_code: str | None = None
    note: str | None = None


class ReviewRejectIn(BaseModel):
    reason: str


def _review_row(session, review_id: int, user: User) -> dict:
    row = bd_review.queued(session, review_id, lock=True)
    if not user_in_scope(user, row["area_code"]):
        raise Forbidden(f"无权处理 review row {review_id} lies in area {row['area_code'] or '未知 unknown'}, outside "
                        f"your scope {user.scope_code or '-'}", code="forbidden")
    return row


@router.post("/blockdata/review/{review_id}/link", summary="核实关联 link a queued row to a standard address or building")
def review_link(review_id: int, body: ReviewLinkIn, user: User = Depends(require_roles(*_REVIEWERS)),
                session: Session = _S):
    """The record gets the address/building and its grid by the covering-grid rule; who/when/why recorded."""
    row = _review_row(session, review_id, user)
    tgt = bd_review.target(session, address_code=body.address_code, building_code=body.building_code)
    if not user_in_scope(user, tgt["area_code"]):
        raise Forbidden(f"无权关联到辖区外 target lies in area {tgt['area_code'] or '未知 unknown'}, outside your scope "
                        f"{user.scope_code or '-'}", code="forbidden")
    out = bd_review.link(session, row, tgt, actor=user.username, note=body.note)
    return out


@router.post("/blockdata/review/{review_id}/reject", summary="驳回 reject a queued row (with a reason)")
def review_reject(review_id: int, body: ReviewRejectIn, user: User = Depends(require_roles(*_REVIEWERS)),
                  session: Session = _S):
    row = _review_row(session, review_id, user)
    out = bd_review.reject(session, row, actor=user.username, reason=body.reason)
    return out
