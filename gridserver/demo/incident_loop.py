"""The demo's incidents flowing through the loop: a simulation of operators and handlers over time.

Every demo incident gets a taxonomy item of its category, is routed like a live report (department
at the item's level, the area at that level, the rule), and then goes through the steps the people
of the demo city would take, each after a random delay (log-normal, minutes to hours), stopping at
the demo's ``now`` — so recent incidents are still open, some of them overdue:

* operators accept (median 8 min) and dispatch (median 5 min); 3 % are sent to another department
  by hand (not auto-dispatched); simple items are handled on the spot by the grid worker;
* handlers take a time scaled to the item's deadline; 5 % return a case as misrouted (re-dispatched),
  3 % decline it (escalated one level up and re-dispatched there); a case still unresolved at its
  deadline is escalated one level up (the escalation sweep's rule);
* grid workers verify within hours, operators close; 60 % of citizens' and businesses' reports are
  rated (84 % satisfied, 11 % basic, 5 % not satisfied → reopened and handled again).

All events go to ``incident_events`` (COPY), escalations to ``incident_escalations``; everything is
derived from ``seed``. Runs in a few seconds for a few thousand incidents.
"""

from __future__ import annotations

import io
import json
import math
from datetime import datetime, timedelta

import numpy as np

from gridserver.incidents import routing
from gridserver.incidents.deadlines import add_deadline, add_working_days
from gridserver.incidents.service import new_tracking_code
from gridserver.incidents.taxonomy import parse_deadline

ACTORS = {"operator": "street", "district": "district", "handler": "handler", "worker": "gridworker",
          "citizen": "citizen", "system": "system"}


def _minutes(rng, median: float, sigma: float = 0.8) -> timedelta:
    return timedelta(minutes=float(median * math.exp(rng.normal(0.0, sigma))))


