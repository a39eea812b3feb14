"""The address history triggers (per statement, 0014) write the rows 0002's per-row trigger wrote.

Each scenario runs twice in one transaction on real PostGIS: once with 0002's row trigger put back
(inside a savepoint that is rolled back), once with the triggers the migrations installed; the history
rows must be equal (actor, action, reason, before, after, changed_at), with address ids mapped to codes
(sequences do not roll back, codes do). Scenarios: bulk_create (multi-row INSERT … SELECT per level),
COPY, a multi-row INSERT without an actor (defaults), move, road rename (alias rows in between), updates
that change nothing or only some rows, approve (pending → active), retire with descendants, merge
(retire with replaced_by), two writing CTEs in one statement, an upsert, columns added to the table.
The order within one statement is checked against its RETURNING order. Everything is rolled back.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from sqlalchemy import text

from gridserver.address.base import (NewAddress, activate_address, bulk_create, copy_rows, retire_address,
                                     set_actor, update_address)

_MIG = Path(__file__).resolve().parents[2] / "alembic" / "versions" / "0014_slot.py"
_spec = importlib.util.spec_from_file_location("migration_0014", _MIG)
migration = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(migration)

# The reference: 0002's row trigger on 0002's function (which 0014 leaves in place).
ROW_TRIGGER = ("DROP TRIGGER IF EXISTS std_addresses_history ON std_addresses",
               "DROP TRIGGER IF EXISTS std_addresses_history_insert ON std_addresses",
               "DROP TRIGGER IF EXISTS std_addresses_history_update ON std_addresses",
               "CREATE TRIGGER std_addresses_history AFTER INSERT OR UPDATE ON std_addresses "
               "FOR EACH ROW EXECUTE FUNCTION record_address_history()")

D = "440104"
ROAD1, ROAD2, ROAD3 = "史录测一路", "史录测二路", "史录测三路"


def _no_actor(conn) -> None:
    conn.execute(text("SELECT set_config('gridserver.actor', '', true), set_config('gridserver.action', '', true), "
                      "set_config('gridserver.reason', '', true)"))


def _code(conn, road: str, *parts: str) -> str:
    from gridserver.address.keys import make_key
    from gridserver.address.normalize import normalize_address

    key = make_key(normalize_address(road), *parts, *[""] * (5 - len(parts)))
    return conn.execute(text("SELECT code FROM std_addresses WHERE match_key = :k ORDER BY id DESC LIMIT 1"),
                        {"k": key}).scalar_one()


def scenario(conn) -> None:
    """Everything gridserver does to standard addresses, plus raw SQL forms a bulk load may use."""
    _no_actor(conn)
    # defaults: no actor set → current_user, 'insert'/'update', no reason; a multi-row VALUES insert
    conn.execute(text(
        "INSERT INTO std_addresses (code, level, name, full_text, match_key, road, road_key, district_code, geom) VALUES "
        f"('{D}R99901', 'road', '{ROAD3}', '{ROAD3}', '{ROAD3}|||||', '{ROAD3}', '{ROAD3}', '{D}', NULL), "
        f"('{D}R99901H0001', 'house', '1号', '{ROAD3}1号', '{ROAD3}|1||||', '{ROAD3}', '{ROAD3}', '{D}', "
        "ST_SetSRID(ST_MakePoint(113.27, 23.13), 4326))"))
    conn.execute(text(f"UPDATE std_addresses SET geom_source = 'survey' WHERE code LIKE '{D}R99901%'"))

    set_actor(conn, "tester", "create", "建库")
    bulk_create(conn, [
        NewAddress(ROAD1, "13", "3", "2", "", "501", lon=113.2665, lat=23.1291, geom_source="survey"),
        NewAddress(ROAD1, "13", "3", "2", "", "502"),
        NewAddress(ROAD1, "15", lon=113.2670, lat=23.1295),
        NewAddress(ROAD2, "8", "A", "", "5", ""),            # no point anywhere: lonlat null
    ], default_district=D)

    # COPY straight into the table (the demo loader's way), a parent from the rows above
    set_actor(conn, "loader", "import", "批量导入")
    parent = conn.execute(text("SELECT id, code FROM std_addresses WHERE code = :c"),
                          {"c": _code(conn, ROAD1, "15")}).one()
    cols = ("code", "level", "parent_id", "name", "full_text", "match_key", "road", "road_key", "house_no", "room",
            "geom", "geom_source", "district_code", "source")
    rows = [(f"{parent.code}S{i:04d}", "room", parent.id, f"{100 + i}室", f"{ROAD1}15号{100 + i}室",
             f"{ROAD1}|15||||{100 + i}", ROAD1, ROAD1, "15", str(100 + i),
             f"SRID=4326;POINT(113.2{i:03d} 23.1{i:03d})" if i % 2 else None, "survey", D, "copy")
            for i in range(1, 41)]
    assert copy_rows(conn, "std_addresses", cols, rows) == 40

    # a move, then a road rename (one UPDATE per address, alias history rows in between)
    update_address(conn, _code(conn, ROAD1, "13"), actor="wang", reason="实地核查", lon=113.2668, lat=23.1293)
    update_address(conn, _code(conn, ROAD2), actor="wang", reason="道路更名", name="史录测新路")

    # updates that change nothing (updated_at and geom_3857 do not count), some rows only, no rows
    set_actor(conn, "tester", "touch", "无变化")
    conn.execute(text(f"UPDATE std_addresses SET updated_at = now() + interval '1 hour', name = name, "
                      f"geom = geom WHERE road_key = '{ROAD1}'"))
    conn.execute(text(f"UPDATE std_addresses SET source = CASE WHEN room IN ('101', '105', '140') THEN 'fixed' "
                      f"ELSE source END WHERE road_key = '{ROAD1}'"))
    conn.execute(text("UPDATE std_addresses SET source = 'never' WHERE false"))

    # approve: pending room and its pending ancestors become active in one recursive UPDATE
    set_actor(conn, "tester", "report", "新增待审")
    bulk_create(conn, [NewAddress(ROAD1, "17", "1", "", "", "1101", lon=113.2675, lat=23.1297)], status="pending",
                default_district=D)
    activate_address(conn, conn.execute(text("SELECT id FROM std_addresses WHERE code = :c"),
                                        {"c": _code(conn, ROAD1, "17", "1", "", "", "1101")}).scalar_one(),
                     actor="li", reason="核实无误")

    # retire with descendants; merge = retire pointing at the address that replaces it
    retire_address(conn, _code(conn, ROAD1, "13", "3"), actor="li", reason="楼栋拆除")
    target = conn.execute(text("SELECT id FROM std_addresses WHERE code = :c"),
                          {"c": _code(conn, ROAD1, "15")}).scalar_one()
    retire_address(conn, _code(conn, ROAD1, "17"), actor="li", reason="同一地址", replaced_by=target, action="merge")

    # one statement, two writing CTEs on the table (an UPDATE and an INSERT)
    set_actor(conn, "tester", "cte", "")
    conn.execute(text(
        f"WITH u AS (UPDATE std_addresses SET geom_source = 'survey' WHERE code LIKE '{D}R99901%' RETURNING id) "
        "INSERT INTO std_addresses (code, level, name, full_text, match_key, road, road_key, district_code) "
        f"SELECT '{D}R99901H0002', 'house', '2号', '{ROAD3}2号', '{ROAD3}|2||||', '{ROAD3}', '{ROAD3}', '{D}' "
        "FROM (SELECT count(*) FROM u) c"))
    conn.execute(text(
        f"WITH u AS (UPDATE std_addresses SET geom_source = 'department' WHERE code LIKE '{D}R99901%' RETURNING id) "
        "INSERT INTO std_addresses (code, level, name, full_text, match_key, road, road_key, district_code) "
        f"SELECT '{D}R99901H0003', 'house', '3号', '{ROAD3}3号', '{ROAD3}|3||||', '{ROAD3}', '{ROAD3}', '{D}' "
        "FROM (SELECT count(*) FROM u) c"))


def upsert(conn) -> None:
    """INSERT … ON CONFLICT DO UPDATE: some rows inserted, some updated (one of them to no change)."""
    set_actor(conn, "tester", "upsert", "合并导入")
    sql = ("INSERT INTO std_addresses AS s (code, level, name, full_text, match_key, road, road_key, district_code) "
           "SELECT c, 'house', n || '号', :r || n || '号', :r || '|' || n || '||||', :r, :r, :d "
           "FROM unnest(CAST(:codes AS text[]), CAST(:nos AS text[])) AS t(c, n) "
           "ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, updated_at = now()")
    conn.execute(text(sql), {"r": ROAD3, "d": D, "codes": [f"{D}R99902H{i:04d}" for i in (1, 2, 3)], "nos": ["1", "2", "3"]})
    conn.execute(text(sql), {"r": ROAD3, "d": D, "codes": [f"{D}R99902H{i:04d}" for i in (4, 1, 5, 2)],
                             "nos": ["4", "9", "5", "2"]})


def _capture(conn, since: int) -> list[tuple]:
    """History rows written after ``since`` in id order, ids replaced by codes."""
    code_of = dict(conn.execute(text("SELECT id, code FROM std_addresses")).all())

    def norm(j):
        if j is None:
            return None
        j = dict(j)
        for k in ("id", "parent_id", "replaced_by"):
            if j.get(k) is not None:
                j[k] = code_of[j[k]]
        return json.dumps(j, sort_keys=True, ensure_ascii=False)

    rows = conn.execute(text("SELECT address_id, changed_at, actor, action, reason, before, after, "
                             "changed_at = now() AS at_txn_time FROM address_history WHERE id > :s ORDER BY id"),
                        {"s": since}).all()
    assert all(r.at_txn_time for r in rows)
    return [(code_of[r.address_id], r.changed_at, r.actor, r.action, r.reason, norm(r.before), norm(r.after))
            for r in rows]


def _per_address(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda r: r[0])  # stable: keeps each address's own order


def _per_row_then_installed(engine, fn) -> tuple[list[tuple], list[tuple]]:
    """History from ``fn`` under 0002's row trigger, then under the installed triggers (all rolled back)."""
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            since = conn.execute(text("SELECT coalesce(max(id), 0) FROM address_history")).scalar()
            sp = conn.begin_nested()
            for sql in ROW_TRIGGER:
                conn.execute(text(sql))
            fn(conn)
            reference = _capture(conn, since)
            sp.rollback()
            _no_actor(conn)
            fn(conn)
            installed = _capture(conn, since)
        finally:
            tx.rollback()
    return reference, installed


