"""Failed logins per client address, in the database (so the limit holds across server processes).

``login_failures_ip``: one row per client address with the times of its latest failed logins (at most
the limit's worth, all inside the window), so "N failures in M minutes" is an exact sliding window
kept by one upsert per failed login; ``last_failed_at`` lets the periodic cleanup drop expired rows.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE login_failures_ip (
            address         text PRIMARY KEY,
            failed_at       timestamptz[] NOT NULL,   -- newest failures inside the window, oldest first
            last_failed_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX login_failures_ip_last ON login_failures_ip (last_failed_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS login_failures_ip")
