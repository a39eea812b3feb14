"""Shared fixtures: a fresh PostGIS database per test session, a live HTTP server, a small city.

The database server is DATABASE_URL's when set, else the embedded private PostGIS (started on
demand). Each session gets its own database (``gs_test_<pid>``), migrated with Alembic and dropped
at the end, so parallel runs never see each other's rows.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
import shapely
from shapely.geometry import box

# Cheap bcrypt for the accounts tests create (production default: 12); set before settings are read.
os.environ.setdefault("GRIDSERVER_BCRYPT_ROUNDS", "4")
# Tests change areas and look at tiles at once: read the areas revision on every tile request
# (production default 1 s); tests/maps/test_tile_fast_path.py sets its own TTL.
os.environ.setdefault("GRIDSERVER_TILE_REVISION_TTL", "0")

from gridserver.db import embedded  # noqa: E402
from gridserver.settings import get_settings  # noqa: E402

pytest_plugins = ["fixtures_auth"]


def _admin_url() -> str:
    s = get_settings()
    if s.database_url:
        base = s.database_url.replace("postgresql://", "postgresql+psycopg://", 1).replace(
            "postgres://", "postgresql+psycopg://", 1)
        return base.rsplit("/", 1)[0] + "/postgres"
    embedded.start_for_tests(s)  # stopped again at the end if this session started it
    return embedded.url(s, "postgres")


@pytest.fixture(scope="session")
def db_url():
    """URL of a fresh, migrated test database; DATABASE_URL points at it for the session."""
    from gridserver.db import engine, migrate

    admin = _admin_url()
    name = f"gs_test_{os.getpid()}"
    embedded.drop_database(admin, name)
    embedded.ensure_database(admin, name)
    url = admin.rsplit("/", 1)[0] + "/" + name
    old = os.environ.get("DATABASE_URL")
    os.environ["DATABASE_URL"] = url
    get_settings.cache_clear()
    engine.reset()
    migrate.upgrade(url)
    yield url
    engine.reset()
    if old is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = old
    get_settings.cache_clear()
    embedded.drop_database(admin, name)
    if not get_settings().database_url:
        embedded.end_of_tests(get_settings())


@pytest.fixture(scope="session")
def db_conninfo(db_url):
    return db_url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture(scope="session")
def engine(db_url):
    from gridserver.db.engine import get_engine

    return get_engine()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_url(db_url):
    """Base URL of a real uvicorn server running the app on the test database."""
    import uvicorn

    from gridserver.api import create_app

    port = _free_port()
    # proxy_headers=False as `gridserver serve`: the app alone decides whom X-Forwarded-For is trusted from
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning",
                                           proxy_headers=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def http(live_url):
    import httpx

    with httpx.Client(base_url=live_url, timeout=60) as client:
        yield client


# --- a small city -------------------------------------------------------------------------------
# District 440104 is a 0.04° × 0.03° box near Guangzhou. Two streets split it west/east, each street
# holds two communities (north/south) and each community four grids numbered west→east,
# north→south: 001 NW, 002 NE, 003 SW, 004 SE.
SMALL_DISTRICT = (113.25, 23.12, 113.29, 23.15)


def small_city_areas() -> list[dict]:
    x0, y0, x1, y1 = SMALL_DISTRICT
    xm = (x0 + x1) / 2
    areas = [dict(level="district", code="440104", name="越秀区", parent_code=None, geom=box(x0, y0, x1, y1))]
    for s_i, (sx0, sx1, scode, sname) in enumerate([(x0, xm, "440104001", "洪桥街道"), (xm, x1, "440104003", "北京街道")]):
        areas.append(dict(level="street", code=scode, name=sname, parent_code="440104", geom=box(sx0, y0, sx1, y1)))
        ym = (y0 + y1) / 2
        for c_i, (cy0, cy1) in enumerate([(ym, y1), (y0, ym)]):
            ccode = f"{scode}{c_i + 1:03d}"
            cname = f"{sname[:2]}{'北南'[c_i]}社区"
            areas.append(dict(level="community", code=ccode, name=cname, parent_code=scode, geom=box(sx0, cy0, sx1, cy1)))
            gx = (sx0 + sx1) / 2
            gy = (cy0 + cy1) / 2
            cells = [(sx0, gy, gx, cy1), (gx, gy, sx1, cy1), (sx0, cy0, gx, gy), (gx, cy0, sx1, gy)]
            for g_i, cell in enumerate(cells):
                gcode = f"{ccode}{g_i + 1:03d}"
                areas.append(dict(level="grid", code=gcode, name=f"{cname}第{g_i + 1:03d}网格",
                                  parent_code=ccode, geom=box(*cell)))
    return areas


def load_areas(engine, areas: list[dict], source: str = "test") -> None:
    """Insert areas directly (the importer has its own tests); replaces current rows with the same codes."""
    from sqlalchemy import text

    with engine.begin() as conn:
        for a in areas:
            conn.execute(text("DELETE FROM admin_areas WHERE code = :code"), {"code": a["code"]})
            conn.execute(
                text("""INSERT INTO admin_areas (level, code, name, parent_code, geom, area_m2, source)
                        VALUES (:level, :code, :name, :parent_code,
                                ST_Multi(ST_GeomFromText(:wkt, 4326)),
                                ST_Area(ST_Transform(ST_GeomFromText(:wkt, 4326), 4547)), :source)"""),
                {**{k: a[k] for k in ("level", "code", "name", "parent_code")}, "wkt": shapely.to_wkt(a["geom"], rounding_precision=-1),
                 "source": source},
            )


@pytest.fixture(scope="session")
def small_city(engine):
    """The small city loaded into the test database; returns {code: area dict with shapely geom}."""
    areas = small_city_areas()
    load_areas(engine, areas)
    return {a["code"]: a for a in areas}


def scratch_codes(engine, prefix: str):
    """Generator for a fixture: delete every area whose code starts with ``prefix`` before and after."""
    from sqlalchemy import text

    def wipe():
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM admin_areas WHERE code LIKE :p || '%'"), {"p": prefix})

    wipe()
    yield engine
    wipe()
