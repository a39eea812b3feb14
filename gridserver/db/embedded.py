"""The embedded private PostGIS: a PostgreSQL cluster of our own, used when DATABASE_URL is unset.

It lives in ``$GRIDSERVER_HOME/pgdata`` (default ``./.gridserver/pgdata``), listens only on
127.0.0.1 at ``$GRIDSERVER_PG_PORT`` (default 55432) with trust auth, and is driven with the
installed PostgreSQL's own ``initdb``/``pg_ctl``. ``initdb`` refuses to run as root, so when we are
root the cluster is created and run as the unprivileged ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from gridserver.settings import Settings, get_settings


class EmbeddedError(RuntimeError):
    pass


def find_bindir(settings: Settings | None = None) -> Path:
    """PostgreSQL binaries: $GRIDSERVER_PG_BINDIR, else the newest install that has PostGIS."""
    s = settings or get_settings()
    if s.pg_bindir:
        return Path(s.pg_bindir)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for bindir in candidates:
        ver = bindir.split("/")[-2]
        if glob.glob(f"/usr/share/postgresql/{ver}/extension/postgis.control"):
            return Path(bindir)
    if candidates:
        raise EmbeddedError(
            f"PostgreSQL found in {candidates[0]} but without PostGIS: run `make setup` "
            f"(or: apt-get install postgresql-{candidates[0].split('/')[-2]}-postgis-3)"
        )
    pg_config = shutil.which("pg_config")
    if pg_config:
        return Path(subprocess.check_output([pg_config, "--bindir"], text=True).strip())
    raise EmbeddedError("no PostgreSQL server binaries found: run `make setup` (installs postgresql-15-postgis-3)")


def _as_postgres() -> list[str]:
    """Prefix that runs a command as the postgres user when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise EmbeddedError("running as root needs the 'postgres' system user (apt-get install postgresql)") from None
    return ["runuser", "-u", "postgres", "--"]


def _paths(s: Settings) -> tuple[Path, Path, Path]:
    home = Path(s.home).resolve()
    return home, home / "pgdata", home / "postgres.log"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(_as_postgres() + [str(c) for c in cmd], capture_output=True, text=True, **kw)


def _port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def port(settings: Settings | None = None) -> int:
    """The cluster's port: the one it was last started on (kept in ``$GRIDSERVER_HOME/port``),
    else the configured ``pg_port``."""
    s = settings or get_settings()
    f = Path(s.home).resolve() / "port"
    if f.exists():
        try:
            return int(f.read_text().strip())
        except ValueError:
            pass
    return s.pg_port


def _choose_port(s: Settings) -> int:
    """A free port for starting: ours if free, else the next free one (another checkout's cluster,
    or any other server, may hold the default)."""
    p = port(s)
    for candidate in [p, s.pg_port, *range(s.pg_port + 1, s.pg_port + 200)]:
        if not _port_in_use(candidate):
            (Path(s.home).resolve() / "port").write_text(str(candidate))
            return candidate
    raise EmbeddedError(f"no free port near {s.pg_port} for the embedded PostGIS")


def url(settings: Settings | None = None, dbname: str | None = None) -> str:
    s = settings or get_settings()
    return f"postgresql+psycopg://postgres@127.0.0.1:{port(s)}/{dbname or s.db_name}"


def is_running(settings: Settings | None = None) -> bool:
    s = settings or get_settings()
    _, data, _ = _paths(s)
    if not (data / "PG_VERSION").exists():
        return False
    r = _run([find_bindir(s) / "pg_ctl", "status", "-D", data])
    return r.returncode == 0


