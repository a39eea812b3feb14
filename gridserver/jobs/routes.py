"""``GET /api/v1/jobs/{id}``: a background job's state and progress."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from gridserver.auth.deps import current_user
from gridserver.auth.users import User
from gridserver.db.engine import get_session
from gridserver.errors import Forbidden, NotFound
from gridserver.jobs import cancel, get_job

router = APIRouter(prefix="/api/v1/jobs", tags=["后台任务 jobs"])


def _visible(user: User, job: dict) -> bool:
    return user.role == "admin" or job.get("created_by") == user.username


@router.get("/{job_id}")
def show_job(job_id: int, user: User = Depends(current_user), session: Session = Depends(get_session, scope="function")):
    """State (queued/running/done/failed/cancelled), done/total, percent, message, error, result."""
    job = get_job(session, job_id)
    if job is None:
        raise NotFound(f"任务不存在 no job {job_id}")
    if not _visible(user, job):
        raise Forbidden(f"job {job_id} belongs to another account")
    job.pop("checkpoint", None)
    return job


@router.post("/{job_id}/cancel")
def cancel_job(job_id: int, user: User = Depends(current_user), session: Session = Depends(get_session, scope="function")):
    job = get_job(session, job_id)
    if job is None:
        raise NotFound(f"任务不存在 no job {job_id}")
    if not _visible(user, job):
        raise Forbidden(f"job {job_id} belongs to another account")
    return {"id": job_id, "cancelled": cancel(session, job_id)}