def test_history_rows_are_those_of_the_row_trigger(engine):
    reference, installed = _per_row_then_installed(engine, scenario)
    # Within one statement the rows come in the order the statement wrote them, which depends on the
    # table's physical layout (not the same in the two runs): compare each address's own history
    # exactly, and the sequence of who/what/why/when over all rows (test_order_is_the_statements checks
    # the order within a statement). One statement can write rows of different actions (a road rename
    # writes `update` and `alias` rows), so the who/what/why/when sequence is compared as a multiset.
    assert _per_address(installed) == _per_address(reference)
    assert sorted(map(repr, (r[1:5] for r in installed))) == sorted(map(repr, (r[1:5] for r in reference)))
    # and they are what the operations mean
    acts = [(r[3], r[2]) for r in installed]
    me = acts[0][1]
    assert acts[:4] == [("insert", me), ("insert", me), ("update", me), ("update", me)]
    assert [r[4] for r in installed[:4]] == [None] * 4
    assert acts.count(("create", "tester")) == 6 + 1 + 4  # levels made by bulk_create: 13号 tree, 15号, 二路 tree
    assert acts.count(("import", "loader")) == 40
    assert sum(a == "update" and w == "wang" for a, w in acts) == 1 + 4  # move; road, house, building, floor renamed
    assert sum(a == "alias" for a, _ in acts) == 2
    touched = [r for r in installed if r[3] == "touch"]
    assert sorted(r[0][-4:] for r in touched) == ["0001", "0005", "0040"]  # the rooms whose source changed
    assert all(json.loads(r[5])["source"] == "copy" and json.loads(r[6])["source"] == "fixed" for r in touched)
    assert [r[3] for r in installed if r[2] == "li"] == ["approve"] * 3 + ["retire"] * 4 + ["merge"] * 3
    merged = [json.loads(r[6]) for r in installed if r[3] == "merge"]
    assert [m["replaced_by"] is not None for m in merged] == [True, False, False]
    assert all(m["status"] == "retired" for m in merged)
    # 1st CTE statement: its UPDATE changes nothing, its INSERT adds H0002; 2nd: three updates, then H0003
    cte = [(r[0], json.loads(r[5])["geom_source"] if r[5] else None) for r in installed if r[3] == "cte"]
    assert cte[0] == (f"{D}R99901H0002", None) and cte[4] == (f"{D}R99901H0003", None)
    assert sorted(cte[1:4], key=str) == [(f"{D}R99901", "survey"), (f"{D}R99901H0001", "survey"),
                                         (f"{D}R99901H0002", None)]
    assert len(cte) == 5


