"""Address history per statement: the history of ``std_addresses`` is written by two statement-level
triggers that read the statement's transition tables and insert all its history rows in one
``INSERT … SELECT``, instead of one PL/pgSQL call and one single-row INSERT per changed row (0002's
per-row trigger was ~75 % of the demo's bulk address inserts).

Same rows as before: one per inserted address and one per *changed* updated address (an UPDATE whose
row is equal before and after, ignoring ``updated_at`` and the derived ``geom_3857``, writes nothing),
``before``/``after`` the same JSON, actor/action/reason from the transaction-local settings
``gridserver.actor`` / ``.action`` / ``.reason`` (else ``current_user`` / ``insert``|``update`` / NULL),
``changed_at`` the transaction time, written at the end of each statement as the row trigger was, in
the order the statement wrote the rows. The JSON is built with jsonb_build_object from the table's
columns as the catalogue lists them when the statement runs (so a column added later is recorded, as
``to_jsonb(NEW)`` did) instead of ``to_jsonb(row)``, which rendered both geometry columns as GeoJSON
only to drop them. PostgreSQL allows transition tables on single-event triggers only, hence two
triggers on one function. The one observable difference: an ``INSERT … ON CONFLICT DO UPDATE`` (none
in gridserver) now writes its updated rows' history before its inserted rows' instead of interleaved;
each address's own history is unchanged. Downgrade restores 0002's row trigger.
tests/address/test_history_trigger.py checks the two against each other.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

PER_STATEMENT_SQL = """
DROP TRIGGER IF EXISTS std_addresses_history ON std_addresses;
CREATE FUNCTION record_address_history_stmt() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    who  text := coalesce(nullif(current_setting('gridserver.actor', true), ''), current_user);
    what text := coalesce(nullif(current_setting('gridserver.action', true), ''), lower(TG_OP));
    why  text := nullif(current_setting('gridserver.reason', true), '');
    js   text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows) THEN
        RETURN NULL;
    END IF;
    -- The JSON of a row r: what 0002 wrote, to_jsonb(r) - 'geom_3857' - 'geom' - 'updated_at' plus the
    -- point as lonlat, built as jsonb_build_object of the table's other columns (the same values,
    -- read from the catalogue, so a column added later is recorded too) without rendering the two
    -- geometries as GeoJSON only to drop them, which was most of its cost. 40 columns per call (the
    -- function takes at most 100 arguments).
    SELECT string_agg(part, ' || ' ORDER BY chunk) INTO js FROM (
        SELECT chunk, 'jsonb_build_object(' || string_agg(format('%L, r.%I', attname, attname), ', ' ORDER BY attnum)
                      || ')' AS part
        FROM (SELECT attname, attnum, (row_number() OVER (ORDER BY attnum) - 1) / 40 AS chunk FROM pg_attribute
              WHERE attrelid = TG_RELID AND attnum > 0 AND NOT attisdropped
                AND attname NOT IN ('geom', 'geom_3857', 'updated_at')) a
        GROUP BY chunk) c;
    js := js || ' || jsonb_build_object(''lonlat'', CASE WHEN r.geom IS NULL THEN NULL '
                'ELSE jsonb_build_array(ST_X(r.geom), ST_Y(r.geom)) END)';
    IF TG_OP = 'INSERT' THEN
        EXECUTE format('INSERT INTO address_history (address_id, actor, action, reason, before, after) '
                       'SELECT r.id, $1, $2, $3, NULL, %s FROM new_rows r', js) USING who, what, why;
    ELSE
        -- The primary key cannot change (every address has history, whose foreign key refuses it), so
        -- old and new rows pair by id; pos keeps the order the statement updated the rows in; a row
        -- equal before and after is not a change.
        EXECUTE format('INSERT INTO address_history (address_id, actor, action, reason, before, after) '
                       'SELECT n.id, $1, $2, $3, o.j, n.j '
                       'FROM (SELECT row_number() OVER () AS pos, r.id, %1$s AS j FROM new_rows r) n '
                       'JOIN (SELECT r.id, %1$s AS j FROM old_rows r) o ON o.id = n.id '
                       'WHERE o.j <> n.j ORDER BY n.pos', js) USING who, what, why;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER std_addresses_history_insert AFTER INSERT ON std_addresses
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION record_address_history_stmt();
CREATE TRIGGER std_addresses_history_update AFTER UPDATE ON std_addresses
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION record_address_history_stmt();
"""

# 0002's row trigger (its function record_address_history() is left in place by the upgrade).
PER_ROW_SQL = """
DROP TRIGGER IF EXISTS std_addresses_history_insert ON std_addresses;
DROP TRIGGER IF EXISTS std_addresses_history_update ON std_addresses;
DROP FUNCTION IF EXISTS record_address_history_stmt();
CREATE TRIGGER std_addresses_history AFTER INSERT OR UPDATE ON std_addresses
    FOR EACH ROW EXECUTE FUNCTION record_address_history();
"""


def upgrade() -> None:
    op.execute(PER_STATEMENT_SQL)


def downgrade() -> None:
    op.execute(PER_ROW_SQL)
