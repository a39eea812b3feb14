"""Citizen tracking (进度查询) and rating by tracking code: plain wording, no personal data.

The public view shows the category, the street/community, the responsible department, each step
in words a citizen understands, the due time and the rating — never the reporter, contact details,
the description (which may name people) or the exact point.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text

from gridserver.auth.users import User
from gridserver.errors import NotFound
from gridserver.incidents import workflow
from gridserver.incidents.service import category_label

_STEP_WORDS = {
    "report": "收到您的诉求", "accept": "已受理", "dispatch": "已转交责任部门", "start": "责任部门开始处理",
    "return": "重新安排处理部门", "decline": "转交上级部门协调", "escalate": "已提交上级部门协调处理",
    "resolve": "处理完毕", "verify": "已回访核实", "rework": "核实未通过，继续处理", "close": "已办结",
    "rate": "收到您的评价", "reopen": "根据您的评价重新办理", "supervise": "已列入督办", "merge": "与同一问题合并处理",
    "merged_in": "合并了其他群众反映的同一问题",
}
#: Events a citizen sees (internal notes, relocations and comments are not shown).
_PUBLIC_ACTIONS = tuple(_STEP_WORDS)


def _find(conn, code: str) -> dict:
    row = conn.execute(text(
        """SELECT i.id, i.status, i.category, i.item_code, i.department_name, i.due_at, i.deadline_at,
                  i.created_at, i.updated_at, i.rating, i.merged_into, i.reporter_id, i.tracking_code,
                  c.name AS community_name, s.name AS street_name
           FROM incidents i
           LEFT JOIN admin_areas c ON c.code = i.community_code AND c.valid_to IS NULL
           LEFT JOIN admin_areas s ON s.code = i.street_code AND s.valid_to IS NULL
           WHERE i.tracking_code = :c"""), {"c": (code or "").strip().upper()}).mappings().first()
    if row is None:
        raise NotFound(f"查询码 {code!r} 不存在 no report with this tracking code")
    return dict(row)


def public_view(conn, code: str) -> dict:
    inc = _find(conn, code)
    followed = inc
    if inc["merged_into"]:  # merged reports show the progress of the incident they joined
        followed = dict(conn.execute(text(
            "SELECT id, status, department_name, due_at, rating, updated_at FROM incidents WHERE id = :i"),
            {"i": inc["merged_into"]}).mappings().one())
    ids = [inc["id"]] + ([followed["id"]] if followed is not inc else [])
    steps = [{"at": r.at, "step": _STEP_WORDS.get(r.action, r.action), "status": r.to_status,
              "status_text": workflow.CITIZEN_WORDING.get(r.to_status)}
             for r in conn.execute(text(
                 "SELECT at, action, to_status FROM incident_events WHERE incident_id = ANY(:ids) "
                 "AND action = ANY(:acts) ORDER BY at, id"), {"ids": ids, "acts": list(_PUBLIC_ACTIONS)})]
    status = followed["status"]
    return {"tracking_code": inc["tracking_code"], "category": category_label(inc["category"]),
            "item": category_label(inc["item_code"]) if inc["item_code"] else None,
            "street": inc["street_name"], "community": inc["community_name"],
            "status": status, "status_text": workflow.CITIZEN_WORDING.get(status, status),
            "department": followed["department_name"], "due_at": followed["due_at"],
            "reported_at": inc["created_at"], "updated_at": followed["updated_at"],
            "merged": bool(inc["merged_into"]), "rating": followed["rating"], "steps": steps,
            "can_rate": status == "closed"}


def rate(conn, code: str, rating: str | None, comment: str = "", now: datetime | None = None) -> dict:
    """Rate the report (or the incident it was merged into) as its reporter; "unsatisfied" may reopen."""
    inc = _find(conn, code)
    target = inc["merged_into"] or inc["id"]
    who = User(id=inc["reporter_id"], username=f"tracking:{inc['tracking_code']}", full_name="", role="citizen",
               scope_code=None, department=None, active=True, created_at=inc["created_at"])
    row = workflow.incident_row(conn, target)
    if row["reporter_id"] != inc["reporter_id"]:  # merged: rate as a reporter of a merged report
        who = User(id=row["reporter_id"], username=who.username, full_name="", role="citizen", scope_code=None,
                   department=None, active=True, created_at=inc["created_at"])
    result = workflow.apply_action(conn, target, "rate", {"rating": rating, "note": comment}, who, now=now)
    return {**public_view(conn, code), "reopened": bool(result.get("reopened"))}
