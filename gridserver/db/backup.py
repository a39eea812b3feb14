"""``gridserver db backup FILE`` / ``gridserver db restore FILE``: pg_dump / pg_restore of the database.

Works on the embedded PostGIS and on DATABASE_URL's server alike (the installed PostgreSQL client
binaries, ``embedded.find_bindir``). A backup is one pg_dump custom-format archive (``-Fc``,
compressed, everything incl. ``alembic_version``).

A restore never touches the live database until the archive has been restored completely: it is
first checked (exists, is a pg_dump archive, its table of contents reads), then restored into a new
database beside the live one, and only then swapped in by renaming. The database it replaces is kept
as ``<name>_before_restore`` (an older one of that name is dropped), so a wrong restore can be
undone by hand. Clients connected to the database are disconnected during the swap.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gridserver.db import embedded

MAGIC = b"PGDMP"


class BackupError(RuntimeError):
    """Something about the file or the database is wrong; the message says what to do."""


@dataclass
class RestoreResult:
    database: str
    kept_as: str | None
    revision: str | None


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(_libpq(url))
    return urlunsplit(parts._replace(path="/" + name))


def _dbname(url: str) -> str:
    return urlsplit(_libpq(url)).path.lstrip("/") or "postgres"


def _tool(name: str) -> str:
    return str(embedded.find_bindir() / name)


def backup(url: str, file: Path) -> int:
    """Dump the database at ``url`` to ``file`` (pg_dump -Fc); returns the archive size in bytes.

    Written to ``file.partial`` first and renamed, so ``file`` is never a half-written archive."""
    file = Path(file)
    if not file.parent.is_dir():
        raise BackupError(f"folder {file.parent} does not exist: create it or choose another path")
    partial = file.with_name(file.name + ".partial")
    r = subprocess.run([_tool("pg_dump"), "-Fc", "--no-owner", "-f", str(partial), "-d", _libpq(url)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {r.stderr.strip()}")
    partial.replace(file)
    return file.stat().st_size


def check_archive(file: Path) -> int:
    """Raise BackupError unless ``file`` is a readable pg_dump custom archive; returns its entry count."""
    file = Path(file)
    if not file.exists():
        raise BackupError(f"backup file {file} does not exist")
    if not file.is_file():
        raise BackupError(f"{file} is not a file")
    with open(file, "rb") as f:
        head = f.read(len(MAGIC))
    if head != MAGIC:
        raise BackupError(f"{file} is not a gridserver backup (not a pg_dump custom-format archive; "
                          f"make one with `gridserver db backup FILE`)")
    r = subprocess.run([_tool("pg_restore"), "--list", str(file)], capture_output=True, text=True)
    if r.returncode != 0:
        raise BackupError(f"{file} is damaged (its table of contents cannot be read): {r.stderr.strip()}")
    entries = [line for line in r.stdout.splitlines() if line and not line.startswith(";")]
    if not any(" TABLE DATA " in line for line in entries):
        raise BackupError(f"{file} holds no table data: not a gridserver backup")
    return len(entries)


def _admin(url: str):
    import psycopg

    return psycopg.connect(_with_db(url, "postgres"), autocommit=True)


def _disconnect(conn, name: str) -> None:
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


def restore(url: str, file: Path) -> RestoreResult:
    """Replace the database at ``url`` by the archive ``file`` (see the module docstring)."""
    import psycopg

    check_archive(file)
    name = _dbname(url)
    staging, kept = f"{name}_restoring", f"{name}_before_restore"
    with _admin(url) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        conn.execute(f'DROP DATABASE IF EXISTS "{staging}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{staging}"')
    r = subprocess.run([_tool("pg_restore"), "--no-owner", "--exit-on-error", "-d", _with_db(url, staging), str(file)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        with _admin(url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{staging}" WITH (FORCE)')
        raise BackupError(f"restoring {file} failed, the database {name!r} is unchanged: {r.stderr.strip()[-1500:]}")
    with psycopg.connect(_with_db(url, staging)) as c:
        has = c.execute("SELECT to_regclass('alembic_version')").fetchone()[0]
        revision = c.execute("SELECT version_num FROM alembic_version").fetchone()[0] if has else None
    with _admin(url) as conn:
        if exists:
            conn.execute(f'DROP DATABASE IF EXISTS "{kept}" WITH (FORCE)')
            for attempt in range(20):  # new clients may connect between the terminate and the rename
                conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                _disconnect(conn, name)
                try:
                    conn.execute(f'ALTER DATABASE "{name}" RENAME TO "{kept}"')
                    break
                except psycopg.errors.ObjectInUse:
                    time.sleep(0.1)
            else:
                conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
                raise BackupError(f"database {name!r} stayed in use; nothing was replaced (the restored copy is "
                                  f"{staging!r})")
            conn.execute(f'ALTER DATABASE "{kept}" WITH ALLOW_CONNECTIONS true')
        conn.execute(f'ALTER DATABASE "{staging}" RENAME TO "{name}"')
    return RestoreResult(database=name, kept_as=kept if exists else None, revision=revision)
