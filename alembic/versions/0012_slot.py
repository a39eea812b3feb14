"""Intake fast path: a revision for the working-day overrides, so every process knows when its cached
calendar is stale (read in the same statement intake already runs; see incidents/intake.py), and a
spatial index of the open incidents for the duplicate candidates (the open reports around a point,
instead of every report of the category city-wide in the last 72 hours).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        INSERT INTO gridserver_meta (key, value) VALUES ('calendar_revision', 0) ON CONFLICT (key) DO NOTHING;
        CREATE FUNCTION bump_calendar_revision() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE gridserver_meta SET value = value + 1 WHERE key = 'calendar_revision';
            RETURN NULL;
        END $$;
        CREATE TRIGGER calendar_overrides_revision AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
            ON calendar_overrides FOR EACH STATEMENT EXECUTE FUNCTION bump_calendar_revision();
        CREATE INDEX IF NOT EXISTS incidents_open_geom ON incidents USING gist (geom)
            WHERE status NOT IN ('closed', 'rated', 'merged');
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS incidents_open_geom;
        DROP TRIGGER IF EXISTS calendar_overrides_revision ON calendar_overrides;
        DROP FUNCTION IF EXISTS bump_calendar_revision();
        DELETE FROM gridserver_meta WHERE key = 'calendar_revision';
        """
    )
