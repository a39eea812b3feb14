"""Topology check: overlaps, gaps, children outside their parent, orphans — in PostGIS, via API and CLI.

Works on its own district 440198 (the small city moved 0.2° east), deleted after each test, so the
shared small city rows are never touched.
"""

from __future__ import annotations

import json

import geopandas as gpd
import pytest
import shapely
from shapely.affinity import translate
from shapely.geometry import box

from conftest import load_areas, small_city_areas
from gridserver.areas.topology import check_topology
from gridserver.errors import InvalidInput, NotFound
from conftest import scratch_codes

D = "440198"


def city() -> dict[str, dict]:
    out = {}
    for a in small_city_areas():
        a = dict(a)
        a["code"] = D + a["code"][6:]
        a["parent_code"] = (D + a["parent_code"][6:]) if a["parent_code"] else None
        a["geom"] = translate(a["geom"], xoff=0.2)
        out[a["code"]] = a
    return out


def m2(geom) -> float:
    return float(gpd.GeoSeries([geom], crs=4326).to_crs(4547).area.iloc[0])


@pytest.fixture
def scratch(engine):
    """Remove every row of the scratch district D before and after the test."""
    yield from scratch_codes(engine, D)


@pytest.fixture
def clean_city(scratch):
    areas = city()
    load_areas(scratch, list(areas.values()))
    return areas


@pytest.fixture
def broken_city(scratch):
    """The city with one overlap, one gap, one grid outside its community and one orphan grid.

    Returns {kind: (codes, problem region)} computed with shapely, independently of PostGIS.
    """
    areas = city()
    # overlap: grid 002 (NE) of community 001001 grows 0.002° west into grid 001 (NW)
    g1, g2 = areas[D + "001001001"], areas[D + "001001002"]
    x0, y0, x1, y1 = g2["geom"].bounds
    g2["geom"] = box(x0 - 0.002, y0, x1, y1)
    overlap = g1["geom"].intersection(g2["geom"])
    # gap: grid 004 (SE) of community 003002 loses a 0.003° strip on its east side
    g = areas[D + "003002004"]
    before = g["geom"]
    x0, y0, x1, y1 = before.bounds
    g["geom"] = box(x0, y0, x1 - 0.003, y1)
    gap = before.difference(g["geom"])
    # outside: grid 003 (SW) of community 001002 reaches 0.002° south of its community
    g = areas[D + "001002003"]
    x0, y0, x1, y1 = g["geom"].bounds
    g["geom"] = box(x0, y0 - 0.002, x1, y1)
    outside = g["geom"].difference(areas[D + "001002"]["geom"])
    # orphan: a grid whose community does not exist (drawn inside the district, over nothing else)
    orphan = dict(level="grid", code=D + "001009001", name="孤儿网格", parent_code=D + "001009",
                  geom=box(113.451, 23.121, 113.452, 23.122))
    load_areas(scratch, list(areas.values()) + [orphan])
    return {"overlap": ([g1["code"], g2["code"]], overlap), "gap": ([], gap),
            "outside": ([D + "001002003"], outside), "orphan": ([orphan["code"]], orphan["geom"])}


def test_clean_city_has_no_issues(clean_city, engine):
    with engine.connect() as conn:
        assert check_topology(conn, parent_code=D) == []
        for level in ("street", "community", "grid"):
            assert check_topology(conn, parent_code=D, level=level) == []


def test_each_problem_reported_with_area_and_location(broken_city, engine):
    with engine.connect() as conn:
        issues = check_topology(conn, parent_code=D)
    by_kind = {}
    for i in issues:
        by_kind.setdefault(i.kind, []).append(i)
    assert {k: len(v) for k, v in by_kind.items()} == {"overlap": 1, "gap": 1, "outside": 1, "orphan": 1}
    for kind, (codes, region) in broken_city.items():
        issue = by_kind[kind][0]
        assert issue.level == "grid"
        if codes:
            assert issue.codes == codes
        if kind == "orphan":
            assert issue.area_m2 is None and issue.parent_code == D + "001009"
        else:
            assert issue.area_m2 == pytest.approx(m2(region), rel=0.01), kind
        assert region.covers(shapely.Point(issue.lon, issue.lat)), (kind, issue.lon, issue.lat)
    assert by_kind["gap"][0].parent_code == D + "003002"
    assert by_kind["outside"][0].parent_code == D + "001002"


