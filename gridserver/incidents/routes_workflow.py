"""HTTP routes of the incident loop: actions, event log, tasks, attachments, tracking, duplicates.

Thin: the rules are in ``workflow`` (state machine), ``attachments``, ``duplicates`` and ``tracking``.
"""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, File, Form, Path, Query, Response, UploadFile
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridserver.auth.deps import current_user
from gridserver.auth.users import User
from gridserver.db.engine import get_session
from gridserver.db.idempotency import Idempotency, idempotency
from gridserver.errors import Forbidden, InvalidInput, NotFound
from gridserver.incidents import attachments, duplicates, service, taxonomy, tracking, workflow
from gridserver.incidents.schemas import IncidentIn
from gridserver.limits import MB, LimitedBodyRoute, max_body

router = APIRouter(tags=["事件流转 incident workflow"], route_class=LimitedBodyRoute)

#: The whole multipart body of one upload: two videos at their limit, plus the form around them.
UPLOAD_MAX_BODY = 2 * attachments.MAX_VIDEO + MB


def _incident_with_actions(session, incident_id: int, user: User, result: dict | None = None) -> dict:
    out = service.get_incident(session, incident_id)
    inc = workflow.incident_row(session, incident_id)
    out["allowed_actions"] = workflow.allowed_actions(out["status"], out["workflow"], user, inc)
    out["status_label"] = workflow.STATUS_LABELS.get(out["status"])
    if result:
        out["event_id"] = result.get("event_id")
        if result.get("reopened"):
            out["reopened"] = True
    return out


@router.post("/api/v1/incidents/{incident_id}/actions/{action}", summary="办理操作 act on an incident")
def act(incident_id: int, action: str = Path(..., description=f"one of {', '.join(workflow.ACTION_NAMES)}"),
        body: dict = Body(default_factory=dict, examples=[{"note": "已派遣", "department": "s_zf"}]),
        session: Session = Depends(get_session, scope="function"), user: User = Depends(current_user),
        idem: Idempotency = Depends(idempotency)):
    """One step of the loop. 200 with the incident (its ``allowed_actions`` next); 409 with
    ``allowed_actions`` when the action is not possible in the current state; 403 when the caller's
    role or scope may not; 422 for a missing note or bad fields."""
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object like {\"note\": \"...\"}")
    if (replay := idem.replay(session, user)) is not None:
        return replay
    result = workflow.apply_action(session, incident_id, action, body, user)
    out = _incident_with_actions(session, incident_id, user, result)
    idem.save(session, out, 200)
    session.commit()
    return out


@router.get("/api/v1/incidents/{incident_id}/events", summary="事件日志 the event log of an incident")
def events(incident_id: int, session: Session = Depends(get_session, scope="function"),
           user: User = Depends(current_user)):
    """Every step in order: actor, time, action, statuses, note, data, attachments (append-only)."""
    service.get_incident(session, incident_id, user)
    return {"incident_id": incident_id, "events": workflow.events(session, incident_id)}


@router.get("/api/v1/incidents/{incident_id}/actions", summary="可执行操作 actions the caller may take now")
def actions(incident_id: int, session: Session = Depends(get_session, scope="function"),
            user: User = Depends(current_user)):
    out = _incident_with_actions(session, incident_id, user)
    return {"incident_id": incident_id, "status": out["status"], "allowed_actions": out["allowed_actions"]}


_TASKS = """
    SELECT i.id FROM incidents i
    WHERE i.merged_into IS NULL AND {cond}
    ORDER BY i.due_at NULLS LAST, i.id LIMIT :limit
"""