def test_upsert_keeps_each_addresses_history(engine):
    reference, installed = _per_row_then_installed(engine, upsert)

    assert _per_address(installed) == _per_address(reference)
    names = {r[0][-5:]: json.loads(r[6])["name"] for r in installed}
    assert names == {"H0001": "9号", "H0002": "2号", "H0003": "3号", "H0004": "4号", "H0005": "5号"}
    # H0002 was "updated" to the same row: no history for it in the second statement
    assert [r[0][-5:] for r in installed].count("H0002") == 1
    assert [r[0][-5:] for r in installed].count("H0001") == 2


def test_columns_added_later_are_recorded_too(engine):
    """The history JSON holds every column but the point's two forms and updated_at, whatever the table has."""
    def widen_then_write(conn):
        conn.execute(text("ALTER TABLE std_addresses "
                          + ", ".join(f"ADD COLUMN extra_{i:02d} text DEFAULT 'e{i}'" for i in range(30))))
        set_actor(conn, "tester", "widen", "新列")
        conn.execute(text("INSERT INTO std_addresses (code, level, name, full_text, match_key, road, road_key) "
                          f"VALUES ('{D}R99903', 'road', 'r', 'r', '{ROAD3}x|||||', '{ROAD3}x', '{ROAD3}x')"))
        conn.execute(text(f"UPDATE std_addresses SET extra_29 = 'changed' WHERE code = '{D}R99903'"))
        conn.execute(text(f"UPDATE std_addresses SET extra_03 = 'e3', updated_at = now() WHERE code = '{D}R99903'"))

    reference, installed = _per_row_then_installed(engine, widen_then_write)
    assert installed == reference and len(installed) == 2
    after = json.loads(installed[1][6])
    assert after["extra_00"] == "e0" and after["extra_29"] == "changed" and json.loads(installed[1][5])["extra_29"] == "e29"
    with engine.connect() as conn:
        cols = set(conn.execute(text("SELECT column_name FROM information_schema.columns "
                                     "WHERE table_name = 'std_addresses'")).scalars())
    assert set(after) == cols - {"geom", "geom_3857", "updated_at"} | {f"extra_{i:02d}" for i in range(30)} | {"lonlat"}


