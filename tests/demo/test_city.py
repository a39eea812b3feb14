"""The demo city generator: exact tilings, code rules, determinism, counts, incidents, GCJ-02 check."""

from __future__ import annotations

import csv
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import shapely

from gridserver.demo import city as citymod
from gridserver.demo.checks import gcj02_outline_iou
from gridserver.demo.city import build_city, cache_key, community_name, load_city, read_city, write_city
from gridserver.demo.incidents import demo_incidents
from gridserver.demo.partition import allocate, metric_area, reading_order, to_metric
from gridserver.demo.synthetic import synthetic_city
from gridserver.errors import InvalidInput
from gridserver.incidents.categories import CATEGORIES
from gridserver.settings import get_settings

SHARED = get_settings().shared_dir
HAVE_SHARED = citymod.yuexiu_inputs(SHARED) is not None
needs_shared = pytest.mark.skipif(not HAVE_SHARED, reason=f"no Yuexiu data under {SHARED}")
PARENT = {"street": "district", "community": "street", "grid": "community"}
SMALL = dict(streets=4, communities=20, grids=90, area_km2=3.0)


@pytest.fixture(scope="module")
def real_city():
    if not HAVE_SHARED:
        pytest.skip(f"no Yuexiu data under {SHARED}")
    return build_city(SHARED, seed=0)


@pytest.fixture(scope="module")
def fallback_city(tmp_path_factory):
    return build_city(tmp_path_factory.mktemp("no-shared"), seed=1)


@pytest.fixture(scope="module")
def small_city():
    return synthetic_city(11, **SMALL)


@pytest.fixture(params=["real", "fallback", "small"])
def any_city(request):
    return request.getfixturevalue(f"{request.param}_city")


# ---------------------------------------------------------------------------------------------
# counts and names


