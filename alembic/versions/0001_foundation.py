"""Foundation: admin areas and grids, accounts, first incidents.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.execute(
        """
        CREATE TABLE gridserver_meta (
            key   text PRIMARY KEY,
            value bigint NOT NULL DEFAULT 0
        );
        INSERT INTO gridserver_meta (key, value) VALUES ('areas_revision', 0);

        -- One row per version of an admin area. The current version has valid_to IS NULL;
        -- a redraw closes the old row (valid_to = now()) and inserts a new one.
        CREATE TABLE admin_areas (
            id          bigserial PRIMARY KEY,
            level       text NOT NULL CHECK (level IN ('district', 'street', 'community', 'grid')),
            code        text NOT NULL,
            name        text NOT NULL,
            parent_code text,
            geom        geometry(MultiPolygon, 4326) NOT NULL,
            geom_3857   geometry(MultiPolygon, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
            area_m2     double precision,
            props       jsonb NOT NULL DEFAULT '{}'::jsonb,
            source      text,
            valid_from  timestamptz NOT NULL DEFAULT now(),
            valid_to    timestamptz,
            CHECK (valid_to IS NULL OR valid_to >= valid_from)
        );
        CREATE UNIQUE INDEX admin_areas_current_code ON admin_areas (code) WHERE valid_to IS NULL;
        CREATE INDEX admin_areas_level ON admin_areas (level) WHERE valid_to IS NULL;
        CREATE INDEX admin_areas_parent ON admin_areas (parent_code) WHERE valid_to IS NULL;
        CREATE INDEX admin_areas_geom ON admin_areas USING gist (geom);
        CREATE INDEX admin_areas_geom_3857 ON admin_areas USING gist (geom_3857);

        -- Any change to the areas bumps a revision, so in-memory lookup indexes know to reload.
        CREATE FUNCTION bump_areas_revision() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE gridserver_meta SET value = value + 1 WHERE key = 'areas_revision';
            RETURN NULL;
        END $$;
        CREATE TRIGGER admin_areas_revision AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON admin_areas
            FOR EACH STATEMENT EXECUTE FUNCTION bump_areas_revision();

        CREATE TABLE users (
            id            serial PRIMARY KEY,
            username      text NOT NULL UNIQUE,
            password_hash text NOT NULL,
            full_name     text NOT NULL DEFAULT '',
            role          text NOT NULL CHECK (role IN ('admin', 'district_operator', 'street_operator',
                              'community_operator', 'grid_worker', 'dept_handler', 'analyst', 'citizen')),
            scope_code    text,
            department    text,
            active        boolean NOT NULL DEFAULT true,
            created_at    timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE incidents (
            id                 bigserial PRIMARY KEY,
            category           text NOT NULL,
            description        text NOT NULL DEFAULT '',
            status             text NOT NULL DEFAULT 'reported',
            geom               geometry(Point, 4326) NOT NULL,
            geom_3857          geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
            input_x            double precision,
            input_y            double precision,
            input_crs          text NOT NULL DEFAULT 'wgs84',
            address_text       text,
            geocoded           boolean NOT NULL DEFAULT false,
            geocode_confidence double precision,
            grid_code          text,
            community_code     text,
            street_code        text,
            district_code      text,
            reporter_id        integer REFERENCES users (id),
            source             text NOT NULL DEFAULT 'api',
            created_at         timestamptz NOT NULL DEFAULT now(),
            updated_at         timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX incidents_geom ON incidents USING gist (geom);
        CREATE INDEX incidents_geom_3857 ON incidents USING gist (geom_3857);
        CREATE INDEX incidents_grid ON incidents (grid_code);
        CREATE INDEX incidents_created ON incidents (created_at DESC, id DESC);
        CREATE INDEX incidents_status ON incidents (status);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS incidents;
        DROP TABLE IF EXISTS users;
        DROP TABLE IF EXISTS admin_areas;
        DROP FUNCTION IF EXISTS bump_areas_revision();
        DROP TABLE IF EXISTS gridserver_meta;
        """
    )
