"""The dataset registry (数据集登记): provider department, update rule, last update, rows, last outcome.

A dataset is overdue when its last update is older than its rule allows (daily 1 day, weekly 7,
monthly 31, quarterly 92, yearly 366; ``once`` never). Imports register and update datasets.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from gridserver.errors import InvalidInput, NotFound

RULE_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92, "yearly": 366, "once": None}


def list_datasets(conn, now: datetime | None = None) -> list[dict]:
    """Every registered dataset with ``overdue`` and ``due_at``."""
    now = now or datetime.now(timezone.utc)
    out = []
    for r in conn.execute(text("SELECT name, kind, provider, update_rule, last_update, row_count, last_import_id, "
                               "last_outcome FROM bd_datasets ORDER BY name")).mappings():
        d = dict(r)
        days = RULE_DAYS.get(d["update_rule"])
        due = d["last_update"] + timedelta(days=days) if days and d["last_update"] else None
        d["due_at"] = due.isoformat() if due else None
        d["overdue"] = bool(days) and (d["last_update"] is None or due < now)
        d["last_update"] = d["last_update"].isoformat() if d["last_update"] else None
        out.append(d)
    return out


def update_dataset(conn, name: str, *, provider: str | None = None, update_rule: str | None = None) -> dict:
    if update_rule is not None and update_rule not in RULE_DAYS:
        raise InvalidInput(f"update_rule must be one of {', '.join(RULE_DAYS)}, got {update_rule!r}")
    row = conn.execute(text("UPDATE bd_datasets SET provider = coalesce(:p, provider), update_rule = coalesce(:u, update_rule) "
                            "WHERE name = :n RETURNING name"), {"p": provider, "u": update_rule, "n": name}).first()
    if row is None:
        raise NotFound(f"no dataset {name!r}")
    return next(d for d in list_datasets(conn) if d["name"] == name)


def register(conn, name: str, kind: str, provider: str, update_rule: str = "monthly", last_update=None,
             row_count: int = 0, outcome: dict | None = None, last_import_id: int | None = None) -> None:
    """Create or update a registry row (the demo registers its datasets with their import runs)."""
    conn.execute(text("INSERT INTO bd_datasets (name, kind, provider, update_rule, last_update, row_count, last_import_id, "
                      "last_outcome) VALUES (:n, :k, :p, :u, :l, :c, :i, CAST(:o AS jsonb)) ON CONFLICT (name) DO UPDATE SET "
                      "provider = EXCLUDED.provider, update_rule = EXCLUDED.update_rule, last_update = EXCLUDED.last_update, "
                      "row_count = EXCLUDED.row_count, last_import_id = EXCLUDED.last_import_id, "
                      "last_outcome = EXCLUDED.last_outcome"),
                 {"n": name, "k": kind, "p": provider, "u": update_rule, "l": last_update, "c": row_count,
                  "i": last_import_id, "o": json.dumps(outcome or {}, ensure_ascii=False)})