@router.get("/api/v1/tasks", summary="我的待办 the caller's open tasks, by due time")
def tasks(limit: int = Query(200, ge=1, le=1000), session: Session = Depends(get_session, scope="function"),
          user: User = Depends(current_user)):
    """Department handlers: incidents dispatched to their department; grid workers: their grid's
    incidents to handle or to verify (return visit); operators: incidents in their scope waiting for
    accept/dispatch/close. Sorted by ``due_at``."""
    params: dict = {"limit": limit}
    if user.role == "dept_handler":
        cond = "i.department IN (:dep, :dep_code) AND i.status IN ('dispatched', 'in_progress')"
        dep = user.department or ""
        code = next((c for c, d in taxonomy.active(session).departments.items() if d["name"] == dep), dep)
        params.update(dep=dep, dep_code=code)
        if user.scope_code:
            cond += " AND i.grid_code LIKE :scope"
            params["scope"] = user.scope_code + "%"
    elif user.role == "grid_worker":
        cond = ("i.grid_code LIKE :scope AND (i.status = 'resolved' AND i.workflow = 'general' OR "
                "(i.route_level = 'grid' AND i.status IN ('accepted', 'dispatched', 'in_progress')) OR "
                "(i.assignee_id = :uid AND i.status = 'in_progress'))")
        params.update(scope=(user.scope_code or "-") + "%", uid=user.id)
    elif user.role in workflow.OPERATORS:
        cond = "i.status IN ('reported', 'accepted', 'returned', 'escalated', 'declined', 'verified')"
        if user.role != "admin" or user.scope_code:
            cond += " AND i.grid_code LIKE :scope"
            params["scope"] = (user.scope_code or "-") + "%"
        if user.role in ("street_operator", "community_operator", "district_operator"):
            level = user.role.split("_")[0]
            cond += " AND (i.route_level = :level OR i.route_level IS NULL OR i.status IN ('reported', 'verified'))"
            params["level"] = level
    else:
        raise Forbidden(f"角色 {user.role} 没有待办 role {user.role!r} has no task list")
    ids = [r[0] for r in session.execute(text(_TASKS.format(cond=cond)), params)]
    items = []
    for i in ids:
        out = service.get_incident(session, i)
        out["status_label"] = workflow.STATUS_LABELS.get(out["status"])
        items.append(out)
    return {"items": items, "total": len(items)}


# --- attachments ------------------------------------------------------------------------------------
@router.post("/api/v1/incidents/{incident_id}/attachments", status_code=201,
             summary="上传附件 upload photos/videos to an incident", openapi_extra=max_body(UPLOAD_MAX_BODY))
def upload(incident_id: int, files: list[UploadFile] = File(..., description="照片或视频 photos/videos"),
                 note: str = Form(""), session: Session = Depends(get_session, scope="function"),
                 user: User = Depends(current_user), idem: Idempotency = Depends(idempotency)):
    """JPEG/PNG/WebP/HEIC ≤ 10 MB, MP4/MOV ≤ 50 MB (422/413 otherwise, nothing stored); the whole
    request body ≤ 101 MB, counted while it streams in (413 ``body_too_large``). EXIF GPS is
    read when present and compared with the incident's location. Logged as an ``attach`` event."""
    inc = service.get_incident(session, incident_id, user)
    if (replay := idem.replay(session, user)) is not None:
        return replay
    blobs = []
    for f in files:
        data = f.file.read(attachments.MAX_VIDEO + 1)  # sync route: the thread pool, not the event loop
        kind = attachments.check(f.filename or "upload", f.content_type, data)
        blobs.append((f.filename or "upload", kind, data))
    out = attachments.save_all(session, inc, blobs, user, note)
    idem.save(session, out, 201)
    session.commit()
    return out


@router.get("/api/v1/incidents/{incident_id}/attachments/{attachment_id}", summary="附件 download an attachment")
def download(incident_id: int, attachment_id: int, session: Session = Depends(get_session, scope="function"),
             user: User = Depends(current_user)):
    service.get_incident(session, incident_id, user)
    row = session.execute(text("SELECT content_type, storage_key, filename FROM incident_attachments "
                               "WHERE id = :a AND incident_id = :i"), {"a": attachment_id, "i": incident_id}).first()
    if row is None:
        raise NotFound(f"incident {incident_id} has no attachment {attachment_id}")
    return Response(attachments.storage().get(row.storage_key), media_type=row.content_type,
                    headers={"Cache-Control": "private, max-age=86400"})


@router.get("/api/v1/incidents/{incident_id}/attachments/{attachment_id}/thumbnail",
            summary="缩略图 a photo attachment's thumbnail (JPEG, no EXIF)",
            responses={404: {"description": "no such attachment, or it has no thumbnail (video, HEIC, undecodable)"}})
