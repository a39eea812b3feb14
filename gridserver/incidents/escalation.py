"""Escalation (升级): overdue or declined incidents go one level up, grid → community → street → district.

``escalate_due(conn, now)`` is a plain function, safe to run from any number of workers at once and
to kill at any moment:

* candidates are claimed with ``SELECT … FOR UPDATE SKIP LOCKED``, one incident per transaction, so
  two workers never wait on or repeat each other's incident;
* each escalation inserts ``incident_escalations (incident_id, step)`` — UNIQUE — in the same
  transaction as the status change, event and notification: a run killed mid-way has either done an
  incident's step completely or not at all, and a re-run does exactly the missing ones.

Run it with ``gridserver incidents escalate [--loop]``; the job queue (``gridserver/jobs``) runs it as
a periodic task when present.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from sqlalchemy import text

from gridserver.errors import Conflict
from gridserver.incidents import taxonomy, workflow

#: Statuses whose due time counts against the responsible level.
ESCALATABLE = ("reported", "accepted", "dispatched", "in_progress", "returned", "escalated")

_CLAIM = text(f"""
    SELECT id FROM incidents
    WHERE merged_into IS NULL AND department IS NOT NULL AND route_level <> 'district'
      AND (status = 'declined'
           OR (status IN ({", ".join(f"'{s}'" for s in ESCALATABLE)}) AND due_at < :now))
      AND NOT (id = ANY(:skip))
    ORDER BY due_at NULLS FIRST, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
""")


def escalate_due(conn, now: datetime | None = None, *, limit: int | None = None, pause: float = 0.0) -> list[dict]:
    """Escalate every overdue or declined incident one level; commits after each. Returns what it did.

    ``conn`` is a SQLAlchemy Connection (not inside a transaction); ``pause`` seconds are slept
    between incidents (throttling on a busy server).
    """
    now = now or datetime.now(timezone.utc)
    done: list[dict] = []
    skip: list[int] = []
    while limit is None or len(done) < limit:
        with conn.begin():
            row = conn.execute(_CLAIM, {"now": now, "skip": skip}).first()
            if row is None:
                break
            tax = taxonomy.active(conn)
            inc = dict(conn.execute(workflow._LOCK_SQL, {"id": row.id}).mappings().one())
            reason = "declined" if inc["status"] == "declined" else "overdue"
            note = ("下级无法办理，自动升级 declined by the level below" if reason == "declined"
                    else f"超时未办理，自动升级 overdue since {inc['due_at'].isoformat()}")
            try:
                out = workflow._escalate(conn, inc, tax, None, note, now, reason=reason)
            except Conflict:  # already at the top level for this item
                skip.append(row.id)
                continue
            if out.get("skipped"):
                skip.append(row.id)
                continue
            done.append({"incident_id": row.id, "reason": reason, **out})
        if pause:
            time.sleep(pause)
    return done


def escalate_loop(engine, interval: float = 60.0, pause: float = 0.0) -> None:  # pragma: no cover - runs forever
    while True:
        with engine.connect() as conn:
            escalate_due(conn, pause=pause)
        from gridserver.incidents.notify import deliver_pending

        with engine.connect() as conn:
            deliver_pending(conn)
        time.sleep(interval)