def init(settings: Settings | None = None) -> bool:
    """Create the cluster if it does not exist. Returns True when it was created now."""
    s = settings or get_settings()
    home, data, log = _paths(s)
    if (data / "PG_VERSION").exists():
        return False
    bindir = find_bindir(s)
    home.mkdir(parents=True, exist_ok=True)
    data.mkdir(mode=0o700, exist_ok=True)
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(data, pg.pw_uid, pg.pw_gid)
        log.touch()
        os.chown(log, pg.pw_uid, pg.pw_gid)
        r = _run(["test", "-w", data])
        if r.returncode != 0:
            raise EmbeddedError(f"the postgres user cannot reach {data}: make its parent directories traversable")
    r = _run([bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
    if r.returncode != 0:
        raise EmbeddedError(f"initdb failed:\n{r.stdout}\n{r.stderr}")
    with open(data / "postgresql.conf", "a") as f:
        f.write(
            "\n# gridserver embedded cluster\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{data}'\n"
            "fsync = on\nshared_buffers = 256MB\nwork_mem = 32MB\nmaintenance_work_mem = 256MB\n"
            "max_connections = 200\n"
        )
    return True


def start(settings: Settings | None = None, timeout: float = 60) -> str:
    """Initialise (first time) and start the private cluster; make sure our database exists.

    Returns the SQLAlchemy URL of the database. Idempotent.
    """
    s = settings or get_settings()
    init(s)
    _, data, log = _paths(s)
    if not is_running(s):
        p = _choose_port(s)
        r = _run([find_bindir(s) / "pg_ctl", "start", "-D", data, "-l", log, "-w", "-t", str(int(timeout)),
                  "-o", f"-p {p}"])
        if r.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise EmbeddedError(f"pg_ctl start failed on port {p}:\n{r.stdout}{r.stderr}\n{tail}")
    _wait_ready(s, timeout)
    ensure_database(url(s, "postgres"), s.db_name)
    return url(s)


def _wait_ready(s: Settings, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(host="127.0.0.1", port=port(s), user="postgres", dbname="postgres", connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(settings: Settings | None = None) -> bool:
    """Stop the private cluster cleanly (fast shutdown). Returns False if it was not running."""
    s = settings or get_settings()
    if not is_running(s):
        return False
    _, data, _ = _paths(s)
    r = _run([find_bindir(s) / "pg_ctl", "stop", "-D", data, "-m", "fast", "-w"])
    if r.returncode != 0:
        raise EmbeddedError(f"pg_ctl stop failed:\n{r.stdout}{r.stderr}")
    return True


def ensure_database(admin_url: str, name: str, *, template: str | None = None) -> bool:
    """Create database ``name`` (with PostGIS) on the server of ``admin_url`` unless it exists."""
    import psycopg

    conninfo = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        tmpl = f' TEMPLATE "{template}"' if template else ""
        conn.execute(f'CREATE DATABASE "{name}"{tmpl}')
    db_conninfo = conninfo.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    return True


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    conninfo = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- test sessions ------------------------------------------------------------------------------
# `make test` needs the cluster but must not leave it running when it was the one to start it; a
# cluster the user started (``gridserver db start``, ``make demo``) is left alone. Each session
# registers its pid; the marker file says tests started the cluster; the last session out stops it.
_TESTS_MARK = "started-by-tests"


def _sessions_lock(home: Path):
    import fcntl
    from contextlib import contextmanager

    @contextmanager
    def lock():
        home.mkdir(parents=True, exist_ok=True)
        with open(home / "test-sessions.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield home / "test-sessions"
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    return lock()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_for_tests(settings: Settings | None = None) -> str:
    """``start()`` for a test session: registers the session and remembers if tests started it."""
    s = settings or get_settings()
    home, _, _ = _paths(s)
    with _sessions_lock(home) as sessions:
        sessions.mkdir(exist_ok=True)
        (sessions / str(os.getpid())).touch()
        was_running = is_running(s)
        url_ = start(s)
        if not was_running:
            (home / _TESTS_MARK).write_text(str(os.getpid()))
    return url_


def end_of_tests(settings: Settings | None = None) -> bool:
    """Unregister the session; stop the cluster if tests started it and no other session runs.

    Returns True when it was stopped."""
    s = settings or get_settings()
    home, _, _ = _paths(s)
    with _sessions_lock(home) as sessions:
        (sessions / str(os.getpid())).unlink(missing_ok=True)
        others = [p for p in sessions.glob("*") if p.name.isdigit() and _alive(int(p.name))]
        mark = home / _TESTS_MARK
        if others or not mark.exists():
            return False
        mark.unlink()
        return stop(s)
