"""The incident loop (闭环): a state machine with an append-only event log.

States: reported 已上报 → accepted 已受理 → dispatched 已派遣 → in_progress 处置中 → resolved 已处置
→ verified 已核查 (the grid worker's return visit) → closed 已结案 → rated 已评价; off the main path
returned 已退回 (misrouted, back to the dispatcher), declined 无法办理 (this level cannot handle it:
escalated one level up), escalated 已升级, merged 已合并 (a duplicate, folded into another).

Workflows: ``general`` (9 nodes, the path above) and ``simple`` (5 nodes: report → accept → handle
→ resolve → close, handled on the spot without dispatch or return visit).

Every action is one call by a role allowed to make it, checked against the caller's scope (grid
workers and operators: the incident's grid lies in their scope; department handlers: the incident
is routed to their department). An action not allowed in the current state → 409 ``illegal_transition``
listing the allowed ones; a role that may not → 403. Each action writes one event (actor, time, note,
data, attachments) and queues notifications (the reporter's webhook on a status change; the
department on dispatch, escalation and supervision).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from gridserver.auth.deps import user_in_scope
from gridserver.auth.users import User
from gridserver.errors import Conflict, Forbidden, InvalidInput, NotFound
from gridserver.incidents import routing, taxonomy
from gridserver.incidents.deadlines import add_deadline, add_working_days, load_overrides

STATUS_LABELS = {
    "reported": "已上报", "accepted": "已受理", "dispatched": "已派遣", "in_progress": "处置中",
    "returned": "已退回", "declined": "无法办理", "resolved": "已处置", "verified": "已核查",
    "closed": "已结案", "rated": "已评价", "escalated": "已升级", "merged": "已合并",
}
#: What a citizen reads on the tracking page: plain words, no internal jargon.
CITIZEN_WORDING = {
    "reported": "您的诉求已提交，等待受理",
    "accepted": "已受理，正在安排处理部门",
    "dispatched": "已转交责任部门处理",
    "in_progress": "责任部门正在处理",
    "returned": "正在重新安排处理部门",
    "declined": "正在转交上级部门协调处理",
    "escalated": "已提交上级部门协调处理",
    "resolved": "已处理完毕，等待回访核实",
    "verified": "已回访核实，即将办结",
    "closed": "已办结，欢迎评价",
    "rated": "已办结并评价，感谢您的反馈",
    "merged": "与其他群众反映的同一问题合并处理",
}
OPEN = ("reported", "accepted", "dispatched", "in_progress", "returned", "declined", "escalated", "resolved", "verified")
FINISHED = ("closed", "rated", "merged")
RATINGS = {"satisfied": "满意", "basic": "基本满意", "unsatisfied": "不满意"}

OPERATORS = ("admin", "district_operator", "street_operator", "community_operator")
HANDLERS = ("dept_handler", "grid_worker") + OPERATORS
SUPERVISORS = ("admin", "district_operator")
STAFF = HANDLERS


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    sources: tuple[str, ...]
    target: str | None  # None: the status does not change
    roles: tuple[str, ...]
    needs_note: bool = False
    workflows: tuple[str, ...] = ("general", "simple")


#: Every action; ``start`` and ``close`` differ between the two workflows.
ACTIONS: list[Action] = [
    Action("accept", "受理", ("reported",), "accepted", OPERATORS),
    Action("dispatch", "派遣", ("accepted", "returned", "escalated", "declined"), "dispatched", OPERATORS),
    Action("start", "开始处置", ("dispatched",), "in_progress", HANDLERS, workflows=("general",)),
    Action("start", "开始处置", ("accepted", "dispatched"), "in_progress", HANDLERS, workflows=("simple",)),
    Action("return", "退回", ("dispatched", "in_progress"), "returned", HANDLERS, needs_note=True),
    Action("decline", "申请上级协调", ("dispatched", "in_progress"), "declined", HANDLERS, needs_note=True),
    Action("resolve", "处置完毕", ("in_progress",), "resolved", HANDLERS, needs_note=True),
    Action("verify", "核查通过", ("resolved",), "verified", ("grid_worker",) + OPERATORS, workflows=("general",)),
    Action("rework", "核查不通过", ("resolved",), "in_progress", ("grid_worker",) + OPERATORS, needs_note=True),
    Action("close", "结案", ("verified",), "closed", OPERATORS, workflows=("general",)),
    Action("close", "结案", ("resolved",), "closed", OPERATORS, workflows=("simple",)),
    Action("rate", "评价", ("closed",), "rated", ("citizen",) + OPERATORS),
    Action("escalate", "升级", ("reported", "accepted", "dispatched", "in_progress", "returned", "declined",
                                "escalated"),
           "escalated", OPERATORS, needs_note=True),
    Action("supervise", "督办", OPEN, None, SUPERVISORS, needs_note=True),
    Action("merge", "合并", ("reported", "accepted", "dispatched", "returned", "escalated"), "merged", OPERATORS),
    Action("relocate", "改位置", OPEN, None, ("grid_worker",) + OPERATORS),
    Action("recategorize", "改分类", OPEN, None, OPERATORS),
    Action("comment", "备注", OPEN + FINISHED, None, STAFF, needs_note=True),
]
_BY_WORKFLOW: dict[tuple[str, str], Action] = {(a.name, wf): a for a in ACTIONS for wf in a.workflows}
ACTION_NAMES = sorted({k[0] for k in _BY_WORKFLOW})


def action_for(name: str, workflow: str) -> Action | None:
    return _BY_WORKFLOW.get((name, workflow))


def allowed_actions(status: str, workflow: str, user: User | None = None, incident: dict | None = None) -> list[str]:
    """Actions possible from ``status`` (for ``user`` when given: role and scope)."""
    out = []
    for name in ACTION_NAMES:
        a = action_for(name, workflow)
        if a is None or status not in a.sources:
            continue
        if user is not None and (user.role not in a.roles or
                                 (incident is not None and not _may_act(user, incident, a))):
            continue
        out.append(name)
    return out


def _may_act(user: User, inc: dict, a: Action) -> bool:
    if user.role == "admin" and user.scope_code is None:
        return True
    if user.role == "citizen":
        return inc["reporter_id"] == user.id
    if user.role == "dept_handler":
        if inc["department"] is None or user.department not in (inc["department"], inc["department_name"]):
            return False
        return user.scope_code is None or user_in_scope(user, inc["grid_code"] or "")
    return user_in_scope(user, inc["grid_code"] or inc["route_area_code"])


# --- events and notifications ---------------------------------------------------------------------
def log_event(conn, incident_id: int, action: str, *, actor: User | None, from_status: str | None,
              to_status: str | None, note: str = "", data: dict | None = None, attachments: list | None = None,
              at: datetime | None = None) -> int:
    """Append one event (the log is append-only: a trigger refuses UPDATE and DELETE)."""
    return conn.execute(text(
        """INSERT INTO incident_events (incident_id, at, actor_id, actor, action, from_status, to_status, note,
                                        data, attachments)
           VALUES (:id, COALESCE(:at, now()), :uid, :actor, :action, :f, :t, :note, CAST(:data AS jsonb),
                   CAST(:att AS jsonb)) RETURNING id"""),
        {"id": incident_id, "at": at, "uid": actor.id if actor else None, "actor": actor.username if actor else "system",
         "action": action, "f": from_status, "t": to_status, "note": note or "", "data": json.dumps(data or {},
                                                                                                   default=str),
         "att": json.dumps(attachments or [])}).scalar_one()


def queue_notifications(conn, inc: dict, action: str, to_status: str | None, note: str, at: datetime) -> None:
    """Outbox rows: the reporter's webhook on a status change; the department on dispatch/escalate/supervise."""
    rows = []
    if to_status and to_status != inc["status"]:
        payload = {"event": "status_changed", "tracking_code": inc["tracking_code"], "status": to_status,
                   "status_label": STATUS_LABELS.get(to_status), "message": CITIZEN_WORDING.get(to_status),
                   "at": at.isoformat()}
        for url in _webhooks(conn, inc["id"]):
            rows.append({"c": "webhook", "t": url, "p": json.dumps(payload)})
    if action in ("dispatch", "escalate", "supervise", "reopen") and inc.get("department"):
        rows.append({"c": "handler", "t": inc["department"],
                     "p": json.dumps({"event": action, "incident_id": inc["id"], "note": note, "at": at.isoformat(),
                                      "due_at": inc.get("due_at").isoformat() if inc.get("due_at") else None})})
    if rows:
        conn.execute(text("INSERT INTO incident_notifications (incident_id, channel, target, payload) "
                          "VALUES (:i, :c, :t, CAST(:p AS jsonb))"), [{**r, "i": inc["id"]} for r in rows])


