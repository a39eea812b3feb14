"""Analytics fixtures: incidents spread over the small city in spring 2026, located with the batch grid index.

They carry ``source = 'analytics_test'`` and dates in March–April 2026, far from the ``now()``
timestamps other tests give their incidents; tests that need exact numbers filter on that window
or compare against what the database holds.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from gridserver.incidents.categories import CATEGORIES

SCHEMAS = Path(__file__).parent / "schemas"
WINDOW = (datetime(2026, 3, 1, tzinfo=timezone.utc), datetime(2026, 5, 1, tzinfo=timezone.utc))


def insert_incidents(engine, df: pd.DataFrame, source: str) -> list[int]:
    """Insert rows (lon, lat, category, status, created_at) located with the batch grid index; returns ids."""
    from gridserver.areas.batch import current_index

    index = current_index()
    k = index.grid.locate(df["lon"].to_numpy(), df["lat"].to_numpy())
    lc = index.level_codes
    rows = []
    for (_, r), kk in zip(df.iterrows(), k):
        rows.append({"category": r["category"], "status": r["status"], "lon": float(r["lon"]), "lat": float(r["lat"]),
                     "created_at": r["created_at"], "source": source,
                     **{f: lc[f][kk] for f in ("grid_code", "community_code", "street_code", "district_code")}})
    with engine.begin() as conn:
        ids = [conn.execute(text(
            """INSERT INTO incidents (category, description, status, geom, grid_code, community_code, street_code,
                                      district_code, source, created_at, updated_at)
               VALUES (:category, '分析测试', :status, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :grid_code,
                       :community_code, :street_code, :district_code, :source, :created_at, :created_at)
               RETURNING id"""), r).scalar_one() for r in rows]
    return ids


@pytest.fixture(scope="session")
def insert_located(engine):
    """insert_located(df, source) → ids: rows located with the batch grid index and inserted."""
    return lambda df, source: insert_incidents(engine, df, source)


@pytest.fixture(scope="package")
def analytics_incidents(engine, small_city):
    """400 incidents in the small city, March–April 2026 (deterministic); removed when tests/analytics ends,
    so other packages' tests never see them."""
    rng = np.random.default_rng(12)
    n = 400
    cats = list(CATEGORIES)[:5]
    df = pd.DataFrame({
        "lon": rng.uniform(113.2501, 113.2899, n), "lat": rng.uniform(23.1201, 23.1499, n),
        "category": rng.choice(cats, n), "status": rng.choice(["reported", "closed"], n),
        "created_at": [WINDOW[0] + timedelta(seconds=int(s)) for s in rng.integers(0, 61 * 86400 - 1, n)],
    })
    # a few points exactly on grid edges (the boundary rule decides their grid)
    df.loc[0, ["lon", "lat"]] = [113.26, 23.1275]
    df.loc[1, ["lon", "lat"]] = [113.27, 23.135]
    df["id"] = insert_incidents(engine, df, "analytics_test")
    with engine.connect() as conn:
        codes = pd.read_sql(text("SELECT id, grid_code, community_code, street_code, district_code FROM incidents "
                                 "WHERE source = 'analytics_test'"), conn)
    df = df.merge(codes, on="id")
    yield df
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incidents WHERE source = 'analytics_test'"))


@pytest.fixture(scope="session")
def ogc_schema():
    """validate(instance, 'collections.json') against the OGC API Features Part 1 schemas."""
    import jsonschema
    from referencing import Registry, Resource

    docs = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
    registry = Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs.values())

    def validate(instance, name: str) -> None:
        schema = docs[name]
        cls = jsonschema.validators.validator_for(schema)
        cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER).validate(instance)

    return validate
