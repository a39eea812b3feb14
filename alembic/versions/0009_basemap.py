"""Basemap layers (roads, green, water) and map support tables (issue 11).

* ``basemap_roads`` / ``basemap_areas``: the city's own basemap (roads by class, green areas, water),
  loaded by the demo (or ``gridserver tiles``) and served as vector tiles; ``geom_3857`` generated
  and GiST-indexed like the admin areas.
* ``incidents`` NOTIFY trigger: every insert/update sends a small JSON payload on the channel
  ``gridserver_incidents``; one LISTEN connection in the server fans it out to SSE subscribers.
* ``patrols`` / ``patrol_points``: a grid worker's 巡查 track; points are keyed by (patrol, seq) so a
  batch re-sent after a network drop is stored once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE basemap_roads (
            id         bigserial PRIMARY KEY,
            name       text,
            class      text NOT NULL,
            source     text NOT NULL DEFAULT 'demo',
            geom       geometry(MultiLineString, 4326) NOT NULL,
            geom_3857  geometry(MultiLineString, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED
        );
        CREATE INDEX basemap_roads_geom_3857 ON basemap_roads USING gist (geom_3857);

        CREATE TABLE basemap_areas (
            id         bigserial PRIMARY KEY,
            kind       text NOT NULL CHECK (kind IN ('green', 'water')),
            subtype    text,
            name       text,
            source     text NOT NULL DEFAULT 'demo',
            geom       geometry(MultiPolygon, 4326) NOT NULL,
            geom_3857  geometry(MultiPolygon, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED
        );
        CREATE INDEX basemap_areas_geom_3857 ON basemap_areas USING gist (geom_3857);

        CREATE FUNCTION notify_incident_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('gridserver_incidents', json_build_object(
                'op', lower(TG_OP), 'id', NEW.id, 'status', NEW.status, 'category', NEW.category,
                'grid_code', NEW.grid_code, 'reporter_id', NEW.reporter_id,
                'lon', ST_X(NEW.geom), 'lat', ST_Y(NEW.geom),
                'created_at', to_char(NEW.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))::text);
            RETURN NULL;
        END $$;
        CREATE TRIGGER incidents_notify AFTER INSERT OR UPDATE ON incidents
            FOR EACH ROW EXECUTE FUNCTION notify_incident_change();

        CREATE TABLE patrols (
            id          bigserial PRIMARY KEY,
            user_id     integer NOT NULL REFERENCES users (id),
            grid_code   text,
            client_key  text UNIQUE,
            started_at  timestamptz NOT NULL DEFAULT now(),
            ended_at    timestamptz
        );
        CREATE INDEX patrols_user ON patrols (user_id, started_at DESC);
        CREATE INDEX patrols_grid ON patrols (grid_code, started_at DESC);

        CREATE TABLE patrol_points (
            patrol_id    bigint NOT NULL REFERENCES patrols (id) ON DELETE CASCADE,
            seq          integer NOT NULL,
            recorded_at  timestamptz NOT NULL,
            accuracy_m   real,
            geom         geometry(Point, 4326) NOT NULL,
            PRIMARY KEY (patrol_id, seq)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS patrol_points;
        DROP TABLE IF EXISTS patrols;
        DROP TRIGGER IF EXISTS incidents_notify ON incidents;
        DROP FUNCTION IF EXISTS notify_incident_change();
        DROP TABLE IF EXISTS basemap_areas;
        DROP TABLE IF EXISTS basemap_roads;
        """
    )