def _webhooks(conn, incident_id: int) -> list[str]:
    """Webhooks of this incident's reporter and of every report merged into it."""
    return [r[0] for r in conn.execute(text(
        "SELECT DISTINCT webhook_url FROM incidents WHERE (id = :id OR merged_into = :id) AND webhook_url IS NOT NULL"),
        {"id": incident_id})]


# --- the transition --------------------------------------------------------------------------------
_ROW_SQL = """SELECT id, status, workflow, category, item_code, department, department_name, route_level,
                      route_area_code, grid_code, community_code, street_code, district_code, reporter_id,
                      due_at, deadline_at, escalation_level, tracking_code, closed_at, reopen_count,
                      merged_into, created_at
               FROM incidents WHERE id = :id"""
_LOCK_SQL = text(_ROW_SQL + " FOR UPDATE")


def incident_row(conn, incident_id: int) -> dict:
    """The workflow fields of one incident (NotFound when absent)."""
    row = conn.execute(text(_ROW_SQL), {"id": incident_id}).mappings().first()
    if row is None:
        raise NotFound(f"事件不存在 no incident with id {incident_id}")
    return dict(row)


def _areas(inc: dict) -> dict:
    return {lv: inc[f"{lv}_code"] for lv in ("grid", "community", "street", "district")}


