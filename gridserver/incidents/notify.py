"""Notification outbox delivery: POST each pending webhook row, mark it sent or count the failure.

Rows are written by ``workflow`` in the same transaction as the status change, so a notification
is never lost when the process dies; delivery is at-least-once (a receiver may see a repeat after a
crash between POST and commit). Handler notifications (channel ``handler``) are read by the
department's task list and stay in the table as the record.
"""

from __future__ import annotations

from sqlalchemy import text

MAX_ATTEMPTS = 5


def deliver_pending(conn, limit: int = 100, timeout: float = 5.0) -> dict:
    """Deliver up to ``limit`` pending webhooks; commits per row. Returns {"sent", "failed"}."""
    import httpx

    sent = failed = 0
    seen: list[int] = []
    with httpx.Client(timeout=timeout) as client:
        for _ in range(limit):
            with conn.begin():
                row = conn.execute(text(
                    """SELECT id, target, payload, attempts FROM incident_notifications
                       WHERE status = 'pending' AND channel = 'webhook' AND NOT (id = ANY(:seen))
                       ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"""), {"seen": seen}).first()
                if row is None:
                    break
                seen.append(row.id)
                try:
                    r = client.post(row.target, json=row.payload)
                    ok, err = r.status_code < 300, f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    ok, err = False, str(exc)[:300]
                if ok:
                    conn.execute(text("UPDATE incident_notifications SET status = 'sent', sent_at = now(), "
                                      "attempts = attempts + 1 WHERE id = :i"), {"i": row.id})
                    sent += 1
                else:
                    conn.execute(text("UPDATE incident_notifications SET attempts = attempts + 1, last_error = :e, "
                                      "status = CASE WHEN attempts + 1 >= :m THEN 'failed' ELSE 'pending' END "
                                      "WHERE id = :i"), {"i": row.id, "e": err, "m": MAX_ATTEMPTS})
                    failed += 1
    return {"sent": sent, "failed": failed}