def simulate(incidents: list[dict], tax, seed: int, now: datetime) -> tuple[list[dict], list[dict], list[dict]]:
    """incidents: dicts with category, created_at (aware), grid/community/street/district codes.
    Returns (incident column values, events, escalations); events/escalations carry ``k`` = index."""
    rng = np.random.default_rng([int(seed), 1010])
    rows, events, escalations = [], [], []
    dispatch_minutes = float(tax.settings.get("dispatch_minutes", 30))
    for k, inc in enumerate(incidents):
        items = tax.items(inc["category"]) or [tax.nodes[inc["category"]]]
        node = items[int(rng.integers(len(items)))]
        areas = {lv: inc.get(f"{lv}_code") for lv in ("grid", "community", "street", "district")}
        r = routing.route(tax, node, areas)
        channel = rng.choice(["staff", "citizen", "hotline", "business"], p=[0.55, 0.33, 0.07, 0.05])
        t = inc["created_at"]
        deadline = add_deadline(t, node.deadline)
        st = {"status": "reported", "department": r.department, "department_name": r.department_name,
              "route_level": r.level, "route_area_code": r.area_code, "route_rule": r.rule,
              "escalation_level": 0, "due_at": t + timedelta(minutes=dispatch_minutes), "deadline_at": deadline,
              "auto_dispatched": False, "was_returned": False, "was_declined": False, "on_time": None,
              "rating": None, "reopen_count": 0, "item_code": node.code, "workflow": node.workflow,
              "channel": "staff" if channel == "staff" else str(channel), "tracking_code": new_tracking_code()}
        for c in ("accepted_at", "dispatched_at", "started_at", "resolved_at", "verified_at", "closed_at", "rated_at"):
            st[c] = None
        ev = [(t, "citizen" if channel != "staff" else "worker", "report", None, "reported", "", {})]

        def step(at, who, action, to, note="", data=None, **sets):
            if at > now:
                return False
            ev.append((at, who, action, st["status"], to, note, data or {}))
            st.update(sets)
            st["status"] = to
            return True

        def escalate(at, reason):
            up = routing.next_level(node, st["route_level"])
            if up is None:
                return False
            if at > now:
                return False
            dep = node.departments[up]
            lvl = st["escalation_level"] + 1
            escalations.append({"k": k, "step": lvl, "from_level": st["route_level"], "to_level": up,
                                "reason": reason, "at": at})
            step(at, "system", "escalate", "escalated", f"自动升级 {reason}",
                 {"from_level": st["route_level"], "to_level": up, "department": dep, "reason": reason},
                 escalation_level=lvl, route_level=up, route_area_code=areas.get(up), department=dep,
                 department_name=tax.department_name(dep), due_at=at + timedelta(minutes=dispatch_minutes))
            return True

        hours, unit = parse_deadline(node.deadline, node.code)
        budget_h = hours if unit == "h" else 9.0 * hours  # working hours in the deadline
        t = t + _minutes(rng, 8, 0.7)
        if not step(t, "operator", "accept", "accepted", accepted_at=t,
                    due_at=deadline if node.workflow == "simple" else st["due_at"]):
            rows.append(st), events.append((k, ev))
            continue
        if node.workflow == "general":
            t = t + _minutes(rng, 5, 0.6)
            manual = rng.random() < 0.03
            if manual:
                alt = [d for d, v in tax.departments.items() if v["level"] == st["route_level"] and d != st["department"]]
                dep = alt[int(rng.integers(len(alt)))] if alt else st["department"]
            else:
                dep = st["department"]
            if not step(t, "operator", "dispatch", "dispatched", "", {"department": dep, "auto": not manual},
                        dispatched_at=t, department=dep, department_name=tax.department_name(dep),
                        auto_dispatched=not manual, due_at=deadline):
                rows.append(st), events.append((k, ev))
                continue
            u = rng.random()
            if u < 0.05:  # misrouted: returned, re-dispatched
                t = t + _minutes(rng, 40)
                if step(t, "handler", "return", "returned", "非本部门职责", was_returned=True,
                        due_at=t + timedelta(minutes=dispatch_minutes)):
                    t = t + _minutes(rng, 15)
                    step(t, "operator", "dispatch", "dispatched", "重新派遣", {"auto": False}, dispatched_at=t,
                         due_at=deadline)
            elif u < 0.08:  # declined: escalated one level and dispatched there
                t = t + _minutes(rng, 60)
                if step(t, "handler", "decline", "declined", "本级无法处置，申请上级协调", was_declined=True):
                    t = t + _minutes(rng, 10, 0.4)
                    if escalate(t, "declined") or t <= now:  # at the top level: the district dispatches again
                        t = t + _minutes(rng, 15)
                        step(t, "district", "dispatch", "dispatched", "上级派遣", {"auto": False}, dispatched_at=t,
                             due_at=add_deadline(t, node.deadline))
            if st["status"] != "dispatched":
                rows.append(st), events.append((k, ev))
                continue
        t = t + _minutes(rng, 20)
        if not step(t, "handler" if node.workflow == "general" else "worker", "start", "in_progress", started_at=t):
            rows.append(st), events.append((k, ev))
            continue
        handle = _minutes(rng, 60 * min(budget_h * 0.2, 3.0) + 20, 0.9)
        if rng.random() < 0.06:  # a hard case: runs past its deadline
            handle = (st["due_at"] - t) + _minutes(rng, 240)
        resolve_at = t + handle
        esc_at = max(st["due_at"], t + timedelta(minutes=1)) if st["due_at"] is not None else None
        if esc_at is not None and resolve_at > esc_at and esc_at <= now:
            if escalate(esc_at, "overdue"):
                t2 = esc_at + _minutes(rng, 15)
                step(t2, "district", "dispatch", "dispatched", "上级督促办理", {"auto": False}, dispatched_at=t2,
                     due_at=add_working_days(t2, 1))
                step(t2 + _minutes(rng, 10), "handler", "start", "in_progress")
            if st["status"] != "in_progress":
                rows.append(st), events.append((k, ev))
                continue
            resolve_at = max(resolve_at, ev[-1][0] + _minutes(rng, 90))
        if not step(resolve_at, "handler", "resolve", "resolved", "已处置完毕", resolved_at=resolve_at,
                    on_time=resolve_at <= st["deadline_at"],
                    due_at=add_working_days(resolve_at, 1) if node.workflow == "general" else None):
            rows.append(st), events.append((k, ev))
            continue
        t = resolve_at
        if node.workflow == "general":
            t = t + _minutes(rng, 45)
            if not step(t, "worker", "verify", "verified", "回访核实", verified_at=t, due_at=add_working_days(t, 1)):
                rows.append(st), events.append((k, ev))
                continue
        t = t + _minutes(rng, 20)
        if not step(t, "operator", "close", "closed", closed_at=t, due_at=None):
            rows.append(st), events.append((k, ev))
            continue
        if channel in ("citizen", "business", "hotline") and rng.random() < 0.6:
            t = t + _minutes(rng, 180)
            rating = rng.choice(["satisfied", "basic", "unsatisfied"], p=[0.84, 0.11, 0.05])
            if step(t, "citizen", "rate", "rated", "", {"rating": str(rating)}, rating=str(rating), rated_at=t) \
                    and rating == "unsatisfied":
                due = add_deadline(t, node.deadline)
                step(t, "system", "reopen", "dispatched", "群众不满意，重新办理", reopen_count=1, closed_at=None,
                     resolved_at=None, verified_at=None, dispatched_at=t, due_at=due, deadline_at=due)
                t2 = t + _minutes(rng, 300)
                r_at = t2 + _minutes(rng, 120)
                if step(t2, "handler", "start", "in_progress") and \
                        step(r_at, "handler", "resolve", "resolved", "再次处置", resolved_at=r_at, due_at=None):
                    t3 = r_at + _minutes(rng, 60)
                    step(t3, "operator", "close", "closed", closed_at=t3, due_at=None)
        rows.append(st), events.append((k, ev))
    flat = []
    for k, evs in events:
        for at, who, action, f, to, note, data in evs:
            flat.append({"k": k, "at": at, "actor": ACTORS[who], "action": action, "from_status": f, "to_status": to,
                         "note": note, "data": data})
    return rows, flat, escalations