def apply_action(conn, incident_id: int, action: str, body: dict, user: User, now: datetime | None = None) -> dict:
    """Perform ``action`` on the incident as ``user``; returns {"event_id", "status", "allowed_actions"}.

    Raises NotFound (404), InvalidInput (422: unknown action, missing note/fields), Forbidden (403),
    Conflict (409, ``allowed_actions`` in the body). Does not commit.
    """
    now = now or datetime.now(timezone.utc)
    if action not in ACTION_NAMES:
        raise InvalidInput(f"未知操作 unknown action {action!r}; actions: {', '.join(ACTION_NAMES)}")
    row = conn.execute(_LOCK_SQL, {"id": incident_id}).mappings().first()
    if row is None:
        raise NotFound(f"事件不存在 no incident with id {incident_id}")
    inc = dict(row)
    a = action_for(action, inc["workflow"])
    if a is None or inc["status"] not in a.sources:
        allowed = allowed_actions(inc["status"], inc["workflow"])
        raise Conflict(f"事件 {incident_id} 当前状态为 {inc['status']}（{STATUS_LABELS.get(inc['status'])}），不能执行 "
                       f"{action}: not allowed from {inc['status']} in the {inc['workflow']} workflow; "
                       f"allowed: {', '.join(allowed) or 'none'}",
                       code="illegal_transition", extra={"allowed_actions": allowed, "status": inc["status"]})
    if user.role not in a.roles:
        raise Forbidden(f"角色 {user.role} 不能执行 {action} role {user.role!r} may not {action}; "
                        f"allowed roles: {', '.join(a.roles)}")
    if not _may_act(user, inc, a):
        raise Forbidden(f"事件 {incident_id}（网格 {inc['grid_code']}，部门 {inc['department']}）不在用户 "
                        f"{user.username} 的职责范围内 outside the scope/department of {user.username!r}")
    note = (body.get("note") or "").strip()
    if a.needs_note and not note:
        raise InvalidInput(f"操作 {action} 需要填写说明 'note' is required for {action}")
    if len(note) > 2000:
        raise InvalidInput(f"note is {len(note)} characters, at most 2000 are allowed")
    tax = taxonomy.active(conn)
    sets: dict = {}
    data: dict = {}
    target = a.target
    overrides = load_overrides(conn)

    if action == "accept":
        sets.update(accepted_at=now)
    elif action == "dispatch":
        dep = body.get("department")
        if dep:
            if dep not in tax.departments:
                raise InvalidInput(f"unknown department {dep!r}; see GET /api/v1/taxonomy/departments")
        elif inc["department"] is None:
            raise InvalidInput("该事件没有自动派遣部门，请指定 'department' (manual dispatch queue)")
        dep = dep or inc["department"]
        auto = dep == inc["department"] and inc["escalation_level"] == 0 and inc["reopen_count"] == 0
        level = body.get("level") or (inc["route_level"] if dep == inc["department"]
                                      else tax.departments[dep]["level"])
        due = _parse_due(body.get("due_at")) or _handling_due(tax, inc, now, overrides)
        sets.update(department=dep, department_name=tax.department_name(dep), route_level=level,
                    route_area_code=_areas(inc).get(level), dispatched_at=now, due_at=due,
                    auto_dispatched=auto if inc["reopen_count"] == 0 and inc["escalation_level"] == 0 else None)
        if sets["auto_dispatched"] is None:
            sets.pop("auto_dispatched")
        if dep != inc["department"]:
            sets["route_rule"] = json.dumps({"rule": "manual", "by": user.username, "department": dep,
                                             "level": level, "taxonomy_version": tax.version})
        sets["manual_reason"] = None
        data.update(department=dep, auto=auto)
    elif action == "start":
        sets.update(started_at=now, assignee_id=user.id)
    elif action == "return":
        sets.update(was_returned=True, due_at=now + timedelta(minutes=float(tax.settings["dispatch_minutes"])))
    elif action == "decline":
        sets.update(was_declined=True)
    elif action == "resolve":
        sets.update(resolved_at=now)
        if inc["workflow"] == "general":
            sets["due_at"] = add_working_days(now, int(tax.settings.get("verify_working_days", 1)), overrides)
        else:
            sets["due_at"] = None
        sets["on_time"] = inc["deadline_at"] is None or now <= inc["deadline_at"]
    elif action == "verify":
        sets.update(verified_at=now, due_at=add_working_days(now, 1, overrides))
    elif action == "rework":
        sets.update(resolved_at=None, due_at=inc["deadline_at"])
    elif action == "close":
        sets.update(closed_at=now, due_at=None)
    elif action == "rate":
        rating = body.get("rating")
        if rating not in RATINGS:
            raise InvalidInput(f"rating must be one of {', '.join(RATINGS)} (满意/基本满意/不满意); got {rating!r}")
        sets.update(rating=rating, rating_comment=note or None, rated_at=now)
        data["rating"] = rating
    elif action == "escalate":
        return _escalate(conn, inc, tax, user, note, now, reason="manual")
    elif action == "supervise":
        due = _parse_due(body.get("due_at"))
        if due is None:
            raise InvalidInput("督办需要新的时限 'due_at' (ISO 8601) is required for supervise")
        sets.update(supervised=True, supervision_note=note, due_at=due, deadline_at=due)
        data["due_at"] = due.isoformat()
    elif action == "merge":
        into = body.get("into")
        if not isinstance(into, int) or into == incident_id:
            raise InvalidInput("merge needs 'into': the id of another incident")
        other = conn.execute(text("SELECT status, category FROM incidents WHERE id = :i FOR UPDATE"), {"i": into}).first()
        if other is None:
            raise NotFound(f"merge target incident {into} does not exist")
        if other.status == "merged":
            raise Conflict(f"incident {into} is itself merged; merge into the incident it was merged into")
        sets.update(merged_into=into, due_at=None)
        conn.execute(text("UPDATE incidents SET merged_into = :into WHERE merged_into = :me"),
                     {"into": into, "me": incident_id})
        log_event(conn, into, "merged_in", actor=user, from_status=other.status, to_status=other.status,
                  note=note, data={"from": incident_id}, at=now)
        data["into"] = into
    elif action in ("relocate", "recategorize"):
        return _reroute(conn, inc, tax, action, body, user, note, now)

    event_id = _commit_transition(conn, inc, action, target, sets, user, note, data, now, body.get("attachments"))
    result = {"event_id": event_id, "status": target or inc["status"]}
    if action == "rate" and body.get("rating") == "unsatisfied":
        window = timedelta(days=float(tax.settings.get("reopen_days", 7)))
        if inc["closed_at"] is not None and now - inc["closed_at"] <= window:
            result = _reopen(conn, {**inc, "status": "rated"}, tax, user, note, now)
    return result


