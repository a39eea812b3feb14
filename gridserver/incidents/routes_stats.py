"""KPI and scorecard routes (统计考核). Staff only; scoped accounts see their own area."""

from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter, Depends, Query
from sqlalchemy.orm import Session

from gridserver.auth.deps import current_user, describe_scope, user_in_scope
from gridserver.auth.users import User
from gridserver.db.engine import get_session
from gridserver.errors import Forbidden
from gridserver.incidents import stats

router = APIRouter(prefix="/api/v1/stats", tags=["统计考核 incident KPIs"])


def _area(user: User, area: str | None) -> str | None:
    if user.role == "citizen":
        raise Forbidden("公众不能查看统计 citizens cannot read the KPIs")
    if area is None:
        return user.scope_code
    if not user_in_scope(user, area):
        raise Forbidden(f"区域 {area} 不在您的管辖范围 {describe_scope(user)} 内 outside your scope")
    return area


@router.get("/incidents", summary="事件指标 incident KPIs for an area and period")
def incident_kpis(area: str | None = Query(None, description="区划编码 district/street/community/grid code"),
                  from_: date | datetime | None = Query(None, alias="from", description="起 from (date or datetime; default 30 days before 'to')"),
                  to: date | datetime | None = Query(None, description="止 to (a date includes that whole day; default now)"),
                  session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user)):
    """Counts by status/category/department, same-day closure, auto-dispatch, median/p90 minutes per
    step, overdue, on-time, satisfaction, reopen/returned/declined rates."""
    return stats.incident_stats(session, _area(user, area), from_, to)


@router.get("/scorecards", summary="考核 per-department or per-street scorecards")
def scorecards(by: str = Query("department", description="department | street"),
               area: str | None = Query(None), from_: date | datetime | None = Query(None, alias="from"),
               to: date | datetime | None = Query(None),
               session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user)):
    return stats.scorecards(session, by, _area(user, area), from_, to)
