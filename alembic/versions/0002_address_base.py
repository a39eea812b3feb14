"""Standard address base (标准地址库): addresses by level, aliases, history, departmental imports.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Code scheme (see gridserver/address/base.py for the full description): a road gets
``<6-digit district code>R<5-digit serial>``; every lower level appends a level letter and a serial
within its parent (H house 4 digits, B building 3, U unit 2, F floor 3, S room 4). Serials come from
``address_code_counters`` and only ever grow, so a code is never reused, and an edit never changes it.
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One row per standard address at one level. Retired rows are kept (status = 'retired');
        -- DELETE is refused by a trigger, so history never loses its subject.
        CREATE TABLE std_addresses (
            id             bigserial PRIMARY KEY,
            code           text NOT NULL UNIQUE,
            level          text NOT NULL CHECK (level IN ('road', 'house', 'building', 'unit', 'floor', 'room')),
            parent_id      bigint REFERENCES std_addresses (id),
            name           text NOT NULL,              -- this level's own part: 中山四路 / 13号 / 3栋 / 2单元 / 501室
            full_text      text NOT NULL,              -- standard written form, 广东省广州市越秀区中山四路13号3栋2单元501室
            match_key      text NOT NULL,              -- road|house|building|unit|floor|room, normalised
            road           text NOT NULL,              -- road name as written in the standard form
            road_key       text NOT NULL,              -- the road name normalised, as in match_key
            house_no       text NOT NULL DEFAULT '',
            building       text NOT NULL DEFAULT '',
            unit           text NOT NULL DEFAULT '',
            floor          text NOT NULL DEFAULT '',
            room           text NOT NULL DEFAULT '',
            components     jsonb NOT NULL DEFAULT '{}'::jsonb,
            geom           geometry(Point, 4326),
            geom_3857      geometry(Point, 3857) GENERATED ALWAYS AS (ST_Transform(geom, 3857)) STORED,
            geom_source    text,                       -- survey / interpolated / department / inherited
            grid_code      text,
            community_code text,
            street_code    text,
            district_code  text,
            status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired', 'pending')),
            source         text NOT NULL DEFAULT 'manual',
            replaced_by    bigint REFERENCES std_addresses (id),   -- set when retired by a merge
            created_at     timestamptz NOT NULL DEFAULT now(),
            updated_at     timestamptz NOT NULL DEFAULT now(),
            retired_at     timestamptz
        );
        -- At most one live (active or pending) address per key; retired ones may repeat a key.
        CREATE UNIQUE INDEX std_addresses_live_key ON std_addresses (match_key) WHERE status <> 'retired';
        CREATE INDEX std_addresses_parent ON std_addresses (parent_id);
        CREATE INDEX std_addresses_road ON std_addresses (road_key, house_no) WHERE status <> 'retired';
        CREATE INDEX std_addresses_status ON std_addresses (status);
        CREATE INDEX std_addresses_grid ON std_addresses (grid_code);
        CREATE INDEX std_addresses_geom ON std_addresses USING gist (geom);
        CREATE INDEX std_addresses_geom_3857 ON std_addresses USING gist (geom_3857);

        -- Serial counters behind the codes: one row per (parent code, level letter). Never decremented.
        CREATE TABLE address_code_counters (
            prefix text PRIMARY KEY,
            last   integer NOT NULL
        );

        CREATE FUNCTION next_address_code(parent text, letter text, width integer) RETURNS text
        LANGUAGE plpgsql AS $$
        DECLARE n integer;
        BEGIN
            INSERT INTO address_code_counters AS c (prefix, last) VALUES (parent || letter, 1)
            ON CONFLICT (prefix) DO UPDATE SET last = c.last + 1
            RETURNING last INTO n;
            IF n >= 10 ^ width THEN
                RAISE EXCEPTION 'address code serial for % exhausted (% digits)', parent || letter, width;
            END IF;
            RETURN parent || letter || lpad(n::text, width, '0');
        END $$;

        -- 广东省广州市越秀区: province and city from the code, the district's name from the areas.
        CREATE FUNCTION address_upper_text(district_code text) RETURNS text LANGUAGE sql STABLE AS $$
            SELECT CASE left(district_code, 2) WHEN '44' THEN '广东省' ELSE '' END
                || CASE left(district_code, 4) WHEN '4401' THEN '广州市' ELSE '' END
                || coalesce((SELECT name FROM admin_areas WHERE code = district_code AND valid_to IS NULL
                             ORDER BY id DESC LIMIT 1), '')
        $$;

        -- Other spellings of an address: old names, departmental forms, merged duplicates.
        CREATE TABLE address_aliases (
            id          bigserial PRIMARY KEY,
            address_id  bigint NOT NULL REFERENCES std_addresses (id),
            text        text NOT NULL,
            normalised  text NOT NULL,
            match_key   text,                          -- key of the alias spelling, when it parses
            source      text NOT NULL DEFAULT 'manual',
            created_at  timestamptz NOT NULL DEFAULT now(),
            UNIQUE (address_id, normalised)
        );
        CREATE INDEX address_aliases_normalised ON address_aliases (normalised);
        CREATE INDEX address_aliases_key ON address_aliases (match_key);

        -- Every change to a standard address: who, when, why, before and after. Written by trigger,
        -- so no code path can change an address without leaving a row here. The actor, action and
        -- reason come from transaction-local settings (gridserver.actor / .action / .reason).
        CREATE TABLE address_history (
            id          bigserial PRIMARY KEY,
            address_id  bigint NOT NULL REFERENCES std_addresses (id),
            changed_at  timestamptz NOT NULL DEFAULT now(),
            actor       text NOT NULL,
            action      text NOT NULL,
            reason      text,
            before      jsonb,
            after       jsonb
        );
        CREATE INDEX address_history_address ON address_history (address_id, changed_at);

        CREATE FUNCTION record_address_history() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            b jsonb;
            a jsonb;
        BEGIN
            a := to_jsonb(NEW) - 'geom_3857' - 'geom' - 'updated_at'
                 || jsonb_build_object('lonlat', CASE WHEN NEW.geom IS NULL THEN NULL
                                                      ELSE jsonb_build_array(ST_X(NEW.geom), ST_Y(NEW.geom)) END);
            IF TG_OP = 'UPDATE' THEN
                b := to_jsonb(OLD) - 'geom_3857' - 'geom' - 'updated_at'
                     || jsonb_build_object('lonlat', CASE WHEN OLD.geom IS NULL THEN NULL
                                                          ELSE jsonb_build_array(ST_X(OLD.geom), ST_Y(OLD.geom)) END);
                IF a = b THEN
                    RETURN NULL;  -- a no-op update is not a change
                END IF;
            END IF;
            INSERT INTO address_history (address_id, actor, action, reason, before, after)
            VALUES (NEW.id,
                    coalesce(nullif(current_setting('gridserver.actor', true), ''), current_user),
                    coalesce(nullif(current_setting('gridserver.action', true), ''), lower(TG_OP)),
                    nullif(current_setting('gridserver.reason', true), ''),
                    b, a);
            RETURN NULL;
        END $$;
        CREATE TRIGGER std_addresses_history AFTER INSERT OR UPDATE ON std_addresses
            FOR EACH ROW EXECUTE FUNCTION record_address_history();
        CREATE FUNCTION refuse_address_delete() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'standard addresses are never deleted: retire % instead', OLD.code;
        END $$;
        CREATE TRIGGER std_addresses_no_delete BEFORE DELETE ON std_addresses
            FOR EACH ROW EXECUTE FUNCTION refuse_address_delete();

        -- One run of `gridserver import addresses`. A finished run with the same source and file
        -- hash makes a re-import a no-op.
        CREATE TABLE address_imports (
            id          bigserial PRIMARY KEY,
            source      text NOT NULL,
            file_name   text NOT NULL,
            file_hash   text NOT NULL,
            status      text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
            rows_total  integer NOT NULL DEFAULT 0,
            matched     integer NOT NULL DEFAULT 0,
            new         integer NOT NULL DEFAULT 0,
            review      integer NOT NULL DEFAULT 0,
            rejected    integer NOT NULL DEFAULT 0,
            unchanged   integer NOT NULL DEFAULT 0,
            actor       text,
            started_at  timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        );
        CREATE UNIQUE INDEX address_imports_done ON address_imports (source, file_hash) WHERE status = 'done';

        -- One row per departmental record, with the matcher's verdict. Rows still 'review' or 'new'
        -- (pending address) are the review queue.
        CREATE TABLE dept_records (
            id            bigserial PRIMARY KEY,
            import_id     bigint NOT NULL REFERENCES address_imports (id),
            source        text NOT NULL,
            source_key    text,                        -- the department's own id, else the row number
            row_no        integer NOT NULL,
            row_hash      text NOT NULL,
            raw_text      text NOT NULL,
            normalised    text NOT NULL DEFAULT '',
            parsed        jsonb NOT NULL DEFAULT '{}'::jsonb,
            match_key     text,
            geom          geometry(Point, 4326),
            status        text NOT NULL CHECK (status IN ('matched', 'new', 'review', 'rejected')),
            method        text,                        -- exact / alias / fuzzy / spatial / review decision
            score         double precision,
            address_id    bigint REFERENCES std_addresses (id),   -- matched or newly created address
            candidate_id  bigint REFERENCES std_addresses (id),   -- best guess shown to the reviewer
            reason        text,
            reviewed_by   text,
            reviewed_at   timestamptz,
            created_at    timestamptz NOT NULL DEFAULT now(),
            UNIQUE (source, row_hash)
        );
        CREATE INDEX dept_records_queue ON dept_records (id) WHERE status IN ('review', 'new') AND reviewed_at IS NULL;
        CREATE INDEX dept_records_address ON dept_records (address_id);
        CREATE INDEX dept_records_import ON dept_records (import_id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS dept_records;
        DROP TABLE IF EXISTS address_imports;
        DROP TRIGGER IF EXISTS std_addresses_no_delete ON std_addresses;
        DROP TRIGGER IF EXISTS std_addresses_history ON std_addresses;
        DROP TABLE IF EXISTS address_history;
        DROP TABLE IF EXISTS address_aliases;
        DROP TABLE IF EXISTS std_addresses;
        DROP FUNCTION IF EXISTS refuse_address_delete();
        DROP FUNCTION IF EXISTS record_address_history();
        DROP FUNCTION IF EXISTS next_address_code(text, text, integer);
        DROP FUNCTION IF EXISTS address_upper_text(text);
        DROP TABLE IF EXISTS address_code_counters;
        """
    )