def test_order_is_the_statements(engine):
    """History rows of one statement follow the order it wrote the rows in (its RETURNING order)."""
    with engine.connect() as conn:
        tx = conn.begin()
        try:
            set_actor(conn, "tester", "create", "顺序")
            new = conn.execute(text(
                "INSERT INTO std_addresses (code, level, name, full_text, match_key, road, road_key, district_code) "
                f"SELECT '{D}R998' || lpad(i::text, 2, '0'), 'road', 'r' || i, 'r' || i, :r || i || '|||||', :r || i, "
                f":r || i, '{D}' FROM generate_series(1, 60) i ORDER BY i % 7, i DESC RETURNING id"), {"r": ROAD3}).scalars().all()
            # move every third row to the end of the table, so a scan meets them out of id order
            set_actor(conn, "tester", "move", "顺序")
            conn.execute(text("UPDATE std_addresses SET name = name || '′' WHERE id = ANY(:i)"), {"i": new[::3]})
            set_actor(conn, "tester", "update", "顺序")
            conn.execute(text("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off"))  # a table scan
            done = conn.execute(text("UPDATE std_addresses SET source = 'order' WHERE id = ANY(:i) "
                                     "AND NOT (id = ANY(:skip)) RETURNING id"), {"i": new, "skip": new[5:9]}).scalars().all()
            hist = lambda action: conn.execute(text(  # noqa: E731
                "SELECT address_id FROM address_history WHERE address_id = ANY(:i) AND action = :a AND reason = '顺序' "
                "ORDER BY id"), {"i": new, "a": action}).scalars().all()
            assert hist("create") == new and len(new) == 60
            assert hist("update") == done and len(done) == 56 and done != sorted(done)
        finally:
            tx.rollback()


def test_the_history_triggers_are_per_statement_with_transition_tables(engine):
    with engine.connect() as conn:
        trig = conn.execute(text(
            "SELECT tgname, (tgtype & 1) = 1 AS per_row, tgoldtable, tgnewtable FROM pg_trigger "
            "WHERE tgrelid = 'std_addresses'::regclass AND NOT tgisinternal AND tgname LIKE 'std_addresses_history%' "
            "ORDER BY tgname")).all()
    assert [(t.tgname, t.per_row, t.tgoldtable, t.tgnewtable) for t in trig] == [
        ("std_addresses_history_insert", False, None, "new_rows"),
        ("std_addresses_history_update", False, "old_rows", "new_rows")]


def test_downgrade_and_upgrade_sql_swap_the_triggers(engine):
    """0014's downgrade puts the row trigger back, its upgrade the statement triggers (rolled back)."""
    def triggers(conn):
        return conn.execute(text(
            "SELECT tgname, (tgtype & 1) = 1 FROM pg_trigger WHERE tgrelid = 'std_addresses'::regclass "
            "AND NOT tgisinternal AND tgname LIKE 'std_addresses_history%' ORDER BY tgname")).all()

    with engine.connect() as conn:
        tx = conn.begin()
        try:
            conn.execute(text(migration.PER_ROW_SQL))
            assert [tuple(t) for t in triggers(conn)] == [("std_addresses_history", True)]
            conn.execute(text(migration.PER_STATEMENT_SQL))
            assert [tuple(t) for t in triggers(conn)] == [("std_addresses_history_insert", False),
                                                         ("std_addresses_history_update", False)]
        finally:
            tx.rollback()
