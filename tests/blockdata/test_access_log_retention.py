"""Access-log retention (issue 9: "append-only access log … readable by admins, kept ≥ 6 months"):
the access_log.purge job deletes rows past the retention setting and logs the purge; a setting
below 183 days is refused; the log stays append-only for everything else."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gridserver.blockdata.retention import purge_access_log
from gridserver.errors import InvalidInput
from gridserver.settings import Settings, get_settings
from jobs_run import run_job


def _rows(engine, tag: str) -> dict[str, int]:
    """Seeded rows by their age in days: {target: id}."""
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT target, id FROM bd_access_log WHERE purpose = :p"), {"p": tag}).all())


@pytest.fixture
def aged_rows(engine):
    """Rows 400, 200 and 10 days old (INSERT is always allowed; the past is written directly)."""
    tag = f"retention-test-{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        for days in (400, 200, 10):
            conn.execute(text("INSERT INTO bd_access_log (at, username, role, action, target, purpose) VALUES "
                              "(now() - make_interval(days => :d), 'w1', 'grid_worker', 'people.read', :t, :p)"),
                         {"d": days, "t": f"age{days}", "p": tag})
    return tag


def _run_purge(engine) -> dict:
    from gridserver.jobs.worker import import_task_modules

    assert "gridserver.blockdata.retention" in import_task_modules()
    return run_job(engine, "access_log.purge")["result"]


def test_purge_deletes_only_rows_past_retention_and_logs_itself(engine, aged_rows, http, auth, admin_token):
    assert get_settings().access_log_retention_days == 365  # the default
    result = _run_purge(engine)
    assert set(_rows(engine, aged_rows)) == {"age200", "age10"}  # 400 days: gone; younger: kept
    assert result["deleted"] >= 1 and result["retention_days"] == 365
    log = http.get("/api/v1/access-log", params={"username": "system"}, headers=auth(admin_token)).json()["rows"]
    purge = log[0]
    assert (purge["action"], purge["target"], purge["role"]) == ("purge", "bd_access_log", "system")
    assert purge["rows"] == result["deleted"] and "365 days" in purge["purpose"]


def test_shorter_retention_purges_more_but_never_under_six_months(engine, aged_rows, monkeypatch):
    monkeypatch.setattr(get_settings(), "access_log_retention_days", 190)
    _run_purge(engine)
    assert set(_rows(engine, aged_rows)) == {"age10"}
    with pytest.raises(ValidationError, match="183"):
        Settings(access_log_retention_days=100)
    with engine.begin() as conn, pytest.raises(InvalidInput, match="at least 183 days"):
        purge_access_log(conn, 100)
    assert set(_rows(engine, aged_rows)) == {"age10"}


def test_log_stays_append_only(engine, aged_rows, http, auth, make_user, small_city):
    young = _rows(engine, aged_rows)["age10"]
    for sql in (f"UPDATE bd_access_log SET purpose = 'edited' WHERE id = {young}",
                f"DELETE FROM bd_access_log WHERE id = {young}",
                "UPDATE bd_access_log SET rows = 0 WHERE target = 'age400'"):
        with pytest.raises(DBAPIError, match="append-only|6 months"):
            with engine.begin() as conn:
                conn.execute(text(sql))
    assert _rows(engine, aged_rows)["age10"] == young
    for role, scope in (("grid_worker", "440104001001001"), ("analyst", None), ("street_operator", "440104001")):
        who = make_user(role, scope)  # readable by admins only
        assert http.get("/api/v1/access-log", headers=auth(who)).status_code == 403