@needs_shared
def test_real_counts_names_and_codes_come_from_the_sources(real_city):
    assert [len(real_city[lv]) for lv in citymod.LEVELS] == [1, 18, 222, 1893]
    with open(SHARED / "data/yuexiu/yuexiu_communities_nbs2023.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    want = {(r["code"], community_name(r["name"]), r["streetCode"]) for r in rows}
    comm = real_city["community"]
    got = set(zip(comm["code"], comm["name"], comm["parent_code"]))
    assert got == want
    comm = comm.set_index("code")
    assert comm.loc["440104001007", "name"] == "三眼井社区"
    assert real_city["district"]["code"].tolist() == ["440104"]
    assert real_city["grid"]["name"].iloc[0].endswith("第001网格")


def test_community_names_strip_the_committee_suffix():
    assert community_name("三眼井社区居委会") == "三眼井社区"
    assert community_name("德安社区居民委员会") == "德安社区"
    assert community_name("东湖居民委员会") == "东湖社区"


def test_fallback_has_the_same_shape(fallback_city):
    assert [len(fallback_city[lv]) for lv in citymod.LEVELS] == [1, 18, 222, 1893]
    district = fallback_city["district"].geometry.iloc[0]
    assert fallback_city["district"]["code"].iloc[0] == "440104"
    assert metric_area([district])[0] / 1e6 == pytest.approx(34.0, rel=0.01)
    c = district.centroid
    assert abs(c.x - 113.27) < 0.01 and abs(c.y - 23.13) < 0.01
    assert len(fallback_city["roads"]) > 50
    assert set(fallback_city["roads"]["highway"]) >= {"primary", "residential"}


# ---------------------------------------------------------------------------------------------
# geometry


def test_every_level_tiles_its_parent_exactly(any_city):
    for level, up in PARENT.items():
        kids_all, parents = any_city[level], any_city[up]
        for code, parent in zip(parents["code"], parents.geometry):
            kids = kids_all.geometry[kids_all["parent_code"] == code].values
            assert len(kids), f"{up} {code} has no {level}"
            union = shapely.union_all(kids)
            pa, ua = metric_area([parent, union])
            # no gaps: the children cover the parent
            assert abs(pa - ua) / pa < 1e-6, (level, code, (pa - ua) / pa)
            # no overlaps: their areas add up to the area they cover
            assert abs(metric_area(kids).sum() - ua) / pa < 1e-6, (level, code)
            # all inside
            grown = parent.buffer(1e-9)
            assert shapely.within(kids, grown).all(), (level, code)


def test_neighbours_do_not_overlap_across_parents(any_city):
    grids = np.asarray(any_city["grid"].geometry.values, dtype=object)
    i, j = shapely.STRtree(grids).query(grids, predicate="intersects")
    sel = i < j
    overlap = metric_area(shapely.intersection(grids[i[sel]], grids[j[sel]]))
    assert overlap.sum() < 0.01  # m² over the whole district: nothing but rounding


def test_geometries_are_valid_multipolygons_without_slivers(any_city):
    for level in citymod.LEVELS:
        df = any_city[level]
        assert df.crs.to_epsg() == 4326
        assert list(df.columns) == ["code", "name", "parent_code", "geometry"]
        assert (df.geom_type == "MultiPolygon").all(), level
        assert df.is_valid.all(), level
        parts = shapely.get_parts(np.asarray(df.geometry.values, dtype=object))
        assert metric_area(parts).min() >= 1.0, level


@needs_shared
def test_real_grid_sizes_are_plausible(real_city):
    area = metric_area(real_city["grid"].geometry.values)
    assert 1.2e4 < np.median(area) < 2.5e4  # ~1.8 ha: 33.6 km² / 1893
    assert area.min() > 200 and area.max() < 10e4
    assert metric_area(real_city["district"].geometry.values)[0] == pytest.approx(33.648e6, rel=1e-3)


# ---------------------------------------------------------------------------------------------
# codes


def test_codes_are_unique_and_prefix_their_parent(any_city):
    width = {"district": 6, "street": 9, "community": 12, "grid": 15}
    for level in citymod.LEVELS:
        codes = any_city[level]["code"]
        assert codes.is_unique
        assert all(len(c) == width[level] and c.isdigit() for c in codes)
    for level, up in PARENT.items():
        known = set(any_city[up]["code"])
        for c, p in zip(any_city[level]["code"], any_city[level]["parent_code"]):
            assert p in known and c.startswith(p)
    grids = any_city["grid"]
    names = dict(zip(any_city["community"]["code"], any_city["community"]["name"]))
    for ccode, group in grids.groupby("parent_code"):
        seqs = sorted(int(c[-3:]) for c in group["code"])
        assert seqs == list(range(1, len(seqs) + 1))
        for code, name in zip(group["code"], group["name"]):
            assert name == f"{names[ccode]}第{code[-3:]}网格"
    assert grids.groupby("parent_code").size().min() >= 3


def test_reading_order_rule_on_a_layout():
    # two rows (y ≈ 100 and y ≈ 0, with jitter less than half a row), three columns
    pts = np.array([[20, 1], [0, 98], [10, -3], [21, 102], [9, 104], [1, 2]], dtype=float)
    assert reading_order(pts, row_height=20).tolist() == [1, 4, 3, 5, 2, 0]


def test_grids_are_numbered_west_to_east_north_to_south(any_city):
    grids, comms = any_city["grid"], any_city["community"].set_index("code")
    for ccode, group in grids.groupby("parent_code"):
        group = group.sort_values("code")
        xy = shapely.get_coordinates(shapely.centroid(to_metric(np.asarray(group.geometry.values, dtype=object))))
        s = np.sqrt(metric_area([comms.geometry[ccode]])[0] / len(group))
        # the first grid lies in the northernmost row
        assert xy[0, 1] >= xy[:, 1].max() - s / 2 - 1e-6
        # consecutive grids: either further east in the same row, or a new row further south
        for a, b in zip(xy[:-1], xy[1:]):
            assert b[0] > a[0] or b[1] < a[1], ccode
        assert reading_order(xy, s).tolist() == list(range(len(group)))


def test_allocate_is_proportional_with_a_minimum():
    counts = allocate([1, 1, 2, 96], 100, 3)
    assert sum(counts) == 100 and min(counts) >= 3
    assert counts[3] == 100 - 3 - 3 - 3
    assert allocate([2, 1, 1], 8, 1) == [4, 2, 2]
    with pytest.raises(InvalidInput):
        allocate([1, 1], 5, 3)


# ---------------------------------------------------------------------------------------------
# determinism and files


def _fingerprint(city):
    return {
        level: (list(city[level]["code"]), list(city[level]["name"]), list(city[level]["parent_code"]),
                [g.wkb for g in city[level].geometry])
        for level in citymod.LEVELS
    }


def test_same_seed_same_bytes_other_seed_other_city(small_city):
    again = synthetic_city(11, **SMALL)
    assert _fingerprint(again) == _fingerprint(small_city)
    other = synthetic_city(12, **SMALL)
    assert [g.wkb for g in other["grid"].geometry] != [g.wkb for g in small_city["grid"].geometry]


@needs_shared
def test_real_path_is_deterministic_on_a_subset():
    streets, communities, roads = citymod.load_yuexiu(citymod.yuexiu_inputs(SHARED))
    sub = [s for s in streets if s[0] in ("440104001", "440104003")]
    comms = {s[0]: communities[s[0]] for s in sub}
    a = citymod.build_hierarchy(sub, comms, roads, 5, grid_total=80)
    b = citymod.build_hierarchy(sub, comms, roads, 5, grid_total=80)
    assert _fingerprint(a) == _fingerprint(b)
    assert len(a["grid"]) == 80 and len(a["community"]) == 8 + 13


def test_written_files_are_byte_identical_and_read_back(small_city, tmp_path):
    a = write_city(small_city, tmp_path / "a", key="k")
    b = write_city(synthetic_city(11, **SMALL), tmp_path / "b", key="k")
    for name in ("district.gpkg", "street.gpkg", "community.gpkg", "grid.gpkg", "roads.gpkg", "manifest.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    back = read_city(a)
    assert _fingerprint(back) == _fingerprint(small_city)


@needs_shared
def test_cache_is_reused_for_the_same_key_only(small_city, tmp_path):
    shared = tmp_path / "shared"
    shutil.copytree(SHARED / "data" / "yuexiu", shared / "data" / "yuexiu")
    key = cache_key(shared, 0)
    assert cache_key(shared, 1) != key
    # a cache written under the matching key is returned as it is, without rebuilding
    write_city(small_city, tmp_path / "out", key=key)
    reused = load_city(shared, 0, tmp_path / "out")
    assert len(reused["grid"]) == len(small_city["grid"]) == SMALL["grids"]
    # touching an input changes the key, so that cache would no longer be used
    roads = shared / "data" / "yuexiu" / citymod.YUEXIU_FILES["roads"]
    st = roads.stat()
    os.utime(roads, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert cache_key(shared, 0) != key


def test_bad_arguments_are_refused():
    with pytest.raises(InvalidInput):
        build_city(Path("/nonexistent"), seed=-1)
    with pytest.raises(InvalidInput):
        synthetic_city(0, streets=2, communities=10, grids=20)


# ---------------------------------------------------------------------------------------------
# GCJ-02 and incidents


@needs_shared
def test_gcj02_outline_matches_osm_only_after_correction():
    raw, corrected = gcj02_outline_iou(SHARED)
    assert corrected >= 0.95
    assert raw < 0.85  # ~600 m off before correction
    assert corrected > raw


def test_incidents_are_deterministic_inside_their_grids_and_denser_where_grids_are_small(fallback_city):
    now = datetime(2026, 6, 1, 10, 30, tzinfo=timezone(timedelta(hours=8)))
    grids, roads = fallback_city["grid"], fallback_city["roads"]
    inc = demo_incidents(grids, n=3000, seed=4, now=now, roads=roads)
    assert len(inc) == 3000 and inc.crs.to_epsg() == 4326
    again = demo_incidents(grids, n=3000, seed=4, now=now, roads=roads)
    assert inc.equals(again)
    assert not inc.equals(demo_incidents(grids, n=3000, seed=5, now=now, roads=roads))
    by_code = grids.set_index("code").geometry
    assert shapely.contains(by_code[inc["grid_code"]].values, inc.geometry.values).all()
    assert np.allclose(inc["lon"], inc.geometry.x) and np.allclose(inc["lat"], inc.geometry.y)
    assert set(inc["category"]) <= set(CATEGORIES) and len(set(inc["category"])) >= 10
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in d) for d in inc["description"])
    assert inc["created_at"].min() >= now - timedelta(days=60)
    assert inc["created_at"].max() <= now
    assert inc["created_at"].max() - inc["created_at"].min() > timedelta(days=50)
    # density (incidents per km²) is higher in the smaller half of the grids (small grids =
    # dense areas); over 1893 grids the ratio is ~1.2-1.4 whatever the seed
    area = metric_area(grids.geometry.values)
    counts = inc["grid_code"].value_counts().reindex(grids["code"], fill_value=0).values
    small = area < np.median(area)
    assert counts[small].sum() / area[small].sum() > 1.1 * counts[~small].sum() / area[~small].sum()


def test_incident_arguments_are_checked(small_city):
    with pytest.raises(InvalidInput):
        demo_incidents(small_city["grid"], n=-1)
    with pytest.raises(InvalidInput):
        demo_incidents(small_city["grid"].iloc[:0], n=10)
