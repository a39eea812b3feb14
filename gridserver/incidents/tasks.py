"""Periodic jobs of the incident loop, run by ``gridserver/jobs`` workers (see its docs).

* ``incidents.escalate`` every minute: ``escalation.escalate_due`` (idempotent, SKIP LOCKED, so any
  number of workers may run it);
* ``incidents.notify`` every 30 s: deliver pending webhooks from the outbox;
* ``incidents.rollup`` every 5 min: refresh the KPI roll-up for days whose incidents changed;
* ``incidents.calendar_check`` daily: warn (log and job result) when a year within 60 days has no
  working-day calendar (see ``deadlines.calendar_status``).
"""

from __future__ import annotations

from gridserver.jobs import periodic, task


@periodic("incidents.escalate", every_seconds=60)
@task("incidents.escalate")
def escalate(ctx):
    from gridserver.incidents.escalation import escalate_due

    with ctx.engine.connect() as conn:
        done = escalate_due(conn)
    return {"escalated": len(done), "incidents": [d["incident_id"] for d in done][:100]}


@periodic("incidents.notify", every_seconds=30)
@task("incidents.notify")
def notify(ctx):
    from gridserver.incidents.notify import deliver_pending

    with ctx.engine.connect() as conn:
        return deliver_pending(conn)


@periodic("incidents.rollup", every_seconds=300)
@task("incidents.rollup")
def rollup(ctx):
    from gridserver.incidents.stats import refresh_rollup

    with ctx.engine.begin() as conn:
        return refresh_rollup(conn)


@periodic("incidents.calendar_check", every_seconds=86_400)
@task("incidents.calendar_check")
def calendar_check(ctx):
    import logging

    from gridserver.incidents.deadlines import calendar_status, uncovered_message

    with ctx.engine.connect() as conn:
        st = calendar_status(conn)
    if st["uncovered"]:
        logging.getLogger(__name__).warning(uncovered_message(st["uncovered"]))
    return st
