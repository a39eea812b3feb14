"""The ``gridserver`` command line: the same services the API uses, one sub-command per domain."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(help="gridserver 网格化管理服务 — grid-management server for city governance.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
console = Console()

db_app = typer.Typer(help="数据库 the database: embedded private PostGIS or DATABASE_URL.", no_args_is_help=True)
import_app = typer.Typer(help="导入 import data files (areas, addresses).", no_args_is_help=True)
check_app = typer.Typer(help="检查 data quality checks.", no_args_is_help=True)
map_app = typer.Typer(help="地图 static map exports.", no_args_is_help=True)
address_app = typer.Typer(help="标准地址库 address parsing and the standard address base.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
app.add_typer(check_app, name="check")
app.add_typer(map_app, name="map")
app.add_typer(address_app, name="address")


def _optional(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            return None
        raise


def _command(group: typer.Typer, name: str, module: str, attr: str) -> None:
    mod = _optional(module)
    if mod is not None and hasattr(mod, attr):
        group.command(name)(getattr(mod, attr))


def _typer(group: typer.Typer, name: str | None, module: str, attr: str = "app") -> None:
    """Mount a domain's Typer app; name=None merges its commands into ``group``."""
    mod = _optional(module)
    if mod is None or not hasattr(mod, attr):
        return
    sub: typer.Typer = getattr(mod, attr)
    if name:
        group.add_typer(sub, name=name)
    else:
        for info in sub.registered_commands:
            group.registered_commands.append(info)


# --- database ---------------------------------------------------------------------------------
@db_app.command("start")
def db_start():
    """Start the embedded PostGIS (created on first use) and apply migrations."""
    from gridserver.db import embedded, migrate
    from gridserver.settings import get_settings

    s = get_settings()
    if s.database_url:
        console.print("DATABASE_URL is set: using that server, nothing to start.")
    else:
        url = embedded.start(s)
        console.print(f"embedded PostGIS running: {url}")
    migrate.upgrade()
    console.print("schema up to date")


@db_app.command("stop")
def db_stop():
    """Stop the embedded PostGIS cleanly."""
    from gridserver.db import embedded

    console.print("stopped" if embedded.stop() else "was not running")


@db_app.command("status")
def db_status():
    """Say which database is in use, whether it runs, and its schema revision."""
    from gridserver.db import embedded, migrate
    from gridserver.settings import get_settings

    s = get_settings()
    if s.database_url:
        from sqlalchemy.engine import make_url

        try:  # never print the password
            shown = make_url(s.database_url).render_as_string(hide_password=True)
        except Exception:  # not a URL SQLAlchemy reads: show no more than the scheme
            shown = s.database_url.split("://", 1)[0] + "://***"
        console.print(f"DATABASE_URL: {shown}", highlight=False)
        console.print(f"schema revision: {migrate.current()}")
        return
    running = embedded.is_running(s)
    console.print(f"embedded PostGIS in {s.home.resolve() / 'pgdata'} on 127.0.0.1:{embedded.port(s)}: "
                  f"{'running' if running else 'stopped'}")
    if running:
        console.print(f"schema revision: {migrate.current(embedded.url(s))}")
    raise typer.Exit(0 if running else 3)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head", help="target Alembic revision")):
    """Apply Alembic migrations (starts the embedded PostGIS if needed)."""
    from gridserver.db import migrate

    migrate.upgrade(revision=revision)
    console.print(f"schema at {migrate.current()}")


