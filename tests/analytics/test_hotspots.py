"""Hot-spot early warning: the statistics on their own, then /api/v1/hotspots on a flat city and a planted surge."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sqlalchemy import text

from gridserver.analytics.hotspots import benjamini_hochberg, gi_star, surge_test

END = datetime(2025, 7, 1, tzinfo=timezone(timedelta(hours=8)))


def test_flat_poisson_cells_are_not_flagged_and_a_surge_is():
    rng = np.random.default_rng(3)
    rate = 0.4  # per day
    base = rng.poisson(rate * 28, 500)
    win = rng.poisson(rate * 7, 500)
    assert not surge_test(win, base, 7, 28)["flagged"].any()
    win[17] += 15
    out = surge_test(win, base, 7, 28)
    assert np.flatnonzero(out["flagged"]).tolist() == [17]
    assert out["p"][17] == pytest.approx(stats.binom.sf(win[17] - 1, win[17] + base[17], 0.2))
    # zero history: a couple of reports are not a surge, a dozen are
    assert not surge_test([2], [0], 7, 28)["flagged"][0]
    assert surge_test([12], [0], 7, 28)["flagged"][0]


def test_benjamini_hochberg_matches_definition():
    p = np.array([0.01, 0.04, 0.03, 0.2, 0.001])
    n = len(p)
    want = [min(1, min(p[j] * n / (sorted(p).index(p[j]) + 1) for j in range(n) if p[j] >= p[i])) for i in range(n)]
    assert benjamini_hochberg(p) == pytest.approx(want)


def test_gi_star_by_formula():
    x = np.array([1.0, 2, 3, 10, 12, 0, 1])
    nb = [[1], [0, 2], [1, 3], [2, 4], [3], [6], [5]]
    z, p = gi_star(x, nb)
    n, mean, s = len(x), x.mean(), np.sqrt((x ** 2).mean() - x.mean() ** 2)
    i = 3
    w = np.zeros(n)
    w[[2, 3, 4]] = 1
    want = (w @ x - mean * w.sum()) / (s * np.sqrt((n * (w ** 2).sum() - w.sum() ** 2) / (n - 1)))
    assert z[i] == pytest.approx(want)
    assert z.argmax() in (3, 4) and p[3] == pytest.approx(stats.norm.sf(z[3]))


def test_gi_star_equals_pysal_esda():
    esda = pytest.importorskip("esda.getisord")
    from libpysal.weights import lat2W

    rng = np.random.default_rng(9)
    x = rng.poisson(2, 100).astype(float)
    x[[44, 45, 54]] += 12  # a hot cluster on a 10 × 10 lattice
    w = lat2W(10, 10, rook=False)  # queen contiguity, like touching grids
    neighbours = [list(w.neighbors[i]) for i in range(100)]
    z, p = gi_star(x, neighbours)
    ref = esda.G_Local(x, w, transform="B", star=True, permutations=0)
    assert z == pytest.approx(ref.Zs, abs=1e-9)
    assert set(np.argsort(-z)[:3]) <= {33, 34, 35, 36, 43, 44, 45, 46, 53, 54, 55, 56, 63, 64, 65}


@pytest.fixture(scope="module")
def flat_city(engine, small_city, insert_located):
    """Every grid of the small city at the same Poisson rate (0.3 a day) for the 35 days before END."""
    rng = np.random.default_rng(5)
    n = rng.poisson(0.3 * 35 * 16)
    df = pd.DataFrame({"lon": rng.uniform(113.2501, 113.2899, n), "lat": rng.uniform(23.1201, 23.1499, n),
                       "category": "water_drainage", "status": "reported",
                       "created_at": [END - timedelta(seconds=int(s)) for s in rng.integers(60, 35 * 86400, n)]})
    insert_located(df, "hotspot_test")
    yield df
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incidents WHERE source IN ('hotspot_test', 'demo_surge')"))


@pytest.fixture(scope="module")
def analyst(make_user):
    return make_user("analyst")


def _hot(http, headers, **params):
    r = http.get("/api/v1/hotspots", headers=headers, params={"end": END.isoformat(), **params})
    assert r.status_code == 200, r.text
    return r.json()


def test_flat_city_has_no_hot_spot_then_the_planted_surge_is_flagged(http, engine, analyst, auth, flat_city, small_city):
    from gridserver.demo.surge import plant_surge

    h = auth(analyst)
    flat = _hot(http, h, by="grid", window="7d", baseline="28d")
    assert flat["cells_tested"] >= 16 and flat["flagged"] == 0
    assert sum(c["count"] + c["baseline_count"] for c in flat["cells"]) == len(flat_city)
    flat_h3 = _hot(http, h, by="h3:9")
    assert flat_h3["flagged"] == 0

    grids = gpd.GeoDataFrame([{"code": c, "geometry": a["geom"]} for c, a in small_city.items() if a["level"] == "grid"],
                             crs="EPSG:4326")
    planted = plant_surge(engine, grids, seed=1, n_grids=2, per_grid=15, days=5, now=END)
    assert planted["incidents"] == 30 and len(planted["grids"]) == 2

    hot = _hot(http, h, by="grid", window="7d", baseline="28d", geometry="true")
    flagged = [c for c in hot["cells"] if c["flagged"]]
    assert sorted(c["key"] for c in flagged) == planted["grids"]
    for c in flagged:
        assert c["p_value"] < 1e-4 and c["q_value"] <= 0.01 and c["rate_ratio"] > 3 and c["z"] > 3
        assert c["geometry"]["type"] == "MultiPolygon" and c["name"]
    assert hot["cells"][0]["flagged"]  # flagged cells come first

    # H3 res 9 (~0.1 km²): the flagged cells hold the planted bursts, one or more per planted grid
    hot9 = _hot(http, h, by="h3:9", geometry="true")
    cells9 = {c["key"] for c in hot9["cells"] if c["flagged"]}
    with engine.connect() as conn:
        pts = conn.execute(text("SELECT ST_X(geom), ST_Y(geom), grid_code FROM incidents WHERE source = 'demo_surge'")).all()
    surge_cells = {h3.latlng_to_cell(y, x, 9) for x, y, _ in pts}
    assert cells9 and cells9 <= surge_cells
    for g in planted["grids"]:
        assert any(h3.latlng_to_cell(y, x, 9) in cells9 for x, y, code in pts if code == g)
    assert all(c["geometry"]["type"] == "Polygon" for c in hot9["cells"])

    # the surge is not in the window a week later than the planted days... it is the baseline then
    later = _hot(http, h, by="grid", end=(END + timedelta(days=8)).isoformat())
    assert later["flagged"] == 0


def test_hotspot_parameters(http, analyst, auth, make_user):
    h = auth(analyst)
    for params, word in (({"window": "7x"}, "window"), ({"baseline": "0d"}, "baseline"), ({"by": "h3:3"}, "resolution"),
                         ({"end": "soon"}, "end")):
        r = http.get("/api/v1/hotspots", headers=h, params=params)
        assert r.status_code == 422 and word in r.json()["detail"], params
    assert http.get("/api/v1/hotspots").status_code == 401
