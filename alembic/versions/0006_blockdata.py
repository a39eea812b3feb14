"""Block data: buildings, houses, households, people, businesses, links, access log, datasets (issue 9).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

The tables are declared as models in ``gridserver/blockdata/models.py`` (same columns); this file
holds the DDL so the chain stays linear and reviewable. Five codes link the records: the person
(``people.id_hash``, an HMAC of the ID number — the number itself is never stored), the business
(``credit_code``), the house (``house_code``), the building (``building_code``) and the standard
address (``address_code``). Every record carries its current ``grid_code``, its ``source``
department, ``confirmed_at`` and ``raw_row_id`` (the imported row it came from).
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COMMON = """
    grid_code     text,
    source        text NOT NULL DEFAULT 'manual',
    confirmed_at  timestamptz NOT NULL DEFAULT now(),
    raw_row_id    bigint REFERENCES bd_raw_rows (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
"""


def upgrade() -> None:
    op.execute(
        f"""
        -- One row per import of a block-data file (people/households/buildings/businesses).
        CREATE TABLE bd_imports (
            id           bigserial PRIMARY KEY,
            kind         text NOT NULL CHECK (kind IN ('buildings', 'houses', 'households', 'people', 'businesses')),
            source       text NOT NULL,
            file_name    text NOT NULL,
            file_hash    text NOT NULL,
            status       text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
            rows_total   bigint NOT NULL DEFAULT 0,
            rows_done    bigint NOT NULL DEFAULT 0,
            report       jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            job_id       bigint,
            actor        text NOT NULL DEFAULT 'import',
            started_at   timestamptz NOT NULL DEFAULT now(),
            finished_at  timestamptz
        );
        CREATE INDEX bd_imports_source ON bd_imports (kind, source, file_hash);

        -- The raw imported rows, as read (sensitive columns already replaced by hash + mask).
        CREATE TABLE bd_raw_rows (
            id         bigserial PRIMARY KEY,
            import_id  bigint NOT NULL REFERENCES bd_imports (id),
            kind       text NOT NULL,
            source     text NOT NULL,
            row_no     integer NOT NULL,
            row_hash   text NOT NULL,
            data       jsonb NOT NULL
        );
        CREATE UNIQUE INDEX bd_raw_rows_hash ON bd_raw_rows (kind, source, row_hash);

        -- Rows that could not be linked (review) or were refused (rejected), with row, column and reason.
        CREATE TABLE bd_review (
            id          bigserial PRIMARY KEY,
            import_id   bigint REFERENCES bd_imports (id),
            kind        text NOT NULL,
            source      text NOT NULL,
            row_no      integer,
            column_name text,
            status      text NOT NULL CHECK (status IN ('review', 'rejected', 'resolved')),
            reason      text NOT NULL,
            data        jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX bd_review_import ON bd_review (import_id);

        CREATE TABLE buildings (
            id            bigserial PRIMARY KEY,
            building_code text NOT NULL UNIQUE,
            address_code  text,
            name          text,
            geom          geometry(MultiPolygon, 4326),
            geom_3857     geometry(MultiPolygon, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
            floors        integer,
            use           text,
            year_built    integer,
            {_COMMON}
        );
        CREATE INDEX buildings_geom ON buildings USING gist (geom);
        CREATE INDEX buildings_geom_3857 ON buildings USING gist (geom_3857);
        CREATE INDEX buildings_grid ON buildings (grid_code text_pattern_ops, id);
        CREATE INDEX buildings_address ON buildings (address_code);

        CREATE TABLE houses (
            id            bigserial PRIMARY KEY,
            house_code    text NOT NULL UNIQUE,
            building_code text,
            address_code  text,
            floor         text,
            room          text,
            use           text,
            {_COMMON}
        );
        CREATE INDEX houses_building ON houses (building_code);
        CREATE INDEX houses_grid ON houses (grid_code text_pattern_ops, id);
        CREATE INDEX houses_address ON houses (address_code);

        CREATE TABLE households (
            id             bigserial PRIMARY KEY,
            household_code text NOT NULL UNIQUE,
            house_code     text,
            building_code  text,
            address_code   text,
            kind           text,
            members        integer,
            {_COMMON}
        );
        CREATE INDEX households_building ON households (building_code);
        CREATE INDEX households_house ON households (house_code);
        CREATE INDEX households_grid ON households (grid_code text_pattern_ops, id);
        CREATE INDEX households_address ON households (address_code);

        CREATE TABLE people (
            id             bigserial PRIMARY KEY,
            id_hash        text NOT NULL UNIQUE,       -- HMAC-SHA256 of the ID number, key outside the database
            id_masked      text NOT NULL,              -- 4401**********123X
            name           text NOT NULL,
            name_masked    text NOT NULL,              -- 张*明
            phone_hash     text,
            phone_masked   text,                       -- 138****5678
            sex            text CHECK (sex IN ('M', 'F')),
            birth_year     integer,
            household_code text,
            house_code     text,
            building_code  text,
            address_code   text,
            residence      text NOT NULL DEFAULT 'registered' CHECK (residence IN ('registered', 'floating')),
            {_COMMON}
        );
        CREATE INDEX people_household ON people (household_code);
        CREATE INDEX people_building ON people (building_code);
        CREATE INDEX people_house ON people (house_code);
        CREATE INDEX people_grid ON people (grid_code text_pattern_ops, id);
        CREATE INDEX people_address ON people (address_code);
        CREATE INDEX people_phone ON people (phone_hash);

        -- Key groups grid workers look after; who set the tag and when. Removal keeps the row.
        CREATE TABLE person_tags (
            id         bigserial PRIMARY KEY,
            person_id  bigint NOT NULL REFERENCES people (id),
            tag        text NOT NULL CHECK (tag IN ('elderly_alone', 'disabled', 'left_behind_child', 'rental', 'floating')),
            note       text,
            set_by     text NOT NULL,
            set_at     timestamptz NOT NULL DEFAULT now(),
            removed_by text,
            removed_at timestamptz
        );
        CREATE UNIQUE INDEX person_tags_live ON person_tags (person_id, tag) WHERE removed_at IS NULL;
        CREATE INDEX person_tags_person ON person_tags (person_id);   -- FK checks when people are deleted

        CREATE TABLE businesses (
            id            bigserial PRIMARY KEY,
            credit_code   text NOT NULL UNIQUE,
            name          text NOT NULL,
            category      text,
            address_code  text,
            building_code text,
            house_code    text,
            geom          geometry(Point, 4326),
            geom_3857     geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
            {_COMMON}
        );
        CREATE INDEX businesses_grid ON businesses (grid_code text_pattern_ops, id);
        CREATE INDEX businesses_building ON businesses (building_code);
        CREATE INDEX businesses_address ON businesses (address_code);
        CREATE INDEX businesses_geom ON businesses USING gist (geom);
        CREATE INDEX businesses_geom_3857 ON businesses USING gist (geom_3857);

        -- Grid membership changes (re-link after a redraw, or a record moving): the grid a record was
        -- in at a date is old_grid of its first change after that date, else its current grid_code.
        CREATE TABLE bd_grid_changes (
            id          bigserial PRIMARY KEY,
            kind        text NOT NULL CHECK (kind IN ('building', 'house', 'household', 'person', 'business')),
            record_id   bigint NOT NULL,
            old_grid    text,
            new_grid    text,
            changed_at  timestamptz NOT NULL DEFAULT now(),
            reason      text
        );
        CREATE INDEX bd_grid_changes_record ON bd_grid_changes (kind, record_id, changed_at);
        CREATE INDEX bd_grid_changes_old ON bd_grid_changes (kind, old_grid, changed_at);

        -- Per-grid roll-ups behind the profiles: refreshed after every write, summed for parents.
        CREATE TABLE bd_rollup (
            grid_code  text NOT NULL,
            metric     text NOT NULL,
            value      bigint NOT NULL,
            last_at    timestamptz,
            PRIMARY KEY (grid_code, metric)
        );
        CREATE INDEX bd_rollup_prefix ON bd_rollup (grid_code text_pattern_ops);

        -- Every read of unmasked personal data. Append-only: UPDATE is refused, DELETE only after 6 months.
        CREATE TABLE bd_access_log (
            id         bigserial PRIMARY KEY,
            at         timestamptz NOT NULL DEFAULT now(),
            username   text NOT NULL,
            role       text NOT NULL,
            action     text NOT NULL,
            target     text NOT NULL,
            area_code  text,
            purpose    text,
            rows       integer NOT NULL DEFAULT 0
        );
        CREATE INDEX bd_access_log_at ON bd_access_log (at DESC);
        CREATE FUNCTION bd_access_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                RAISE EXCEPTION 'bd_access_log is append-only';
            END IF;
            IF OLD.at > now() - interval '183 days' THEN
                RAISE EXCEPTION 'bd_access_log rows are kept at least 6 months';
            END IF;
            RETURN OLD;
        END $$;
        CREATE TRIGGER bd_access_log_guard BEFORE UPDATE OR DELETE ON bd_access_log
            FOR EACH ROW EXECUTE FUNCTION bd_access_log_guard();

        -- Registry of departmental datasets: who provides them, how often, when last updated.
        CREATE TABLE bd_datasets (
            name          text PRIMARY KEY,           -- '<kind>:<source>'
            kind          text NOT NULL,
            provider      text NOT NULL,
            update_rule   text NOT NULL DEFAULT 'monthly'
                          CHECK (update_rule IN ('daily', 'weekly', 'monthly', 'quarterly', 'yearly', 'once')),
            last_update   timestamptz,
            row_count     bigint NOT NULL DEFAULT 0,
            last_import_id bigint,
            last_outcome  jsonb NOT NULL DEFAULT '{{}}'::jsonb
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS bd_datasets, bd_access_log, bd_rollup, bd_grid_changes, businesses, person_tags,
            people, households, houses, buildings, bd_review, bd_raw_rows, bd_imports CASCADE;
        DROP FUNCTION IF EXISTS bd_access_log_guard();
        """
    )