@db_app.command("backup")
def db_backup(file: Path = typer.Argument(..., help="archive to write (pg_dump custom format)")):
    """Back up the database (embedded or DATABASE_URL) into one pg_dump -Fc archive."""
    from gridserver.db import backup
    from gridserver.db.engine import database_url

    try:
        size = backup.backup(database_url(), file)
    except backup.BackupError as exc:
        console.print(f"[red]backup failed:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"backup written: {file} ({size:,} bytes)")


@db_app.command("restore")
def db_restore(file: Path = typer.Argument(..., help="archive made by `gridserver db backup`")):
    """Replace the database by a backup (checked and restored beside it first, then swapped in)."""
    from gridserver.db import backup
    from gridserver.db.engine import database_url

    try:
        res = backup.restore(database_url(), file)
    except backup.BackupError as exc:
        console.print(f"[red]restore failed:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(f"restored {file} into database {res.database!r} (schema revision {res.revision})")
    if res.kept_as:
        console.print(f"the database it replaced is kept as {res.kept_as!r} (drop it when no longer needed)")


# --- serving ----------------------------------------------------------------------------------
@app.command("serve")
def serve(host: str = typer.Option(None, help="bind address (default 127.0.0.1)"),
          port: int = typer.Option(None, help="port (default 8000)"),
          workers: int = typer.Option(1, min=1, help="server processes sharing the port (e.g. one per core); "
                                                      "each has its own pools and tile cache"),
          access_log: bool = typer.Option(True, "--access-log/--no-access-log",
                                          help="one log line per request (paths only, never query strings)")):
    """Serve the API, vector tiles and the map page (uvicorn; uvloop and httptools when installed)."""
    import uvicorn

    from gridserver.db import migrate
    from gridserver.settings import get_settings

    from gridserver.auth.startup import StartupRefused, check_secret, demo_accounts
    from gridserver.logconfig import uvicorn_log_config

    s = get_settings()
    try:
        check_secret(s)
    except StartupRefused as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    migrate.upgrade()
    from gridserver.db.engine import get_engine

    with get_engine().connect() as conn:
        demo = demo_accounts(conn)
    if demo and s.demo_mode:
        from gridserver.auth.startup import DEMO_BANNER
        from gridserver.demo.build import DEMO_PASSWORD

        console.print(f"[bold red]{DEMO_BANNER.format(password=DEMO_PASSWORD)}[/bold red] {', '.join(demo)}",
                      highlight=False)
    elif demo:
        console.print(f"[yellow]{len(demo)} demo accounts ({', '.join(demo)}) exist in this database; they are "
                      "refused outside demo mode (`gridserver users passwd NAME` makes one a real account).[/yellow]",
                      highlight=False)
    host, port = host or s.host, port or s.port
    console.print(f"gridserver at http://{host}:{port}/map  (API docs http://{host}:{port}/docs)"
                  + (f", {workers} worker processes" if workers > 1 else ""))
    uvicorn.run("gridserver.api:create_app", factory=True, host=host, port=port, log_level="info",
                log_config=uvicorn_log_config(), workers=workers, access_log=access_log,
                proxy_headers=False)  # X-Forwarded-For: GRIDSERVER_TRUSTED_PROXIES


# --- domains ----------------------------------------------------------------------------------
_command(app, "demo", "gridserver.demo.build", "demo_command")
_command(import_app, "areas", "gridserver.areas.cli_import", "import_areas")
_command(import_app, "addresses", "gridserver.address.cli", "import_addresses")
_command(check_app, "topology", "gridserver.areas.cli_import", "check_topology")
_command(map_app, "export", "gridserver.maps.export", "export_command")
_typer(app, "users", "gridserver.auth.cli")
_typer(address_app, None, "gridserver.address.cli_parse")
_typer(address_app, None, "gridserver.address.cli")
# domains being built (a missing module is skipped):
_typer(import_app, None, "gridserver.blockdata.cli_import")
_typer(app, "jobs", "gridserver.jobs.cli")
_typer(app, "taxonomy", "gridserver.incidents.cli_taxonomy")
_typer(app, "incidents", "gridserver.incidents.cli")
_typer(app, "grids", "gridserver.areas.cli_division")
_typer(app, "tiles", "gridserver.maps.cli_tiles")
_typer(map_app, None, "gridserver.maps.cli_reports")
_command(app, "export", "gridserver.analytics.export", "export_command")
_command(app, "analyze", "gridserver.analytics.distributed", "analyze_command")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