def thumbnail(incident_id: int, attachment_id: int, session: Session = Depends(get_session, scope="function"),
              user: User = Depends(current_user)):
    """Same access as the attachment. ≤ 320 px, upright, EXIF (and so GPS) removed; made on first
    request for photos stored before thumbnails existed."""
    service.get_incident(session, incident_id, user)
    row = session.execute(text("SELECT content_type, storage_key, sha256 FROM incident_attachments "
                               "WHERE id = :a AND incident_id = :i"), {"a": attachment_id, "i": incident_id}).first()
    if row is None:
        raise NotFound(f"incident {incident_id} has no attachment {attachment_id}")
    thumb = attachments.ensure_thumbnail(attachments.storage(), row.sha256, row.content_type, key=row.storage_key)
    if thumb is None:
        raise NotFound(f"附件 {attachment_id} 没有缩略图 attachment {attachment_id} ({row.content_type}) has no "
                       "thumbnail: only JPEG, PNG and WebP photos that decode have one", code="no_thumbnail")
    return Response(thumb, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


# --- citizens: tracking and rating --------------------------------------------------------------------
@router.get("/api/v1/track/{tracking_code}", summary="进度查询 track a report by its code (public)")
def track(tracking_code: str, session: Session = Depends(get_session, scope="function")):
    """Each step in plain words; no personal data (no reporter, contact or exact description)."""
    return tracking.public_view(session, tracking_code)


@router.post("/api/v1/track/{tracking_code}/rating", summary="评价 rate a closed report by its code")
def rate_by_code(tracking_code: str, body: dict = Body(..., examples=[{"rating": "satisfied", "comment": "处理及时"}]),
                 session: Session = Depends(get_session, scope="function"), idem: Idempotency = Depends(idempotency)):
    """满意 satisfied / 基本满意 basic / 不满意 unsatisfied; "unsatisfied" within the window reopens it."""
    if (replay := idem.replay(session, None)) is not None:
        return replay
    out = tracking.rate(session, tracking_code, body.get("rating"), body.get("comment") or "")
    idem.save(session, out, 200)
    session.commit()
    return out


# --- duplicates ---------------------------------------------------------------------------------------
@router.post("/api/v1/duplicates/check", summary="查重 duplicate candidates before submitting")
def check_duplicates(body: IncidentIn, session: Session = Depends(get_session, scope="function"),
                     user: User = Depends(current_user)):
    """Same-category reports nearby in the last days, scored (distance, time, text), best first."""
    from datetime import datetime, timezone

    from gridserver.areas.locate import to_storage

    if body.lon is None:
        raise InvalidInput("duplicate check needs lon and lat")
    node = taxonomy.active(session).node(body.category)
    lon, lat, crs = to_storage(body.lon, body.lat, body.crs)
    cands = duplicates.find_candidates(session, lon=lon, lat=lat, category=node.parent or node.code,
                                       item_code=node.code if node.is_item else None, description=body.description,
                                       at=datetime.now(timezone.utc))
    return {"input_crs": crs, "radius_m": duplicates.RADIUS_M, "window_hours": duplicates.WINDOW_H,
            "threshold": duplicates.THRESHOLD, "candidates": cands}


# --- taxonomy -----------------------------------------------------------------------------------------
@router.get("/api/v1/taxonomy", summary="事件分类版本 taxonomy versions and the active tree (public)")
def taxonomy_info(session: Session = Depends(get_session, scope="function")):
    tax = taxonomy.active(session)
    session.commit()
    return {"active": tax.version, "name": tax.name, "settings": tax.settings,
            "versions": taxonomy.versions(session), "categories": tax.tree()}


@router.get("/api/v1/taxonomy/calendar", summary="工作日历覆盖 which years the working-day calendar covers (public)")
def calendar(ahead_days: int = Query(60, ge=0, le=366, description="name uncovered years up to this many days ahead"),
             session: Session = Depends(get_session, scope="function")):
    """Official years (chinese-calendar), local override days per year, and ``uncovered``: years within
    ``ahead_days`` whose deadlines would count Monday–Friday only (load their schedule with
    ``gridserver taxonomy calendar-load``)."""
    from gridserver.incidents.deadlines import calendar_status

    return calendar_status(session, ahead_days)


@router.get("/api/v1/taxonomy/departments", summary="责任部门 departments of the active taxonomy (public)")
def departments(session: Session = Depends(get_session, scope="function")):
    tax = taxonomy.active(session)
    session.commit()
    return [{"code": c, **d} for c, d in tax.departments.items()]