def _commit_transition(conn, inc, action, target, sets, user, note, data, now, attachments=None) -> int:
    sets = dict(sets)
    if target:
        sets["status"] = target
    sets["updated_at"] = now
    cols = ", ".join(f"{k} = :{k}" if k != "route_rule" else "route_rule = CAST(:route_rule AS jsonb)" for k in sets)
    conn.execute(text(f"UPDATE incidents SET {cols} WHERE id = :id"), {**sets, "id": inc["id"]})
    event_id = log_event(conn, inc["id"], action, actor=user, from_status=inc["status"], to_status=target or inc["status"],
                         note=note, data=data, attachments=attachments, at=now)
    queue_notifications(conn, {**inc, **sets, "status": inc["status"]}, action, target, note, now)
    if target and target != inc["status"]:
        # merged reports follow the incident they were merged into
        conn.execute(text("UPDATE incidents SET updated_at = :now WHERE merged_into = :id"), {"now": now, "id": inc["id"]})
    return event_id


def _parse_due(value) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        due = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"due_at must be an ISO 8601 datetime; got {value!r}") from None
    return due if due.tzinfo else due.replace(tzinfo=timezone(timedelta(hours=8)))


def _handling_due(tax, inc, now, overrides) -> datetime:
    code = inc["item_code"] or inc["category"]
    node = tax.nodes.get(code)
    return add_deadline(now, node.deadline if node else "3wd", overrides)


