"""Incident KPIs (考核指标) and scorecards, computed live in one scan per request.

Every figure is over the incidents *reported* in [from, to) inside ``area`` (a district, street,
community or grid code):

* ``by_status`` / ``by_category`` / ``by_department``: counts;
* ``same_day_closure_rate``: closed on the local (UTC+8) day they were reported / all reported;
* ``auto_dispatch_rate``: dispatched to the department routing chose, without an operator change /
  all dispatched (Yuexiu reports 98 %);
* ``step_minutes``: median and p90 minutes per step (accept, dispatch, handle, verify, close, total);
* ``overdue``: still open and past the current step's due time (now);
* ``on_time_rate``: resolved before the handling deadline / resolved;
* ``satisfaction_rate``: (satisfied + basic) / rated; ``reopen_rate``, ``returned_rate``, ``declined_rate``.

One aggregate query with ``FILTER`` clauses over the ``incidents_created`` index answers a year of
data (≈ 300k incidents) in well under a second here (``bench/incident_intake.py --stats`` measures it);
per-department/street scorecards are one ``GROUP BY`` of the same expressions.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text

from gridserver.errors import InvalidInput

CST = ZoneInfo("Asia/Shanghai")
CODE_COLUMN = {6: "district_code", 9: "street_code", 12: "community_code", 15: "grid_code"}
STEPS = {
    "accept": ("created_at", "accepted_at"),
    "dispatch": ("accepted_at", "dispatched_at"),
    "handle": ("dispatched_at", "resolved_at"),
    "verify": ("resolved_at", "verified_at"),
    "close": ("COALESCE(verified_at, resolved_at)", "closed_at"),
    "total": ("created_at", "closed_at"),
}
_RATES = """
    count(*) AS total,
    count(*) FILTER (WHERE closed_at IS NOT NULL) AS closed,
    count(*) FILTER (WHERE closed_at IS NOT NULL AND (closed_at AT TIME ZONE 'Asia/Shanghai')::date
                     = (created_at AT TIME ZONE 'Asia/Shanghai')::date) AS same_day,
    count(*) FILTER (WHERE dispatched_at IS NOT NULL) AS dispatched,
    count(*) FILTER (WHERE auto_dispatched) AS auto_dispatched,
    count(*) FILTER (WHERE resolved_at IS NOT NULL OR on_time IS NOT NULL) AS resolved,
    count(*) FILTER (WHERE on_time) AS on_time,
    count(*) FILTER (WHERE rating IS NOT NULL) AS rated,
    count(*) FILTER (WHERE rating IN ('satisfied', 'basic')) AS satisfied,
    count(*) FILTER (WHERE reopen_count > 0) AS reopened,
    count(*) FILTER (WHERE was_returned) AS returned,
    count(*) FILTER (WHERE was_declined) AS declined,
    count(*) FILTER (WHERE escalation_level > 0) AS escalated,
    count(*) FILTER (WHERE due_at < now() AND status NOT IN ('closed', 'rated', 'merged')) AS overdue
"""


def _bounds(area: str | None, start, end) -> tuple[str, dict, dict]:
    conds, params = ["merged_into IS NULL"], {}
    if area:
        col = CODE_COLUMN.get(len(area))
        if col is None or not area.isdigit():
            raise InvalidInput(f"area must be an area code of 6, 9, 12 or 15 digits; got {area!r}")
        conds.append(f"{col} = :area")
        params["area"] = area
    now = datetime.now(CST)
    end = _as_time(end, "to", end_of_day=True) if end else now
    start = _as_time(start, "from") if start else end - timedelta(days=30)
    if start >= end:
        raise InvalidInput(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    conds += ["created_at >= :start", "created_at < :end"]
    params.update(start=start, end=end)
    return " AND ".join(conds), params, {"area": area, "from": start, "to": end}


def _as_time(value, name: str, end_of_day: bool = False) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=CST)
    if isinstance(value, date):
        d = value + timedelta(days=1) if end_of_day else value
        return datetime.combine(d, time(0), tzinfo=CST)
    raise InvalidInput(f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 datetime; got {value!r}")


def _ratio(a, b):
    return round(a / b, 4) if b else None


def _rates(r) -> dict:
    return {
        "total": r["total"], "closed": r["closed"], "overdue": r["overdue"],
        "same_day_closure_rate": _ratio(r["same_day"], r["total"]),
        "auto_dispatch_rate": _ratio(r["auto_dispatched"], r["dispatched"]),
        "on_time_rate": _ratio(r["on_time"], r["resolved"]),
        "satisfaction_rate": _ratio(r["satisfied"], r["rated"]),
        "reopen_rate": _ratio(r["reopened"], r["closed"] + r["reopened"]),
        "returned_rate": _ratio(r["returned"], r["dispatched"]),
        "declined_rate": _ratio(r["declined"], r["dispatched"]),
        "escalated": r["escalated"], "rated": r["rated"],
    }


def incident_stats(conn, area: str | None = None, start=None, end=None) -> dict:
    """The KPIs (see the module doc) for one area and period."""
    where, params, echo = _bounds(area, start, end)
    steps = ", ".join(
        f"percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM ({b} - {a})) / 60.0) "
        f"FILTER (WHERE ({b} - {a}) IS NOT NULL) AS step_{name}"
        for name, (a, b) in STEPS.items())
    row = conn.execute(text(f"SELECT {_RATES}, {steps} FROM incidents WHERE {where}"), params).mappings().one()
    groups = {}
    for key, col, label_col in (("by_status", "status", None), ("by_category", "category", None),
                                ("by_department", "department", "department_name")):
        sel = f"{col}, {label_col or 'NULL'} AS label, count(*) AS n"
        rows = conn.execute(text(f"SELECT {sel} FROM incidents WHERE {where} GROUP BY 1, 2 ORDER BY 3 DESC"),
                            params).all()
        groups[key] = rows
    from gridserver.incidents.service import category_label
    from gridserver.incidents.workflow import STATUS_LABELS

    out = {**echo, **_rates(row)}
    out["step_minutes"] = {name: ({"median": round(v[0], 1), "p90": round(v[1], 1)} if v else None)
                           for name, v in ((n, row[f"step_{n}"]) for n in STEPS)}
    out["by_status"] = [{"status": s, "label": STATUS_LABELS.get(s), "count": n} for s, _, n in groups["by_status"]]
    out["by_category"] = [{"category": c, "label": category_label(c), "count": n} for c, _, n in groups["by_category"]]
    out["by_department"] = [{"department": d, "name": lbl, "count": n} for d, lbl, n in groups["by_department"]]
    return out


def scorecards(conn, by: str = "department", area: str | None = None, start=None, end=None) -> dict:
    """Per-department or per-street assessment (考核): on-time, returned/declined, reopen, satisfaction."""
    if by not in ("department", "street"):
        raise InvalidInput(f"by must be department or street; got {by!r}")
    where, params, echo = _bounds(area, start, end)
    key = "department, department_name" if by == "department" else "street_code, (SELECT name FROM admin_areas a " \
        "WHERE a.code = street_code AND a.valid_to IS NULL LIMIT 1)"
    rows = conn.execute(text(f"SELECT {key}, {_RATES} FROM incidents WHERE {where} GROUP BY 1, 2 ORDER BY 3 DESC"),
                        params).mappings().all()
    out = []
    for r in rows:
        vals = list(r.values())
        out.append({"code": vals[0], "name": vals[1], **_rates(r)})
    return {**echo, "by": by, "items": out}
