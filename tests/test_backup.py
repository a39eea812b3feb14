"""``gridserver db backup`` / ``db restore`` round trip, and clear errors for missing or bad files.

Runs the real CLI (subprocess) against a database of its own on the test server, so swapping the
restored database in never disturbs the session's test database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from conftest import load_areas, small_city_areas
from gridserver.db import embedded, migrate

ROOT = Path(__file__).resolve().parents[1]

FINGERPRINT = """SELECT count(*), md5(string_agg(code || name || md5(ST_AsBinary(geom)), ',' ORDER BY code))
                 FROM admin_areas"""


@pytest.fixture(scope="module")
def backup_db(db_url):
    name = f"gs_backup_{os.getpid()}"
    admin = db_url.rsplit("/", 1)[0] + "/postgres"
    for n in (name, f"{name}_before_restore", f"{name}_restoring"):
        embedded.drop_database(admin, n)
    embedded.ensure_database(admin, name)
    url = admin.rsplit("/", 1)[0] + "/" + name
    migrate.upgrade(url)
    from sqlalchemy import create_engine

    eng = create_engine(url)
    load_areas(eng, small_city_areas())
    eng.dispose()
    yield url.replace("postgresql+psycopg://", "postgresql://")
    for n in (name, f"{name}_before_restore", f"{name}_restoring"):
        embedded.drop_database(admin, n)


def cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "gridserver.cli", "db", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def fingerprint(url: str):
    with psycopg.connect(url) as c:
        return c.execute(FINGERPRINT).fetchone()


def test_backup_then_restore_brings_back_exactly_what_was_saved(backup_db, tmp_path):
    before = fingerprint(backup_db)
    assert before[0] == 23  # the small city: 1 district, 2 streets, 4 communities, 16 grids
    archive = tmp_path / "city.dump"
    r = cli(backup_db, "backup", str(archive))
    assert r.returncode == 0, r.stdout + r.stderr
    assert archive.read_bytes()[:5] == b"PGDMP" and "backup written" in r.stdout

    with psycopg.connect(backup_db) as c:  # changes made after the backup ...
        c.execute("DELETE FROM admin_areas WHERE level = 'grid'")
        c.execute("UPDATE admin_areas SET name = '改名' WHERE code = '440104'")
    assert fingerprint(backup_db) != before

    r = cli(backup_db, "restore", str(archive))
    assert r.returncode == 0, r.stdout + r.stderr
    assert fingerprint(backup_db) == before  # ... are gone, everything saved is back
    with psycopg.connect(backup_db) as c:
        assert c.execute("SELECT version_num FROM alembic_version").fetchone()[0] == migrate.current(backup_db)
        assert c.execute("SELECT postgis_version()").fetchone()[0]
    kept = backup_db.rsplit("/", 1)[0] + "/" + backup_db.rsplit("/", 1)[1] + "_before_restore"
    assert fingerprint(kept)[0] == 7  # the replaced database is kept, with its 7 non-grid areas
    assert "_before_restore" in r.stdout


def test_restore_of_a_missing_file_says_so_and_changes_nothing(backup_db, tmp_path):
    before = fingerprint(backup_db)
    r = cli(backup_db, "restore", str(tmp_path / "nope.dump"))
    assert r.returncode == 2
    assert "does not exist" in r.stdout and "nope.dump" in r.stdout
    assert fingerprint(backup_db) == before


@pytest.mark.parametrize("content, says", [
    (b"id,name\n1,not a dump\n", "not a gridserver backup"),
    (b"PGDMP" + os.urandom(2000), "damaged"),
])
def test_restore_of_a_wrong_or_corrupt_file_says_so_and_changes_nothing(backup_db, tmp_path, content, says):
    before = fingerprint(backup_db)
    bad = tmp_path / "bad.dump"
    bad.write_bytes(content)
    r = cli(backup_db, "restore", str(bad))
    assert r.returncode == 2, r.stdout + r.stderr
    assert says in r.stdout
    assert fingerprint(backup_db) == before


def test_restore_of_a_truncated_backup_fails_and_leaves_the_database_alone(backup_db, tmp_path):
    archive = tmp_path / "full.dump"
    assert cli(backup_db, "backup", str(archive)).returncode == 0
    before = fingerprint(backup_db)
    cut = tmp_path / "cut.dump"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    r = cli(backup_db, "restore", str(cut))
    assert r.returncode == 2, r.stdout + r.stderr
    out = " ".join(r.stdout.split())
    assert "restore failed" in out
    assert "damaged" in out or "is unchanged" in out  # caught by the check, or by pg_restore midway
    assert fingerprint(backup_db) == before


def test_backup_into_a_missing_folder_is_a_clear_error(backup_db, tmp_path):
    r = cli(backup_db, "backup", str(tmp_path / "no" / "such" / "x.dump"))
    assert r.returncode == 2
    assert "does not exist" in r.stdout
