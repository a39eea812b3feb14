"""Worker-side functions of the dask job (``distributed.py``): imported by every dask worker, so light.

Only pandas, geopandas and h3 here; nothing from the web app, the database or scipy.
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd

#: Code length per admin level (codes are prefix-hierarchical); aggregate.py uses this table too.
LEVEL_LEN = {"district": 6, "street": 9, "community": 12, "grid": 15}
#: pandas period per bucket. W-SUN periods start on Monday, as PostgreSQL's date_trunc('week').
FREQ = {"day": "D", "week": "W-SUN", "month": "M"}


def keys_partition(part: gpd.GeoDataFrame, by: str, res: int | None, bucket: str | None,
                    grids: gpd.GeoDataFrame | None) -> pd.DataFrame:
    """One partition → (key[, period]) rows; runs on the workers."""
    if len(part) == 0:
        cols = {"key": pd.Series([], dtype="object")}
        if bucket:
            cols["period"] = pd.Series([], dtype="object")
        return pd.DataFrame(cols)
    if by == "h3":
        import h3

        keys = [h3.latlng_to_cell(float(y), float(x), res) for x, y in zip(part.geometry.x, part.geometry.y)]
        out = pd.DataFrame({"key": keys}, index=part.index)
    else:
        j = gpd.sjoin(part[["id", part.geometry.name]], grids[["code", grids.geometry.name]], predicate="covered_by",
                      how="inner")
        first = j.sort_values("code").groupby("id", sort=False)["code"].first()  # smallest code on shared edges
        out = pd.DataFrame({"key": part["id"].map(first).str[:LEVEL_LEN[by]]}, index=part.index).dropna()
    if bucket:
        ts = pd.to_datetime(part.loc[out.index, "created_at"], utc=True).dt.tz_convert("Asia/Shanghai").dt.tz_localize(None)
        out["period"] = ts.dt.to_period(FREQ[bucket]).dt.start_time.dt.strftime("%Y-%m-%d")
    return out


def partial_counts(part: gpd.GeoDataFrame, by: str, res: int | None, bucket: str | None,
                   grids: gpd.GeoDataFrame | None) -> pd.DataFrame:
    """One partition → its counts per key[, period] (the map step; the client sums the partials)."""
    keyed = keys_partition(part, by, res, bucket, grids)
    cols = ["key"] + (["period"] if bucket else [])
    if len(keyed) == 0:
        return pd.DataFrame({**{c: pd.Series([], dtype="object") for c in cols}, "count": pd.Series([], dtype="int64")})
    return keyed.groupby(cols, sort=False).size().rename("count").reset_index().astype({"count": "int64"})
