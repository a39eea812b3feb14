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


def _own_job(session: Session, user: User, job_id: int) -> dict:
    """The job, if it exists and is this account's (or the caller is an admin): else 404 / 403."""
    job = get_job(session, job_id)
    if job is None:
        raise NotFound(f"任务不存在 no job {job_id}")
    if not _visible(user, job):
        raise Forbidden(f"job {job_id} belongs to another account")
    return job


@router.get("/{job_id}", summary="任务进度 job progress")
def show_job(job_id: int, user: User = Depends(current_user), session: Session = Depends(get_session, scope="function")):
    """State (queued/running/done/failed/cancelled), done/total, percent, message, error, result."""
    job = _own_job(session, user, job_id)
    job.pop("checkpoint", None)
    return job


@router.post("/{job_id}/cancel", summary="取消任务 cancel a job")
def cancel_job(job_id: int, user: User = Depends(current_user), session: Session = Depends(get_session, scope="function")):
    """Cancel a queued job; a running one stops at its next progress report. ``cancelled``: whether it was
    still queued or running."""
    _own_job(session, user, job_id)
    return {"id": job_id, "cancelled": cancel(session, job_id)}