def _reopen(conn, inc, tax, user, note, now) -> dict:
    """A "not satisfied" rating within the window reopens the case to the same department."""
    due = _handling_due(tax, inc, now, load_overrides(conn))
    sets = {"rating": "unsatisfied", "reopen_count": inc["reopen_count"] + 1, "closed_at": None,
            "resolved_at": None, "verified_at": None, "dispatched_at": now, "due_at": due, "deadline_at": due}
    event_id = _commit_transition(conn, inc, "reopen", "dispatched", sets, None, f"群众不满意，重新办理: {note}",
                                  {"reopen_count": sets["reopen_count"]}, now)
    return {"event_id": event_id, "status": "dispatched", "reopened": True}


def _escalate(conn, inc, tax, user, note, now, reason: str) -> dict:
    """One level up: the next level's department, due to be dispatched again within dispatch_minutes."""
    node = tax.nodes.get(inc["item_code"] or inc["category"])
    cur = inc["route_level"] or (node.start_level if node else None)
    up = routing.next_level(node, cur) if node else None
    if up is None:
        raise Conflict(f"事件 {inc['id']} 已在最高层级 {cur}，无法再升级 already at the top level ({cur})",
                       code="top_level", extra={"allowed_actions": allowed_actions(inc["status"], inc["workflow"])})
    step = inc["escalation_level"] + 1
    inserted = conn.execute(text(
        """INSERT INTO incident_escalations (incident_id, step, from_level, to_level, reason, at)
           VALUES (:i, :s, :f, :t, :r, :at) ON CONFLICT (incident_id, step) DO NOTHING RETURNING id"""),
        {"i": inc["id"], "s": step, "f": cur, "t": up, "r": reason, "at": now}).first()
    if inserted is None:  # another run did this step already
        return {"event_id": None, "status": inc["status"], "skipped": True}
    dep = node.departments[up]
    sets = {"escalation_level": step, "route_level": up, "route_area_code": _areas(inc).get(up),
            "department": dep, "department_name": tax.department_name(dep),
            "due_at": now + timedelta(minutes=float(tax.settings["dispatch_minutes"]))}
    data = {"reason": reason, "from_level": cur, "to_level": up, "department": dep, "step": step,
            "from_department": inc["department"]}
    event_id = _commit_transition(conn, inc, "escalate", "escalated", sets, user, note or reason, data, now)
    return {"event_id": event_id, "status": "escalated", "to_level": up, "department": dep}