def _tsv(values) -> str:
    out = []
    for v in values:
        if v is None:
            out.append("\\N")
        elif isinstance(v, datetime):
            out.append(v.isoformat())
        elif isinstance(v, (dict, list)):
            out.append(json.dumps(v, ensure_ascii=False).replace("\\", "\\\\"))
        else:
            out.append(str(v).replace("\t", " ").replace("\n", " ").replace("\\", "\\\\"))
    return "\t".join(out) + "\n"


COLUMNS = ["id", "category", "item_code", "taxonomy_version", "workflow", "channel", "description", "status", "geom",
           "input_x", "input_y", "input_crs", "grid_code", "community_code", "street_code", "district_code", "source",
           "created_at", "updated_at", "department", "department_name", "route_level", "route_area_code", "route_rule",
           "due_at", "deadline_at", "escalation_level", "auto_dispatched", "was_returned", "was_declined", "on_time",
           "rating", "reopen_count", "tracking_code", "accepted_at", "dispatched_at", "started_at", "resolved_at",
           "verified_at", "closed_at", "rated_at"]


def load_loop(engine, inc, found, seed: int, now: datetime) -> int:
    """Simulate the loop for the located demo incidents and COPY incidents, events and escalations in
    (replacing the previous demo rows). ``found``: per row (grid, community, street, district) or None."""
    from sqlalchemy import text

    from gridserver.incidents import taxonomy

    keep = [(r, codes) for (_, r), codes in zip(inc.iterrows(), found) if codes is not None]
    base = [{"category": r["category"], "created_at": r["created_at"].to_pydatetime(), "grid_code": c[0],
             "community_code": c[1], "street_code": c[2], "district_code": c[3]} for r, c in keep]
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incidents WHERE source = 'demo'"))
        tax = taxonomy.active(conn)
        ids = [r[0] for r in conn.execute(text("SELECT nextval('incidents_id_seq') FROM generate_series(1, :n)"),
                                          {"n": len(base)})] if base else []
    rows, events, escalations = simulate(base, tax, seed, now)
    buf = io.StringIO()
    for (r, c), b, st, iid in zip(keep, base, rows, ids):
        updated = max(x for x in (b["created_at"], st["accepted_at"], st["dispatched_at"], st["started_at"],
                                  st["resolved_at"], st["verified_at"], st["closed_at"], st["rated_at"])
                      if x is not None)
        buf.write(_tsv([iid, b["category"], st["item_code"], tax.version, st["workflow"], st["channel"],
                        r["description"], st["status"], f"SRID=4326;POINT({r['lon']!r} {r['lat']!r})", r["lon"], r["lat"],
                        "wgs84", c[0], c[1], c[2], c[3], "demo", b["created_at"], updated, st["department"],
                        st["department_name"], st["route_level"], st["route_area_code"], st["route_rule"],
                        st["due_at"], st["deadline_at"], st["escalation_level"], st["auto_dispatched"],
                        st["was_returned"], st["was_declined"], st["on_time"], st["rating"], st["reopen_count"],
                        st["tracking_code"], st["accepted_at"], st["dispatched_at"], st["started_at"],
                        st["resolved_at"], st["verified_at"], st["closed_at"], st["rated_at"]]))
    ebuf = io.StringIO()
    for e in events:
        ebuf.write(_tsv([ids[e["k"]], e["at"], e["actor"], e["action"], e["from_status"], e["to_status"], e["note"],
                         e["data"]]))
    sbuf = io.StringIO()
    for s in escalations:
        sbuf.write(_tsv([ids[s["k"]], s["step"], s["from_level"], s["to_level"], s["reason"], s["at"]]))
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()
        with cur.copy(f"COPY incidents ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            copy.write(buf.getvalue())
        with cur.copy("COPY incident_events (incident_id, at, actor, action, from_status, to_status, note, data) "
                      "FROM STDIN") as copy:
            copy.write(ebuf.getvalue())
        with cur.copy("COPY incident_escalations (incident_id, step, from_level, to_level, reason, at) FROM STDIN") as copy:
            copy.write(sbuf.getvalue())
        raw.commit()
    finally:
        raw.close()
    from gridserver.incidents.stats import refresh_rollup

    with engine.begin() as conn:  # the demo's rows carry past update times: roll every day up again
        refresh_rollup(conn, full=True)
    return len(rows)
