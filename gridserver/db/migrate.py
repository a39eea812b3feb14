"""Apply Alembic migrations programmatically (``gridserver db upgrade``, demo, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parents[2]


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    if url:
        cfg.attributes["url"] = url
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the database at ``url`` (default: the configured one) to ``revision``."""
    if url is None:
        from gridserver.db.engine import database_url

        url = database_url()
    command.upgrade(alembic_config(url), revision)


def current(url: str | None = None) -> str | None:
    from sqlalchemy import create_engine, text

    if url is None:
        from gridserver.db.engine import database_url

        url = database_url()
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            exists = c.execute(text("SELECT to_regclass('alembic_version')")).scalar()
            return c.execute(text("SELECT version_num FROM alembic_version")).scalar() if exists else None
    finally:
        eng.dispose()
