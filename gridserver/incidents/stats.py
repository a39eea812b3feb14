"""Incident KPIs (考核指标) and scorecards.

Every figure is over the incidents *reported* in [from, to) inside ``area`` (a district, street,
community or grid code); merged duplicates are not counted twice:

* ``by_status`` / ``by_category`` / ``by_department``: counts;
* ``same_day_closure_rate``: closed on the local (UTC+8) day they were reported / all reported;
* ``auto_dispatch_rate``: dispatched to the department routing chose, without an operator change /
  all dispatched (Yuexiu reports 98 %);
* ``step_minutes``: median and p90 minutes per step (accept, dispatch, handle, verify, close, total),
  read from 80 log-spaced buckets (each 20 % wide, interpolated inside the bucket);
* ``overdue``: still open and past the current step's due time (now, always live);
* ``on_time_rate``: resolved before the handling deadline / resolved;
* ``satisfaction_rate``: (satisfied + basic) / rated; ``reopen_rate``, ``returned_rate``, ``declined_rate``.

Speed on a year of data: whole past days of long periods (district/street/city level) come from a
roll-up (``incident_kpi_daily``: per local day and street, the counters and step histograms;
``incident_kpi_daily_dims``: counts by status/category/department), refreshed incrementally for
the days whose incidents changed since the last refresh (by the request itself, by the periodic
job or by ``gridserver incidents rollup``); the partial first/last day and today are computed live.
Sums of counters and histograms are exact, so the roll-up gives the same answer as the live query.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
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
NB, BASE = 80, 1.2  # histogram buckets: minutes m in bucket floor(ln(1 + m) / ln 1.2), capped
COUNTERS = {
    "total": "count(*)",
    "closed": "count(*) FILTER (WHERE closed_at IS NOT NULL)",
    "same_day": "count(*) FILTER (WHERE closed_at IS NOT NULL AND (closed_at AT TIME ZONE 'Asia/Shanghai')::date"
                " = (created_at AT TIME ZONE 'Asia/Shanghai')::date)",
    "dispatched": "count(*) FILTER (WHERE dispatched_at IS NOT NULL)",
    "auto_dispatched": "count(*) FILTER (WHERE auto_dispatched)",
    "resolved": "count(*) FILTER (WHERE resolved_at IS NOT NULL OR on_time IS NOT NULL)",
    "on_time": "count(*) FILTER (WHERE on_time)",
    "rated": "count(*) FILTER (WHERE rating IS NOT NULL)",
    "satisfied": "count(*) FILTER (WHERE rating IN ('satisfied', 'basic'))",
    "reopened": "count(*) FILTER (WHERE reopen_count > 0)",
    "returned": "count(*) FILTER (WHERE was_returned)",
    "declined": "count(*) FILTER (WHERE was_declined)",
    "escalated": "count(*) FILTER (WHERE escalation_level > 0)",
}
_DAY = "(created_at AT TIME ZONE 'Asia/Shanghai')::date"
_BUCKETS = ", ".join(
    f"LEAST({NB - 1}, floor(ln(1 + GREATEST(0, EXTRACT(EPOCH FROM ({b} - {a})) / 60.0)) / ln({BASE})))::int"
    for a, b in STEPS.values())
#: Periods at least this long (whole days) use the roll-up for their whole past days.
ROLLUP_MIN_DAYS = 14


def _area_cond(area: str | None) -> tuple[list[str], dict]:
    conds, params = ["merged_into IS NULL"], {}
    if area:
        col = CODE_COLUMN.get(len(area))
        if col is None or not area.isdigit():
            raise InvalidInput(f"area must be an area code of 6, 9, 12 or 15 digits; got {area!r}")
        conds.append(f"{col} = :area")
        params["area"] = area
    return conds, params


def _period(start, end) -> tuple[datetime, datetime]:
    now = datetime.now(CST)
    end = _as_time(end, "to", end_of_day=True) if end else now
    start = _as_time(start, "from") if start else end - timedelta(days=30)
    if start >= end:
        raise InvalidInput(f"from ({start.isoformat()}) must be before to ({end.isoformat()})")
    return start, end


def _as_time(value, name: str, end_of_day: bool = False) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=CST)
    if isinstance(value, date):
        d = value + timedelta(days=1) if end_of_day else value
        return datetime.combine(d, time(0), tzinfo=CST)
    raise InvalidInput(f"{name} must be a date (YYYY-MM-DD) or an ISO 8601 datetime; got {value!r}")


# --- aggregation (the same for the live path and the roll-up) -------------------------------------
class Agg:
    def __init__(self):
        self.counts = np.zeros(len(COUNTERS), dtype=np.int64)
        self.hist = np.zeros((len(STEPS), NB), dtype=np.int64)
        self.dims: dict[tuple[str, str], list] = {}  # (dim, value) → [label, n]

    def add_dim(self, dim, value, label, n):
        cur = self.dims.setdefault((dim, value or ""), [label, 0])
        cur[1] += int(n)


def _aggregate(conn, where: str, params: dict, keyed: bool) -> dict:
    """{key: Agg} where key is (day, street_code, district_code) when ``keyed`` else ()."""
    key_sel = f"{_DAY} AS day, COALESCE(street_code, '') AS street, COALESCE(district_code, '') AS district, " \
        if keyed else ""
    group = "GROUP BY 1, 2, 3" if keyed else ""
    nk = 3 if keyed else 0
    out: dict = {}

    def agg(row):
        k = tuple(row[:nk])
        a = out.get(k)
        if a is None:
            a = out[k] = Agg()
        return a

    for row in conn.execute(text(f"SELECT {key_sel}{', '.join(COUNTERS.values())} FROM incidents WHERE {where} {group}"),
                            params):
        agg(row).counts += np.array(row[nk:], dtype=np.int64)
    hist_group = "GROUP BY 1, 2, 3, s.ord, s.b" if keyed else "GROUP BY s.ord, s.b"
    for row in conn.execute(text(
            f"""SELECT {key_sel}s.ord, s.b, count(*) FROM incidents,
                       LATERAL unnest(ARRAY[{_BUCKETS}]) WITH ORDINALITY AS s(b, ord)
                WHERE {where} AND s.b IS NOT NULL {hist_group}"""), params):
        agg(row).hist[row[nk] - 1, row[nk + 1]] += row[nk + 2]
    dkey = "1, 2, 3, " if keyed else ""
    for dim, col, label in (("status", "status", "NULL"), ("category", "category", "NULL"),
                            ("department", "COALESCE(department, '')", "max(department_name)")):
        for row in conn.execute(text(f"SELECT {key_sel}{col}, {label}, count(*) FROM incidents WHERE {where} "
                                     f"GROUP BY {dkey}{col}"), params):
            agg(row).add_dim(dim, row[nk], row[nk + 1], row[nk + 2])
    return out


def _percentiles(h: np.ndarray, qs=(0.5, 0.9)) -> dict | None:
    n = int(h.sum())
    if n == 0:
        return None
    cum = np.cumsum(h)
    out = []
    for q in qs:
        target = q * n
        b = int(np.searchsorted(cum, target, side="left"))
        before = cum[b - 1] if b else 0
        f = (target - before) / h[b] if h[b] else 0.0
        lo, hi = math.log(BASE) * b, math.log(BASE) * (b + 1)  # ln(1 + minutes) bounds of the bucket
        out.append(round(math.exp(lo + f * (hi - lo)) - 1, 1))
    return {"median": out[0], "p90": out[1]}


def _ratio(a, b):
    return round(float(a) / float(b), 4) if b else None


def _rates(c: dict) -> dict:
    return {
        "total": c["total"], "closed": c["closed"],
        "same_day_closure_rate": _ratio(c["same_day"], c["total"]),
        "auto_dispatch_rate": _ratio(c["auto_dispatched"], c["dispatched"]),
        "on_time_rate": _ratio(c["on_time"], c["resolved"]),
        "satisfaction_rate": _ratio(c["satisfied"], c["rated"]),
        "reopen_rate": _ratio(c["reopened"], c["closed"] + c["reopened"]),
        "returned_rate": _ratio(c["returned"], c["dispatched"]),
        "declined_rate": _ratio(c["declined"], c["dispatched"]),
        "escalated": c["escalated"], "rated": c["rated"],
    }


# --- roll-up --------------------------------------------------------------------------------------
def refresh_rollup(conn, *, full: bool = False) -> dict:
    """Recompute the roll-up for past days whose incidents changed since the last refresh (all
    past days with ``full``). Skips (returns {"skipped": True}) while another refresh runs. No commit."""
    if not conn.execute(text("SELECT pg_try_advisory_xact_lock(hashtext('gridserver.incident_kpi'))")).scalar():
        return {"skipped": True}
    mark = conn.execute(text("SELECT value FROM gridserver_meta WHERE key = 'incident_kpi_watermark'")).scalar() or 0
    new_mark = conn.execute(text("SELECT (extract(epoch FROM clock_timestamp()) * 1e6)::bigint")).scalar()
    today = datetime.now(CST).date()
    if full or not mark:
        days = [r[0] for r in conn.execute(text(f"SELECT DISTINCT {_DAY} FROM incidents"))]
        conn.execute(text("DELETE FROM incident_kpi_daily"))
        conn.execute(text("DELETE FROM incident_kpi_monthly"))
        conn.execute(text("DELETE FROM incident_kpi_daily_dims"))
    else:
        days = [r[0] for r in conn.execute(text(
            f"SELECT DISTINCT {_DAY} FROM incidents WHERE updated_at >= to_timestamp(:m / 1e6)"), {"m": mark})]
    days = sorted(d for d in days if d < today)
    if days:
        conn.execute(text("DELETE FROM incident_kpi_daily WHERE day = ANY(:d)"), {"d": days})
        conn.execute(text("DELETE FROM incident_kpi_daily_dims WHERE day = ANY(:d)"), {"d": days})
        lo = datetime.combine(days[0], time(0), tzinfo=CST)
        hi = datetime.combine(days[-1] + timedelta(days=1), time(0), tzinfo=CST)
        aggs = _aggregate(conn, f"merged_into IS NULL AND created_at >= :lo AND created_at < :hi AND {_DAY} = ANY(:d)",
                          {"lo": lo, "hi": hi, "d": days}, keyed=True)
        conn.execute(text("INSERT INTO incident_kpi_daily (day, street_code, district_code, counts, hist) "
                          "VALUES (:day, :s, :dc, :c, :h)"),
                     [{"day": k[0], "s": k[1], "dc": k[2], "c": a.counts.tolist(), "h": a.hist.ravel().tolist()}
                      for k, a in aggs.items()])
        dims = [{"day": k[0], "s": k[1], "dim": d, "v": v, "l": lbl, "n": n}
                for k, a in aggs.items() for (d, v), (lbl, n) in a.dims.items()]
        if dims:
            conn.execute(text("INSERT INTO incident_kpi_daily_dims (day, street_code, dim, value, label, n) "
                              "VALUES (:day, :s, :dim, :v, :l, :n)"), dims)
    months = sorted({d.replace(day=1) for d in days})
    if months:
        conn.execute(text("DELETE FROM incident_kpi_monthly WHERE day = ANY(:m)"), {"m": months})
        conn.execute(text(
            """INSERT INTO incident_kpi_monthly (day, street_code, district_code, counts, hist)
               SELECT m, street_code, district_code,
                      (SELECT array_agg(s ORDER BY i) FROM (
                          SELECT i, sum(c)::bigint AS s FROM incident_kpi_daily d2, unnest(d2.counts) WITH ORDINALITY u(c, i)
                          WHERE date_trunc('month', d2.day)::date = m AND d2.street_code = k.street_code GROUP BY i) q),
                      (SELECT array_agg(s ORDER BY i) FROM (
                          SELECT i, sum(h)::bigint AS s FROM incident_kpi_daily d2, unnest(d2.hist) WITH ORDINALITY u(h, i)
                          WHERE date_trunc('month', d2.day)::date = m AND d2.street_code = k.street_code GROUP BY i) q)
               FROM (SELECT DISTINCT date_trunc('month', day)::date AS m, street_code, district_code
                     FROM incident_kpi_daily WHERE date_trunc('month', day)::date = ANY(:m)) k"""), {"m": months})
    conn.execute(text("UPDATE gridserver_meta SET value = :m WHERE key = 'incident_kpi_watermark'"), {"m": new_mark})
    return {"days": len(days), "months": len(months)}


def _from_rollup(conn, area: str | None, d0: date, d1: date) -> Agg:
    """Days [d0, d1) from the roll-up: whole months from the monthly table, the rest from the daily one."""
    m0 = d0 if d0.day == 1 else (d0.replace(day=1) + timedelta(days=32)).replace(day=1)
    m1 = d1.replace(day=1)
    if m0 >= m1:
        return _sum_rollup(conn, "incident_kpi_daily", area, d0, d1)
    a = _sum_rollup(conn, "incident_kpi_monthly", area, m0, m1, dims_to=(d0, d1))
    for lo, hi in ((d0, m0), (m1, d1)):
        if lo < hi:
            b = _sum_rollup(conn, "incident_kpi_daily", area, lo, hi, with_dims=False)
            a.counts += b.counts
            a.hist += b.hist
    return a


def _sum_rollup(conn, table: str, area: str | None, d0: date, d1: date, *, with_dims: bool = True,
                dims_to: tuple | None = None) -> Agg:
    cond, params = "day >= :d0 AND day < :d1", {"d0": d0, "d1": d1}
    if area and len(area) == 6:
        cond += " AND district_code = :area"
    elif area:
        cond += " AND street_code = :area"
    params["area"] = area
    a = Agg()
    row = conn.execute(text(
        f"""SELECT (SELECT array_agg(s ORDER BY i) FROM (
                      SELECT i, sum(c) AS s FROM {table}, unnest(counts) WITH ORDINALITY AS u(c, i)
                      WHERE {cond} GROUP BY i) q) AS counts,
                   (SELECT array_agg(s ORDER BY i) FROM (
                      SELECT i, sum(h) AS s FROM {table}, unnest(hist) WITH ORDINALITY AS u(h, i)
                      WHERE {cond} GROUP BY i) q) AS hist"""), params).one()
    if row.counts:
        a.counts += np.array(row.counts, dtype=np.int64)
        a.hist += np.array(row.hist, dtype=np.int64).reshape(len(STEPS), NB)
    if not with_dims:
        return a
    dcond = cond.replace("district_code = :area", "street_code LIKE :area || '%'")
    if dims_to is not None:  # the dimension counts come from the daily table for the whole range
        params = {**params, "d0": dims_to[0], "d1": dims_to[1]}
    for dim, value, label, n in conn.execute(text(
            f"SELECT dim, value, max(label), sum(n) FROM incident_kpi_daily_dims WHERE {dcond} GROUP BY dim, value"),
            params):
        a.add_dim(dim, value, label, n)
    return a


def incident_stats(conn, area: str | None = None, start=None, end=None, *, use_rollup: bool = True) -> dict:
    """The KPIs (see the module doc) for one area and period."""
    conds, params = _area_cond(area)
    start, end = _period(start, end)
    today = datetime.now(CST).date()
    d0 = start.astimezone(CST).date()
    if start.astimezone(CST).time() != time(0):  # the first day is partial: live
        d0 += timedelta(days=1)
    d1 = min(end.astimezone(CST).date(), today)
    parts: list[Agg] = []
    rolled = 0
    if use_rollup and (area is None or len(area) in (6, 9)) and (d1 - d0).days >= ROLLUP_MIN_DAYS:
        refresh_rollup(conn)
        parts.append(_from_rollup(conn, area, d0, d1))
        rolled = (d1 - d0).days
        ranges = [(start, datetime.combine(d0, time(0), tzinfo=CST)), (datetime.combine(d1, time(0), tzinfo=CST), end)]
    else:
        ranges = [(start, end)]
    for lo, hi in ranges:
        if lo >= hi:
            continue
        where = " AND ".join(conds + ["created_at >= :lo", "created_at < :hi"])
        parts.extend(_aggregate(conn, where, {**params, "lo": lo, "hi": hi}, keyed=False).values())
    total = Agg()
    for p in parts:
        total.counts += p.counts
        total.hist += p.hist
        for (d, v), (lbl, n) in p.dims.items():
            total.add_dim(d, v, lbl, n)
    where = " AND ".join(conds + ["created_at >= :lo", "created_at < :hi", "due_at < now()",
                                  "status NOT IN ('closed', 'rated', 'merged')"])
    overdue = conn.execute(text(f"SELECT count(*) FROM incidents WHERE {where}"), {**params, "lo": start, "hi": end}).scalar()
    from gridserver.incidents.service import category_label
    from gridserver.incidents.workflow import STATUS_LABELS

    c = dict(zip(COUNTERS, (int(x) for x in total.counts)))
    out = {"area": area, "from": start, "to": end, **_rates(c), "overdue": overdue,
           "rolled_up_days": rolled}
    out["step_minutes"] = {name: _percentiles(total.hist[i]) for i, name in enumerate(STEPS)}

    def dim(name):
        return sorted(((v, lbl, n) for (d, v), (lbl, n) in total.dims.items() if d == name and n),
                      key=lambda t: (-t[2], t[0]))

    out["by_status"] = [{"status": v, "label": STATUS_LABELS.get(v), "count": n} for v, _, n in dim("status")]
    out["by_category"] = [{"category": v, "label": category_label(v), "count": n} for v, _, n in dim("category")]
    out["by_department"] = [{"department": v or None, "name": lbl, "count": n} for v, lbl, n in dim("department")]
    return out


def scorecards(conn, by: str = "department", area: str | None = None, start=None, end=None) -> dict:
    """Per-department or per-street assessment (考核): on-time, returned/declined, reopen, satisfaction."""
    if by not in ("department", "street"):
        raise InvalidInput(f"by must be department or street; got {by!r}")
    conds, params = _area_cond(area)
    start, end = _period(start, end)
    where = " AND ".join(conds + ["created_at >= :start", "created_at < :end"])
    params.update(start=start, end=end)
    key = "department, max(department_name)" if by == "department" else \
        "street_code, (SELECT name FROM admin_areas a WHERE a.code = street_code AND a.valid_to IS NULL LIMIT 1)"
    rows = conn.execute(text(
        f"""SELECT {key}, {', '.join(COUNTERS.values())},
                   count(*) FILTER (WHERE due_at < now() AND status NOT IN ('closed', 'rated', 'merged'))
            FROM incidents WHERE {where} GROUP BY {'department' if by == 'department' else 'street_code'}
            ORDER BY 3 DESC"""), params).all()
    items = []
    for r in rows:
        c = dict(zip(COUNTERS, r[2:2 + len(COUNTERS)]))
        items.append({"code": r[0], "name": r[1], **_rates(c), "overdue": r[-1]})
    return {"area": area, "from": start, "to": end, "by": by, "items": items}