def _reroute(conn, inc, tax, action, body, user, note, now) -> dict:
    """Staff move the location or change the category: re-locate, re-route, log both decisions."""
    from gridserver.areas.locate import locate_point

    sets, data = {}, {}
    areas = _areas(inc)
    code = inc["item_code"] or inc["category"]
    if action == "relocate":
        if body.get("lon") is None or body.get("lat") is None:
            raise InvalidInput("relocate needs lon and lat (and optionally crs)")
        loc = locate_point(conn, float(body["lon"]), float(body["lat"]), body.get("crs") or "wgs84")
        areas = {lv: loc.code(lv) for lv in ("grid", "community", "street", "district")}
        conn.execute(text("UPDATE incidents SET geom = ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), input_x = :x, "
                          "input_y = :y, input_crs = :crs WHERE id = :id"),
                     {"lon": loc.lon, "lat": loc.lat, "x": float(body["lon"]), "y": float(body["lat"]),
                      "crs": loc.input_crs, "id": inc["id"]})
        sets.update({f"{lv}_code": c for lv, c in areas.items()})
        data.update(lon=loc.lon, lat=loc.lat, from_grid=inc["grid_code"], to_grid=areas["grid"])
    else:
        new = body.get("category")
        if not new:
            raise InvalidInput("recategorize needs 'category' (a category or item code)")
        node = tax.node(new)
        code = node.code
        sets.update(category=node.parent or node.code, item_code=node.code if node.is_item else None,
                    workflow=node.workflow, deadline_at=add_deadline(inc["created_at"], node.deadline,
                                                                     load_overrides(conn)))
        data.update(from_category=inc["item_code"] or inc["category"], to_category=new)
    node = tax.node(code)
    level = inc["route_level"] if inc["escalation_level"] else node.start_level
    r = routing.route(tax, node, areas, level)
    if r.department != inc["department"] or r.area_code != inc["route_area_code"]:
        sets.update(r.as_columns())
        sets["route_rule"] = json.dumps(r.rule)
        data.update(rerouted=True, from_department=inc["department"], to_department=r.department)
    else:
        data["rerouted"] = False
    event_id = _commit_transition(conn, inc, action, None, sets, user, note, data, now)
    return {"event_id": event_id, "status": inc["status"], **{k: v for k, v in data.items() if k != "lon"}}


def events(conn, incident_id: int) -> list[dict]:
    rows = conn.execute(text(
        """SELECT id, at, actor, action, from_status, to_status, note, data, attachments
           FROM incident_events WHERE incident_id = :id ORDER BY id"""), {"id": incident_id}).mappings().all()
    return [{**dict(r), "to_status_label": STATUS_LABELS.get(r["to_status"])} for r in rows]
