"""Background jobs: PostgreSQL-backed queue schema and job progress (issue 9).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

A small ``SELECT … FOR UPDATE SKIP LOCKED`` queue (see ``gridserver/jobs/__init__.py`` for why not
procrastinate). A job is claimed by one worker, reports progress (done/total) and a checkpoint, and
sends heartbeats; a running job whose worker stopped sending heartbeats (crash, restart) goes back to
the queue and resumes from its last checkpoint.
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE jobs (
            id            bigserial PRIMARY KEY,
            task          text NOT NULL,
            args          jsonb NOT NULL DEFAULT '{}'::jsonb,
            state         text NOT NULL DEFAULT 'queued'
                          CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            done          bigint NOT NULL DEFAULT 0,
            total         bigint,
            message       text,
            error         text,
            result        jsonb,
            checkpoint    jsonb,
            attempts      integer NOT NULL DEFAULT 0,
            max_attempts  integer NOT NULL DEFAULT 3,
            run_after     timestamptz NOT NULL DEFAULT now(),
            locked_by     text,
            heartbeat_at  timestamptz,
            dedup_key     text,
            created_by    text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            started_at    timestamptz,
            finished_at   timestamptz
        );
        CREATE INDEX jobs_ready ON jobs (run_after, id) WHERE state = 'queued';
        CREATE INDEX jobs_running ON jobs (heartbeat_at) WHERE state = 'running';
        -- At most one unfinished job per dedup key (e.g. one escalation sweep at a time).
        CREATE UNIQUE INDEX jobs_dedup ON jobs (dedup_key) WHERE dedup_key IS NOT NULL AND state IN ('queued', 'running');

        CREATE TABLE job_schedules (
            name          text PRIMARY KEY,
            task          text NOT NULL,
            args          jsonb NOT NULL DEFAULT '{}'::jsonb,
            every_seconds integer NOT NULL CHECK (every_seconds > 0),
            next_run_at   timestamptz NOT NULL DEFAULT now(),
            last_job_id   bigint
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS job_schedules, jobs")
