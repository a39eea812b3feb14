"""A planted hot-spot surge in the demo (热点预警 demo): a few grids get a burst of incidents in the last days.

The demo's ordinary incidents are spread evenly over 60 days; ``plant_surge`` adds ``per_grid``
incidents in each of ``n_grids`` grids (chosen by ``seed``) during the last ``days`` days, so
``GET /api/v1/hotspots?by=grid&window=7d&baseline=28d`` flags exactly those grids. The rows carry
``source = 'demo_surge'`` and are replaced on every run.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import shapely

CHINA_TZ = timezone(timedelta(hours=8))
SOURCE = "demo_surge"
#: What a surge looks like: blocked drains and waterlogging after a storm.
SURGE_CATEGORIES = ("water_drainage", "city_appearance")
SURGE_TEXT = {"water_drainage": "暴雨后道路积水，下水道堵塞", "city_appearance": "积水退后路面淤泥垃圾堆积"}


def surge_points(grids, codes: list[str], per_grid: int, days: int, now: datetime, seed: int) -> pd.DataFrame:
    """``per_grid`` points clustered around one spot inside each grid of ``codes`` (GeoDataFrame
    code/geometry, EPSG:4326), times uniform over the ``days`` days before ``now``."""
    rng = np.random.default_rng([int(seed), 77])
    rows = []
    by_code = grids.set_index("code").geometry
    for code in codes:
        geom = by_code[code]
        x0, y0, x1, y1 = geom.bounds
        # a burst at one spot (a flooded underpass, a market): points around a centre inside the grid
        c = geom.representative_point()
        sigma = 0.12 * min(x1 - x0, y1 - y0)
        got = 0
        while got < per_grid:
            xs, ys = rng.normal(c.x, sigma, per_grid * 4), rng.normal(c.y, sigma, per_grid * 4)
            inside = shapely.contains_xy(geom, xs, ys)
            for x, y in list(zip(xs[inside], ys[inside]))[: per_grid - got]:
                cat = SURGE_CATEGORIES[int(rng.integers(len(SURGE_CATEGORIES)))]
                at = now - timedelta(seconds=int(rng.integers(60, days * 86400)))
                rows.append({"lon": float(x), "lat": float(y), "category": cat, "description": SURGE_TEXT[cat],
                             "created_at": at, "planted_grid": code})
                got += 1
    return pd.DataFrame(rows)


def plant_surge(engine, grids, *, seed: int = 0, n_grids: int = 3, per_grid: int = 15, days: int = 5,
                now: datetime | None = None) -> dict:
    """Replace the demo surge: pick ``n_grids`` grids by ``seed``, add the burst, locate in bulk, COPY in."""
    from gridserver.areas.batch import current_index

    now = now or datetime.now(CHINA_TZ).replace(minute=0, second=0, microsecond=0)
    codes_all = sorted(grids["code"])
    rng = np.random.default_rng([int(seed), 78])
    codes = sorted(rng.choice(codes_all, size=min(n_grids, len(codes_all)), replace=False).tolist())
    df = surge_points(grids, codes, per_grid, days, now, seed)
    index = current_index()
    k = index.grid.locate(df["lon"].to_numpy(), df["lat"].to_numpy())
    lc = index.level_codes
    buf = io.StringIO()
    for (_, r), kk in zip(df.iterrows(), k):
        if kk < 0:
            continue
        fields = [r["category"], r["description"], "reported", f"SRID=4326;POINT({r['lon']!r} {r['lat']!r})",
                  repr(r["lon"]), repr(r["lat"]), "wgs84", lc["grid_code"][kk], lc["community_code"][kk],
                  lc["street_code"][kk], lc["district_code"][kk], SOURCE, r["created_at"].isoformat(),
                  r["created_at"].isoformat()]
        buf.write("\t".join(str(f) for f in fields) + "\n")
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()
        cur.execute("DELETE FROM incidents WHERE source = %s", (SOURCE,))
        with cur.copy("COPY incidents (category, description, status, geom, input_x, input_y, input_crs, grid_code,"
                      " community_code, street_code, district_code, source, created_at, updated_at) FROM STDIN") as copy:
            copy.write(buf.getvalue())
        raw.commit()
    finally:
        raw.close()
    return {"grids": codes, "incidents": int((k >= 0).sum()), "days": days}
