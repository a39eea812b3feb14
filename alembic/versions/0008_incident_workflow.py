"""Incident workflow: taxonomy, routing, state machine, events, deadlines, escalation (issue 10).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

* ``taxonomy_versions`` / ``taxonomy_departments`` / ``taxonomy_items``: the category tree loaded from
  a YAML/CSV file; every load is a new version, one is active.
* New ``incidents`` columns: the routing decision (department, level, the rule that made it), the
  current step's due time, escalation level, supervision, tracking code, rating. ``status`` stays a
  column on ``incidents`` so NOTIFY triggers see every transition.
* ``incident_events``: the append-only event log (UPDATE/DELETE refused by a trigger).
* ``incident_escalations``: one row per (incident, step) — the UNIQUE key is what makes a killed and
  re-run escalation neither skip nor double a step.
* ``incident_attachments``, ``incident_notifications`` (webhook outbox), ``calendar_overrides``
  (local holiday / make-up-day changes), ``open311_api_keys`` (hashed keys tied to an account).
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE taxonomy_versions (
            id          serial PRIMARY KEY,
            name        text NOT NULL,
            source      text,
            sha256      text,
            active      boolean NOT NULL DEFAULT false,
            n_categories integer NOT NULL DEFAULT 0,
            n_items     integer NOT NULL DEFAULT 0,
            settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
            loaded_by   text,
            loaded_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE UNIQUE INDEX taxonomy_one_active ON taxonomy_versions (active) WHERE active;

        CREATE TABLE taxonomy_departments (
            version_id  integer NOT NULL REFERENCES taxonomy_versions (id) ON DELETE CASCADE,
            code        text NOT NULL,
            name        text NOT NULL,
            level       text NOT NULL CHECK (level IN ('grid', 'community', 'street', 'district')),
            PRIMARY KEY (version_id, code)
        );

        CREATE TABLE taxonomy_items (
            version_id   integer NOT NULL REFERENCES taxonomy_versions (id) ON DELETE CASCADE,
            code         text NOT NULL,
            parent_code  text,
            name         text NOT NULL,
            description  text NOT NULL DEFAULT '',
            keywords     text NOT NULL DEFAULT '',
            start_level  text NOT NULL CHECK (start_level IN ('grid', 'community', 'street', 'district')),
            departments  jsonb NOT NULL,            -- {level: department code}
            deadline     text NOT NULL,             -- '3wd' working days, '4h' hours
            workflow     text NOT NULL CHECK (workflow IN ('general', 'simple')),
            sort         integer NOT NULL DEFAULT 0,
            PRIMARY KEY (version_id, code)
        );

        ALTER TABLE incidents
            ADD COLUMN item_code        text,
            ADD COLUMN taxonomy_version integer,
            ADD COLUMN workflow         text NOT NULL DEFAULT 'general',
            ADD COLUMN channel          text NOT NULL DEFAULT 'staff',
            ADD COLUMN department       text,
            ADD COLUMN department_name  text,
            ADD COLUMN route_level      text,
            ADD COLUMN route_area_code  text,
            ADD COLUMN route_rule       jsonb,
            ADD COLUMN manual_reason    text,
            ADD COLUMN near_boundary    jsonb,
            ADD COLUMN due_at           timestamptz,
            ADD COLUMN deadline_at      timestamptz,
            ADD COLUMN escalation_level integer NOT NULL DEFAULT 0,
            ADD COLUMN supervised       boolean NOT NULL DEFAULT false,
            ADD COLUMN supervision_note text,
            ADD COLUMN assignee_id      integer REFERENCES users (id),
            ADD COLUMN merged_into      bigint REFERENCES incidents (id),
            ADD COLUMN tracking_code    text,
            ADD COLUMN contact          jsonb,
            ADD COLUMN webhook_url      text,
            ADD COLUMN rating           text CHECK (rating IN ('satisfied', 'basic', 'unsatisfied')),
            ADD COLUMN rating_comment   text,
            ADD COLUMN reopen_count     integer NOT NULL DEFAULT 0,
            ADD COLUMN accepted_at      timestamptz,
            ADD COLUMN dispatched_at    timestamptz,
            ADD COLUMN started_at       timestamptz,
            ADD COLUMN resolved_at      timestamptz,
            ADD COLUMN verified_at      timestamptz,
            ADD COLUMN closed_at        timestamptz,
            ADD COLUMN rated_at         timestamptz,
            ADD COLUMN on_time          boolean,
            ADD COLUMN was_returned     boolean NOT NULL DEFAULT false,
            ADD COLUMN was_declined     boolean NOT NULL DEFAULT false,
            ADD COLUMN auto_dispatched  boolean NOT NULL DEFAULT false;
        CREATE UNIQUE INDEX incidents_tracking ON incidents (tracking_code) WHERE tracking_code IS NOT NULL;
        CREATE INDEX incidents_due ON incidents (due_at) WHERE due_at IS NOT NULL;
        CREATE INDEX incidents_department ON incidents (department);
        CREATE INDEX incidents_manual ON incidents (id) WHERE manual_reason IS NOT NULL AND status = 'reported';
        CREATE INDEX incidents_dup ON incidents (category, created_at);
        CREATE INDEX incidents_updated ON incidents (updated_at);  -- KPI roll-up: what changed since
        CREATE INDEX incidents_merged_into ON incidents (merged_into) WHERE merged_into IS NOT NULL;  -- FK checks on delete
        CREATE INDEX incidents_open_due ON incidents (due_at) WHERE status NOT IN ('closed', 'rated', 'merged');

        CREATE TABLE incident_events (
            id           bigserial PRIMARY KEY,
            incident_id  bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
            at           timestamptz NOT NULL DEFAULT now(),
            actor_id     integer REFERENCES users (id),
            actor        text NOT NULL,              -- username, or 'system'
            action       text NOT NULL,
            from_status  text,
            to_status    text,
            note         text NOT NULL DEFAULT '',
            data         jsonb NOT NULL DEFAULT '{}'::jsonb,
            attachments  jsonb NOT NULL DEFAULT '[]'::jsonb
        );
        CREATE INDEX incident_events_incident ON incident_events (incident_id, id);
        CREATE FUNCTION incident_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND NOT EXISTS (SELECT 1 FROM incidents WHERE id = OLD.incident_id) THEN
                RETURN OLD;  -- cascading delete of a removed incident (demo rebuilds)
            END IF;
            RAISE EXCEPTION 'incident_events is append-only (% refused)', TG_OP;
        END $$;
        CREATE TRIGGER incident_events_no_update BEFORE UPDATE ON incident_events
            FOR EACH ROW EXECUTE FUNCTION incident_events_append_only();
        CREATE TRIGGER incident_events_no_delete BEFORE DELETE ON incident_events
            FOR EACH ROW EXECUTE FUNCTION incident_events_append_only();

        CREATE TABLE incident_escalations (
            id           bigserial PRIMARY KEY,
            incident_id  bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
            step         integer NOT NULL,           -- 1 = first escalation of this incident, 2 = second …
            from_level   text,
            to_level     text NOT NULL,
            reason       text NOT NULL,
            at           timestamptz NOT NULL DEFAULT now(),
            UNIQUE (incident_id, step)
        );

        CREATE TABLE incident_attachments (
            id            bigserial PRIMARY KEY,
            incident_id   bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
            event_id      bigint REFERENCES incident_events (id),
            filename      text NOT NULL,
            content_type  text NOT NULL,
            size          bigint NOT NULL,
            sha256        text NOT NULL,
            storage_key   text NOT NULL,
            exif_lon      double precision,
            exif_lat      double precision,
            uploader      text,
            created_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX incident_attachments_incident ON incident_attachments (incident_id);

        CREATE TABLE incident_notifications (
            id           bigserial PRIMARY KEY,
            incident_id  bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
            channel      text NOT NULL,              -- webhook | handler
            target       text NOT NULL,              -- URL, department code or username
            payload      jsonb NOT NULL,
            status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
            attempts     integer NOT NULL DEFAULT 0,
            last_error   text,
            created_at   timestamptz NOT NULL DEFAULT now(),
            sent_at      timestamptz
        );
        CREATE INDEX incident_notifications_pending ON incident_notifications (id) WHERE status = 'pending';

        CREATE TABLE calendar_overrides (
            day      date PRIMARY KEY,
            workday  boolean NOT NULL,
            note     text NOT NULL DEFAULT ''
        );

        -- KPI roll-up: per local day and street, counters and log-bucket histograms of step minutes;
        -- refreshed for days whose incidents changed (gridserver incidents rollup / periodic job).
        CREATE TABLE incident_kpi_daily (
            day          date NOT NULL,
            street_code  text NOT NULL,
            district_code text NOT NULL,
            counts       bigint[] NOT NULL,
            hist         bigint[] NOT NULL,
            PRIMARY KEY (day, street_code)
        );
        -- the same summed per month (first day of the month), so a year reads 12 rows per street
        CREATE TABLE incident_kpi_monthly (
            day          date NOT NULL,
            street_code  text NOT NULL,
            district_code text NOT NULL,
            counts       bigint[] NOT NULL,
            hist         bigint[] NOT NULL,
            PRIMARY KEY (day, street_code)
        );
        CREATE TABLE incident_kpi_daily_dims (
            day          date NOT NULL,
            street_code  text NOT NULL,
            dim          text NOT NULL,
            value        text NOT NULL,
            label        text,
            n            bigint NOT NULL,
            PRIMARY KEY (day, street_code, dim, value)
        );
        INSERT INTO gridserver_meta (key, value) VALUES ('incident_kpi_watermark', 0) ON CONFLICT DO NOTHING;

        CREATE TABLE open311_api_keys (
            id          serial PRIMARY KEY,
            name        text NOT NULL UNIQUE,
            key_hash    text NOT NULL UNIQUE,        -- sha256 of the key; the key itself is shown once
            user_id     integer NOT NULL REFERENCES users (id),
            active      boolean NOT NULL DEFAULT true,
            created_at  timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS open311_api_keys;
        DROP TABLE IF EXISTS incident_kpi_daily;
        DROP TABLE IF EXISTS incident_kpi_monthly;
        DROP TABLE IF EXISTS incident_kpi_daily_dims;
        DELETE FROM gridserver_meta WHERE key = 'incident_kpi_watermark';
        DROP TABLE IF EXISTS calendar_overrides;
        DROP TABLE IF EXISTS incident_notifications;
        DROP TABLE IF EXISTS incident_attachments;
        DROP TABLE IF EXISTS incident_escalations;
        DROP TABLE IF EXISTS incident_events;
        DROP FUNCTION IF EXISTS incident_events_append_only();
        DROP INDEX IF EXISTS incidents_tracking;
        DROP INDEX IF EXISTS incidents_due;
        DROP INDEX IF EXISTS incidents_department;
        DROP INDEX IF EXISTS incidents_manual;
        DROP INDEX IF EXISTS incidents_dup;
        DROP INDEX IF EXISTS incidents_updated;
        DROP INDEX IF EXISTS incidents_open_due;
        ALTER TABLE incidents
            DROP COLUMN IF EXISTS item_code, DROP COLUMN IF EXISTS taxonomy_version,
            DROP COLUMN IF EXISTS workflow, DROP COLUMN IF EXISTS channel, DROP COLUMN IF EXISTS department,
            DROP COLUMN IF EXISTS department_name, DROP COLUMN IF EXISTS route_level,
            DROP COLUMN IF EXISTS route_area_code, DROP COLUMN IF EXISTS route_rule,
            DROP COLUMN IF EXISTS manual_reason, DROP COLUMN IF EXISTS near_boundary,
            DROP COLUMN IF EXISTS due_at, DROP COLUMN IF EXISTS deadline_at,
            DROP COLUMN IF EXISTS escalation_level, DROP COLUMN IF EXISTS supervised,
            DROP COLUMN IF EXISTS supervision_note, DROP COLUMN IF EXISTS assignee_id,
            DROP COLUMN IF EXISTS merged_into, DROP COLUMN IF EXISTS tracking_code,
            DROP COLUMN IF EXISTS contact, DROP COLUMN IF EXISTS webhook_url, DROP COLUMN IF EXISTS rating,
            DROP COLUMN IF EXISTS rating_comment, DROP COLUMN IF EXISTS reopen_count,
            DROP COLUMN IF EXISTS accepted_at, DROP COLUMN IF EXISTS dispatched_at,
            DROP COLUMN IF EXISTS started_at, DROP COLUMN IF EXISTS resolved_at,
            DROP COLUMN IF EXISTS verified_at, DROP COLUMN IF EXISTS closed_at,
            DROP COLUMN IF EXISTS rated_at, DROP COLUMN IF EXISTS on_time,
            DROP COLUMN IF EXISTS was_returned, DROP COLUMN IF EXISTS was_declined,
            DROP COLUMN IF EXISTS auto_dispatched;
        DROP TABLE IF EXISTS taxonomy_items;
        DROP TABLE IF EXISTS taxonomy_departments;
        DROP TABLE IF EXISTS taxonomy_versions;
        """
    )
