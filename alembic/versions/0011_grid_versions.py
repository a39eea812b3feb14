"""Grid division drafts and versions (issue 13).

A draft is a proposed set of grids for some communities, with its quality report. Activating it
closes the communities' current grids (``admin_areas.valid_to``) and inserts the draft's grids
(``valid_from``) in one transaction; the draft row keeps the change report. History queries use
``admin_areas`` itself (``valid_from <= at < valid_to``), so an index on the validity range helps.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25
"""
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE grid_drafts (
            id             bigserial PRIMARY KEY,
            area_code      text NOT NULL,
            status         text NOT NULL DEFAULT 'draft'
                           CHECK (status IN ('draft', 'active', 'superseded', 'discarded')),
            method         text NOT NULL,
            params         jsonb NOT NULL DEFAULT '{}'::jsonb,
            communities    text[] NOT NULL,
            report         jsonb NOT NULL DEFAULT '{}'::jsonb,
            notes          jsonb NOT NULL DEFAULT '[]'::jsonb,
            created_by     text,
            created_at     timestamptz NOT NULL DEFAULT now(),
            activated_at   timestamptz,
            activated_by   text,
            effective_from timestamptz,
            change_report  jsonb
        );
        CREATE INDEX grid_drafts_area ON grid_drafts (area_code, created_at DESC);

        CREATE TABLE grid_draft_grids (
            draft_id    bigint NOT NULL REFERENCES grid_drafts (id) ON DELETE CASCADE,
            code        text NOT NULL CHECK (code ~ '^[0-9]{15}$'),
            name        text NOT NULL,
            parent_code text NOT NULL,
            geom        geometry(MultiPolygon, 4326) NOT NULL,
            households  integer NOT NULL DEFAULT 0,
            buildings   integer NOT NULL DEFAULT 0,
            PRIMARY KEY (draft_id, code)
        );
        CREATE INDEX grid_draft_grids_geom ON grid_draft_grids USING gist (geom);

        CREATE TABLE grid_draft_buildings (
            draft_id      bigint NOT NULL REFERENCES grid_drafts (id) ON DELETE CASCADE,
            building_code text NOT NULL,
            grid_code     text NOT NULL,
            households    integer NOT NULL DEFAULT 0,
            old_grid_code text,
            point         geometry(Point, 4326),
            PRIMARY KEY (draft_id, building_code)
        );

        CREATE INDEX admin_areas_validity ON admin_areas (level, valid_from, valid_to);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS admin_areas_validity;
        DROP TABLE IF EXISTS grid_draft_buildings;
        DROP TABLE IF EXISTS grid_draft_grids;
        DROP TABLE IF EXISTS grid_drafts;
        """
    )
