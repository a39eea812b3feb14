"""Deadlines on the official working-day calendar (工作日), with local overrides.

China's calendar moves workdays around public holidays (调休: a Saturday can be a workday, a Monday
a holiday). The ``chinese-calendar`` package keeps the State Council's published calendar; a city can
override single days (``calendar_overrides``: a local holiday, a typhoon day, a year the package
does not know yet). Years the package does not cover fall back to Monday–Friday.

Rules:
* ``Nh`` deadlines are clock hours (urgent items run around the clock).
* ``Nwd`` deadlines end at the same time of day on the N-th working day after the start; a report
  made on a rest day starts counting at 09:00 of the next working day. Fractions round up.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import text

from gridserver.errors import InvalidInput

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
WORKDAY_START = 9  # 09:00
#: database → (calendar revision, overrides). The revision (``gridserver_meta.calendar_revision``) is bumped
#: by a trigger on every change of ``calendar_overrides``, from any process: a cached copy is used only
#: while the database still has the revision it was read at. Intake reads the revision inside its one
#: context statement (``intake.py``); other callers pay one small query.
_overrides: dict[str, tuple[int, dict[date, bool]]] = {}
REVISION_SQL = "SELECT value FROM gridserver_meta WHERE key = 'calendar_revision'"


def is_workday(day: date, overrides: dict[date, bool] | None = None) -> bool:
    """True when ``day`` is a working day: local override, else the official calendar, else Mon–Fri."""
    if overrides and day in overrides:
        return overrides[day]
    return _official_workday(day)


@lru_cache(maxsize=4096)
def _official_workday(day: date) -> bool:
    try:
        import chinese_calendar

        return bool(chinese_calendar.is_workday(day))
    except (NotImplementedError, ImportError):
        return day.weekday() < 5


def load_overrides(conn, *, fresh: bool = False) -> dict[date, bool]:
    """Local calendar overrides (SQLAlchemy connection or session), cached while their revision holds."""
    from gridserver.incidents.taxonomy import _db_key

    rev = conn.execute(text(REVISION_SQL)).scalar() or 0
    return overrides_at(_db_key(conn), -1 if fresh else rev,
                        lambda: conn.execute(text("SELECT day, workday FROM calendar_overrides")).all(), store_as=rev)


def overrides_at(db: str, revision: int, read, store_as: int | None = None) -> dict[date, bool]:
    """The overrides of database ``db`` at ``revision``: the cached copy when it has that revision, else
    ``read()`` (rows of day, workday), cached under it."""
    hit = _overrides.get(db)
    if hit and hit[0] == revision:
        return hit[1]
    out = {r[0]: r[1] for r in read()}
    _overrides[db] = (revision if store_as is None else store_as, out)
    return out


def set_override(conn, day: date, workday: bool, note: str = "") -> None:
    """Mark ``day`` as a working day or a rest day locally (upsert). Does not commit."""
    conn.execute(text("""INSERT INTO calendar_overrides (day, workday, note) VALUES (:d, :w, :n)
                         ON CONFLICT (day) DO UPDATE SET workday = EXCLUDED.workday, note = EXCLUDED.note"""),
                 {"d": day, "w": workday, "n": note})
    _overrides.clear()


def add_deadline(start: datetime, deadline: str, overrides: dict[date, bool] | None = None) -> datetime:
    """``start`` + a taxonomy deadline ('3wd' or '4h'); aware datetime in China Standard Time."""
    from gridserver.incidents.taxonomy import parse_deadline

    amount, unit = parse_deadline(deadline, "deadline")
    start = start.astimezone(LOCAL_TZ) if start.tzinfo else start.replace(tzinfo=LOCAL_TZ)
    if unit == "h":
        return start + timedelta(hours=amount)
    return add_working_days(start, math.ceil(amount), overrides)


def add_working_days(start: datetime, n: int, overrides: dict[date, bool] | None = None) -> datetime:
    """The same time of day on the n-th working day after ``start`` (see the module rules)."""
    if n < 0:
        raise InvalidInput(f"working days must be >= 0, got {n}")
    start = start.astimezone(LOCAL_TZ) if start.tzinfo else start.replace(tzinfo=LOCAL_TZ)
    if not is_workday(start.date(), overrides):
        day = start.date() + timedelta(days=1)
        for _ in range(60):
            if is_workday(day, overrides):
                break
            day += timedelta(days=1)
        start = datetime(day.year, day.month, day.day, WORKDAY_START, tzinfo=LOCAL_TZ)
    day, counted = start.date(), 0
    for _ in range(n * 10 + 60):
        if counted >= n:
            break
        day += timedelta(days=1)
        if is_workday(day, overrides):
            counted += 1
    return datetime.combine(day, start.timetz())


def working_days_between(a: date, b: date, overrides: dict[date, bool] | None = None) -> int:
    """Working days in (a, b]."""
    n, day = 0, a
    while day < b:
        day += timedelta(days=1)
        n += is_workday(day, overrides)
    return n