def test_filters_tolerance_and_geometry(broken_city, engine):
    overlap_m2 = m2(broken_city["overlap"][1])
    with engine.connect() as conn:
        # all four problems are among grids; streets and communities are clean
        assert check_topology(conn, parent_code=D, level="community") == []
        assert len(check_topology(conn, parent_code=D, level="grid")) == 4
        # scoped to one community: only its overlap
        only = check_topology(conn, parent_code=D + "001001")
        assert [i.kind for i in only] == ["overlap"]
        kinds = [i.kind for i in check_topology(conn, parent_code=D, tolerance=overlap_m2 * 2)]
        assert "overlap" not in kinds and "orphan" in kinds
        assert "overlap" in [i.kind for i in check_topology(conn, parent_code=D, tolerance=overlap_m2 / 2)]
        with_geo = check_topology(conn, parent_code=D + "001001", with_geometry=True)
        region = shapely.geometry.shape(with_geo[0].geometry)
        assert region.symmetric_difference(broken_city["overlap"][1]).area < 1e-6 * region.area
        with pytest.raises(NotFound):
            check_topology(conn, parent_code="440197")
        with pytest.raises(InvalidInput):
            check_topology(conn, parent_code="44x")
        with pytest.raises(InvalidInput):
            check_topology(conn, level="district")


def test_api_topology(http, broken_city, admin_token, auth):
    assert http.get("/api/v1/topology", params={"area": D}).status_code == 401  # heavy: staff only
    token = auth(admin_token)
    r = http.get("/api/v1/topology", params={"area": D}, headers=token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 4 == len(body["issues"])
    gap = next(i for i in body["issues"] if i["kind"] == "gap")
    assert gap["area_m2"] == pytest.approx(m2(broken_city["gap"][1]), rel=0.01)
    assert broken_city["gap"][1].covers(shapely.Point(*gap["location"]))
    assert "覆盖空隙" in gap["label"]
    r = http.get("/api/v1/topology", params={"area": "440197"}, headers=token)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = http.get("/api/v1/topology", params={"area": D, "level": "province"}, headers=token)
    assert r.status_code == 422 and "unknown level" in r.json()["detail"]


def test_cli_exit_codes(broken_city, engine):
    from typer.testing import CliRunner

    from gridserver.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["check", "topology", "--area", D, "--json"])
    assert res.exit_code == 1, res.output
    body = json.loads(res.stdout)
    assert body["count"] == 4
    assert sorted(i["kind"] for i in body["issues"]) == ["gap", "orphan", "outside", "overlap"]
    res = runner.invoke(app, ["check", "topology", "--area", D])
    assert res.exit_code == 1
    assert "4 topology issue(s) found" in res.stdout
    res = runner.invoke(app, ["check", "topology", "--area", D + "003001"])  # a clean community
    assert res.exit_code == 0, res.output
    assert "topology clean" in res.stdout
    res = runner.invoke(app, ["check", "topology", "--area", "440197"])
    assert res.exit_code == 2
    assert "no current admin area" in res.stderr


def test_imported_city_checks_clean_and_breaking_it_is_seen(scratch, tmp_path):
    """Import → check round trip: the importer's rows are what the check reads."""
    from gridserver.areas.importer import import_areas

    areas = city()
    for level in ("district", "street", "community", "grid"):
        rows = [a for a in areas.values() if a["level"] == level]
        gpd.GeoDataFrame({"code": [a["code"] for a in rows], "name": [a["name"] for a in rows]},
                         geometry=[a["geom"] for a in rows], crs=4326).to_file(tmp_path / f"{level}.geojson")
        import_areas(tmp_path / f"{level}.geojson", level)
    with scratch.connect() as conn:
        assert check_topology(conn, parent_code=D) == []
    # re-import the grids of one community with one grid shifted: a new version, and an overlap + gap
    rows = [a for a in areas.values() if a["level"] == "grid" and a["parent_code"] == D + "003001"]
    geoms = [a["geom"] for a in rows]
    geoms[0] = translate(geoms[0], xoff=0.001)
    gpd.GeoDataFrame({"code": [a["code"] for a in rows], "name": [a["name"] for a in rows]},
                     geometry=geoms, crs=4326).to_file(tmp_path / "moved.geojson")
    report = import_areas(tmp_path / "moved.geojson", "grid")
    assert (report.updated, report.unchanged) == (1, 3)
    with scratch.connect() as conn:
        kinds = sorted(i.kind for i in check_topology(conn, parent_code=D + "003001"))
    assert kinds == ["gap", "overlap"]


def test_invalid_geometry_is_reported_and_does_not_abort_the_check(clean_city, engine):
    # rows written around the importer (which rejects or repairs these) must not crash the check
    g = dict(clean_city[D + "001001001"])
    x0, y0, x1, y1 = g["geom"].bounds
    g["geom"] = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])  # bow-tie: half the cell
    load_areas(engine, [g])
    with engine.connect() as conn:
        issues = check_topology(conn, parent_code=D)
    kinds = sorted(i.kind for i in issues)
    assert kinds == ["gap", "gap", "invalid"]  # the two triangles the bow-tie leaves uncovered
    invalid = next(i for i in issues if i.kind == "invalid")
    assert invalid.codes == [g["code"]] and "Self-intersection" in invalid.reason
    assert invalid.as_dict()["reason"] == invalid.reason
    gaps = [i for i in issues if i.kind == "gap"]
    assert sum(i.area_m2 for i in gaps) == pytest.approx(m2(clean_city[g["code"]]["geom"]) / 2, rel=0.01)
