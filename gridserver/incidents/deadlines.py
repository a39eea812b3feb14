"""Deadlines on the official working-day calendar (工作日), with local overrides.

China's calendar moves workdays around public holidays (调休: a Saturday can be a workday, a Monday
a holiday). The ``chinese-calendar`` package keeps the State Council's published calendar; a city can
override days (``calendar_overrides``: a local holiday, a typhoon day, or a whole year's published
schedule the package does not know yet, loaded with ``gridserver taxonomy calendar-load``). Years that
neither covers fall back to Monday–Friday, with a warning in the log; ``calendar-status`` names them.

Rules:
* ``Nh`` deadlines are clock hours (urgent items run around the clock).
* ``Nwd`` deadlines end at the same time of day on the N-th working day after the start; a report
  made on a rest day starts counting at 09:00 of the next working day. Fractions round up.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import text

from gridserver.errors import InvalidInput

log = logging.getLogger(__name__)
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
WORKDAY_START = 9  # 09:00
#: database → (calendar revision, overrides). The revision (``gridserver_meta.calendar_revision``) is bumped
#: by a trigger on every change of ``calendar_overrides``, from any process: a cached copy is used only
#: while the database still has the revision it was read at. Intake reads the revision inside its one
#: context statement (``intake.py``); other callers pay one small query.
_overrides: dict[str, tuple[int, dict[date, bool]]] = {}
REVISION_SQL = "SELECT value FROM gridserver_meta WHERE key = 'calendar_revision'"
#: ``gridserver_meta`` key prefix of the years whose published schedule was loaded
SCHEDULE_KEY = "calendar_schedule_"


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
        _warn_fallback(day.year)
        return day.weekday() < 5


@lru_cache(maxsize=64)
def _warn_fallback(year: int) -> None:
    """Say once per year and process that deadlines in ``year`` count Monday–Friday only."""
    log.warning("official working-day calendar unknown for %d (chinese-calendar covers %s): deadlines count "
                "Monday–Friday unless the year's schedule is loaded (`gridserver taxonomy calendar-load`)",
                year, "%d–%d" % official_years() if official_years() else "nothing: not installed")


@lru_cache(maxsize=1)
def official_years() -> tuple[int, int] | None:
    """First and last year of the installed official calendar (``chinese-calendar``); None without it."""
    try:
        from chinese_calendar import constants
    except ImportError:
        return None
    years = {d.year for d in constants.holidays} | {d.year for d in constants.workdays}
    return min(years), max(years)


def uncovered_years(schedule_years: set[int], today: date, ahead_days: int = 60) -> list[int]:
    """The years from ``today`` to ``today + ahead_days`` that neither the official calendar nor a loaded
    schedule (``schedule_years``) covers: deadlines there fall back to Monday–Friday (no Spring Festival,
    no 调休). Single-day overrides (a typhoon day) do not make a year covered."""
    known = official_years()
    return [y for y in range(today.year, (today + timedelta(days=ahead_days)).year + 1)
            if not (known and known[0] <= y <= known[1]) and y not in schedule_years]


def uncovered_message(years: Iterable[int]) -> str:
    """What to tell an operator about years without a working-day calendar."""
    return (f"no working-day calendar for {', '.join(map(str, years))}: deadlines there count Monday–Friday only; "
            "load the published schedule with `gridserver taxonomy calendar-load FILE`")


def calendar_status(conn, ahead_days: int = 60, today: date | None = None) -> dict:
    """What the working-day calendar covers: the official years, the years whose published schedule was
    loaded (:func:`load_schedule`), local override days per year, and the ``uncovered`` years within
    ``ahead_days`` of today (China time) that count Monday–Friday only."""
    by_year = Counter(d.year for d in load_overrides(conn, fresh=True))
    schedules = {int(k.removeprefix(SCHEDULE_KEY)) for k in conn.execute(
        text("SELECT key FROM gridserver_meta WHERE starts_with(key, :k)"), {"k": SCHEDULE_KEY}).scalars()}
    known = official_years()
    return {"official_years": list(known) if known else None, "schedule_years": sorted(schedules),
            "override_days": dict(sorted(by_year.items())),
            "uncovered": uncovered_years(schedules, today or datetime.now(LOCAL_TZ).date(), ahead_days),
            "ahead_days": ahead_days}


#: how a schedule line marks a day: rest (放假) or working (上班, e.g. a make-up day 调休上班)
_STATUS = {"休": False, "holiday": False, "rest": False, "班": True, "workday": True, "work": True}


def parse_days(spec: str) -> list[date]:
    """``YYYY-MM-DD`` or a range ``YYYY-MM-DD..YYYY-MM-DD`` (both ends included, at most 31 days)."""
    parts = spec.split("..")
    if len(parts) > 2:
        raise InvalidInput(f"{spec!r} is not a day or a range YYYY-MM-DD..YYYY-MM-DD")
    try:
        first, last = (date.fromisoformat(x.strip()) for x in (parts[0], parts[-1]))
    except ValueError:
        raise InvalidInput(f"{spec!r} is not a day YYYY-MM-DD or a range YYYY-MM-DD..YYYY-MM-DD") from None
    if last < first or (last - first).days > 30:
        raise InvalidInput(f"range {spec!r} must run forward and span at most 31 days")
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def parse_schedule(text_: str) -> list[tuple[date, bool, str]]:
    """A year's holiday schedule as published (国务院办公厅 节假日安排), one line per day or range::

        2027-02-06..2027-02-12  休  春节
        2027-02-14              班  春节调休

    ``休``/``holiday``/``rest`` or ``班``/``workday``/``work``, then an optional note; ``#`` starts a
    comment. Returns (day, workday, note) per day; a bad line raises :class:`InvalidInput` naming it."""
    out: dict[date, tuple[bool, str, int]] = {}
    for n, raw in enumerate(text_.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split(None, 2)
        if len(fields) < 2 or fields[1].lower() not in _STATUS:
            raise InvalidInput(f"line {n}: expected 'DAY[..DAY] 休|班 [note]', got {raw.strip()!r}")
        try:
            days = parse_days(fields[0])
        except InvalidInput as exc:
            raise InvalidInput(f"line {n}: {exc.detail}") from None
        workday, note = _STATUS[fields[1].lower()], fields[2] if len(fields) > 2 else ""
        for d in days:
            if d in out and out[d][0] != workday:
                raise InvalidInput(f"line {n}: {d} is already a {'working' if out[d][0] else 'rest'} day "
                                   f"on line {out[d][2]}")
            out[d] = (workday, note, n)
    if not out:
        raise InvalidInput("the schedule names no day")
    return [(d, w, note) for d, (w, note, _) in sorted(out.items())]


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


def set_overrides(conn, entries: Iterable[tuple[date, bool, str]]) -> int:
    """Mark each (day, workday, note) as a working or a rest day locally (upsert, one statement).
    Does not commit. Deadlines already set are kept: load a year's schedule before the year starts
    (``calendar-status`` warns 60 days ahead)."""
    rows = [{"d": d, "w": w, "n": note} for d, w, note in entries]
    if rows:
        conn.execute(text("""INSERT INTO calendar_overrides (day, workday, note) VALUES (:d, :w, :n)
                             ON CONFLICT (day) DO UPDATE SET workday = EXCLUDED.workday, note = EXCLUDED.note"""),
                     rows)
    _overrides.clear()
    return len(rows)


def load_schedule(conn, entries: list[tuple[date, bool, str]]) -> int:
    """:func:`set_overrides` for a year's published schedule (:func:`parse_schedule`): its years then count
    as covered (``gridserver_meta`` ``calendar_schedule_<year>`` = days loaded). Does not commit."""
    for year, n in Counter(d.year for d, _, _ in entries).items():
        conn.execute(text("""INSERT INTO gridserver_meta (key, value) VALUES (:k, :n)
                             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"""),
                     {"k": f"{SCHEDULE_KEY}{year}", "n": n})
    return set_overrides(conn, entries)


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
