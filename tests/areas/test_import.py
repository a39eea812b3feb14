"""Importing admin areas and grids: formats, CRSs, every kind of bad file, versioning, CLI, upload.

All rows live under the scratch district 440199 (the small city shifted 0.1° east) and are deleted
after each test, so the shared small_city rows (440104…) are never touched — except in the Yuexiu
test, which runs inside a transaction that is rolled back.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.affinity import translate
from shapely.geometry import LineString, Point, Polygon, box
from sqlalchemy import text

from conftest import small_city_areas
from gridserver.areas.importer import AreaImportError, import_areas, import_many
from gridserver.errors import InvalidInput, UnknownCRS
from gridserver.geo.crs import wgs84_to_gcj02
from conftest import scratch_codes

D = "440199"


def city() -> list[dict]:
    """The small city recoded to district 440199 and moved 0.1° east."""
    out = []
    for a in small_city_areas():
        a = dict(a)
        a["code"] = D + a["code"][6:]
        a["parent_code"] = (D + a["parent_code"][6:]) if a["parent_code"] else None
        a["geom"] = translate(a["geom"], xoff=0.1)
        out.append(a)
    return out


def frame(level: str, *, with_parent: bool = True, crs="EPSG:4326") -> gpd.GeoDataFrame:
    rows = [a for a in city() if a["level"] == level]
    data = {"code": [a["code"] for a in rows], "name": [a["name"] for a in rows]}
    if with_parent:
        data["parent_code"] = [a["parent_code"] for a in rows]
    return gpd.GeoDataFrame(data, geometry=[a["geom"] for a in rows], crs=crs)


def current(engine, prefix: str = D) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(text("""SELECT code, name, level, parent_code, area_m2, ST_AsBinary(geom) AS wkb
                                    FROM admin_areas WHERE valid_to IS NULL AND code LIKE :p || '%'"""),
                            {"p": prefix}).mappings().all()
    return {r["code"]: {**r, "geom": shapely.from_wkb(bytes(r["wkb"]))} for r in rows}


def snapshot(engine) -> list[tuple]:
    """Every row of admin_areas, history included, with a hash of its geometry."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            """SELECT id, level, code, name, parent_code, area_m2, source, valid_from, valid_to,
                      md5(ST_AsEWKB(geom)) FROM admin_areas ORDER BY id"""))]


@pytest.fixture
def scratch(engine):
    """Remove every row of the scratch district D before and after the test."""
    yield from scratch_codes(engine, D)


@pytest.fixture
def district(scratch, tmp_path):
    """District 440199 imported from a WGS84 GeoJSON."""
    path = tmp_path / "district.geojson"
    frame("district").to_file(path, driver="GeoJSON")
    import_areas(path, "district")
    return scratch


@pytest.fixture
def streets(district, tmp_path):
    path = tmp_path / "streets.geojson"
    frame("street").to_file(path, driver="GeoJSON")
    import_areas(path, "street")
    return district


def assert_rejected(engine, fn, needles, exc_type=InvalidInput):
    """``fn`` raises ``exc_type`` whose message holds every needle, and the DB is unchanged."""
    before = snapshot(engine)
    with pytest.raises(exc_type) as err:
        fn()
    for needle in needles:
        assert needle in err.value.detail, (needle, err.value.detail)
    assert snapshot(engine) == before
    return err.value


# --- good files -------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Normalized/laundered field name")
def test_whole_city_in_four_formats_and_crss(scratch, tmp_path):
    # district: GeoJSON WGS84; streets: GeoPackage EPSG:4547; communities: Shapefile EPSG:4490
    # (parent_code is cut to 'parent_cod' by the format); grids: GeoParquet WGS84
    frame("district").to_file(tmp_path / "d.geojson", driver="GeoJSON")
    frame("street").to_crs("EPSG:4547").to_file(tmp_path / "s.gpkg", driver="GPKG", layer="streets")
    with pytest.warns(UserWarning):  # geopandas warns about the truncated column name
        frame("community").to_crs("EPSG:4490").to_file(tmp_path / "c.shp")
    frame("grid").to_parquet(tmp_path / "g.parquet")

    r = import_areas(tmp_path / "d.geojson", "district")
    assert (r.inserted, r.updated, r.unchanged, r.crs) == (1, 0, 0, "wgs84")
    r = import_areas(tmp_path / "s.gpkg", "street", layer="streets")
    assert (r.inserted, r.crs) == (2, "EPSG:4547")
    r = import_areas(tmp_path / "c.shp", "community", parent_field="parent_cod")
    assert (r.inserted, r.crs) == (4, "cgcs2000")
    r = import_areas(tmp_path / "g.parquet", "grid")
    assert r.inserted == 16

    rows = current(scratch)
    truth = {a["code"]: a for a in city()}
    assert set(rows) == set(truth)
    for code, a in truth.items():
        row = rows[code]
        assert (row["name"], row["level"], row["parent_code"]) == (a["name"], a["level"], a["parent_code"])
        assert row["geom"].geom_type == "MultiPolygon"
        # EPSG:4547 round trip moves vertices by far less than a millimetre
        assert shapely.hausdorff_distance(row["geom"], a["geom"]) < 1e-8
        expected_m2 = gpd.GeoSeries([a["geom"]], crs=4326).to_crs(4547).area.iloc[0]
        assert row["area_m2"] == pytest.approx(expected_m2, rel=1e-6)


def test_zipped_shapefile_without_crs_is_assumed_wgs84_and_says_so(district, tmp_path):
    with pytest.warns(UserWarning):
        frame("street", with_parent=False, crs=None).to_file(tmp_path / "s.shp")
    with zipfile.ZipFile(tmp_path / "streets.zip", "w") as z:
        for ext in ("shp", "shx", "dbf", "cpg"):
            if (tmp_path / f"s.{ext}").exists():
                z.write(tmp_path / f"s.{ext}", f"s.{ext}")
    r = import_areas(tmp_path / "streets.zip", "street")
    assert r.inserted == 2
    assert any("assumed WGS84" in n for n in r.notes)
    assert current(district)[D + "001"]["parent_code"] == D  # derived from the code prefix


def test_gcj02_file_lands_where_the_wgs84_one_does(streets, tmp_path):
    before = current(streets)
    g = frame("street")
    g["geometry"] = shapely.transform(g.geometry.values, lambda xy: np.column_stack(wgs84_to_gcj02(xy[:, 0], xy[:, 1])))
    # the shift is real (hundreds of metres), so landing back on the WGS84 outline means it was undone
    assert shapely.hausdorff_distance(g.geometry.iloc[0], before[D + "001"]["geom"]) > 1e-3
    g.to_file(tmp_path / "gcj.geojson", driver="GeoJSON")
    r = import_areas(tmp_path / "gcj.geojson", "street", crs="gcj02")
    assert r.crs == "gcj02"
    assert r.features == 2
    after = current(streets)
    for code in before:
        assert shapely.hausdorff_distance(after[code]["geom"], before[code]["geom"]) < 1e-6


def test_reimport_is_idempotent(district, tmp_path):
    path = tmp_path / "s.geojson"
    frame("street").to_file(path, driver="GeoJSON")
    first = import_areas(path, "street")
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    before = snapshot(district)
    again = import_areas(path, "street")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    assert snapshot(district) == before


def test_changed_geometry_and_name_make_a_new_version_keeping_history(streets, tmp_path):
    old = current(streets)[D + "001"]
    g = frame("street")
    g.loc[0, "geometry"] = translate(g.geometry.iloc[0], yoff=0.001)
    g.loc[1, "name"] = "新北京街道"
    g.to_file(tmp_path / "s2.geojson", driver="GeoJSON")
    r = import_areas(tmp_path / "s2.geojson", "street")
    assert (r.inserted, r.updated, r.unchanged) == (0, 2, 0)
    now = current(streets)
    assert now[D + "003"]["name"] == "新北京街道"
    assert shapely.hausdorff_distance(now[D + "001"]["geom"], old["geom"]) == pytest.approx(0.001, abs=1e-9)
    with streets.connect() as conn:
        hist = conn.execute(text("""SELECT valid_to IS NULL AS cur, name, ST_AsBinary(geom) AS wkb
                                    FROM admin_areas WHERE code = :c ORDER BY valid_from, id"""),
                            {"c": D + "001"}).all()
    assert [h.cur for h in hist] == [False, True]
    assert shapely.equals(shapely.from_wkb(bytes(hist[0].wkb)), old["geom"])


def test_parents_may_come_from_the_same_file_set(district, tmp_path):
    frame("street").to_file(tmp_path / "s.geojson", driver="GeoJSON")
    frame("community").to_file(tmp_path / "c.geojson", driver="GeoJSON")
    # alone, the communities are rejected: their streets do not exist yet
    assert_rejected(district, lambda: import_areas(tmp_path / "c.geojson", "community"), ["does not exist"])
    r = import_many([(tmp_path / "s.geojson", "street"), (tmp_path / "c.geojson", "community")])
    assert (r.inserted, r.level) == (6, "street,community")


def test_column_mapping_and_osm_code_column(district, tmp_path):
    g = frame("street", with_parent=False).rename(columns={"code": "ref:admin:CN:nbs"})
    g.to_file(tmp_path / "osm.geojson", driver="GeoJSON")
    r = import_areas(tmp_path / "osm.geojson", "street")
    assert r.inserted == 2
    assert any("ref:admin:CN:nbs" in n for n in r.notes)
    g = frame("community", with_parent=False).rename(columns={"code": "BM", "name": "MC"})
    g["street"] = [c[:9] for c in g["BM"]]
    g.to_file(tmp_path / "c.geojson", driver="GeoJSON")
    r = import_areas(tmp_path / "c.geojson", "community", code_field="BM", name_field="MC", parent_field="street")
    assert r.inserted == 4
    assert current(district)[D + "001001"]["name"] == "洪桥北社区"


def test_bow_tie_rejected_with_index_and_reason_then_repaired(streets, tmp_path):
    g = frame("community")
    x0, y0, x1, y1 = g.geometry.iloc[1].bounds
    g.loc[1, "geometry"] = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])  # bow-tie
    g.to_file(tmp_path / "c.geojson", driver="GeoJSON")
    code = g["code"].iloc[1]
    assert_rejected(streets, lambda: import_areas(tmp_path / "c.geojson", "community"),
                    [f"feature 1 (code {code})", "Self-intersection", "--repair", "nothing was imported"])
    r = import_areas(tmp_path / "c.geojson", "community", repair=True)
    assert r.inserted == 4
    assert len(r.repaired) == 1 and "feature 1" in r.repaired[0]
    fixed = current(streets)[code]["geom"]
    assert fixed.is_valid and fixed.geom_type == "MultiPolygon" and len(fixed.geoms) == 2
    assert fixed.area == pytest.approx((x1 - x0) * (y1 - y0) / 2, rel=1e-9)  # the two triangles


# --- bad files --------------------------------------------------------------------------------
def test_unknown_crs_rejected(streets, tmp_path):
    frame("community").to_file(tmp_path / "c.geojson", driver="GeoJSON")
    assert_rejected(streets, lambda: import_areas(tmp_path / "c.geojson", "community", crs="EPSG:999999"),
                    ["unknown coordinate system", "EPSG:999999"], UnknownCRS)
    assert_rejected(streets, lambda: import_areas(tmp_path / "c.geojson", "community", crs="mars-2"),
                    ["unknown coordinate system"], UnknownCRS)


@pytest.mark.filterwarnings("ignore:Normalized/laundered field name")
def test_projected_coordinates_without_crs_rejected(district, tmp_path):
    with pytest.warns(UserWarning):
        frame("street").to_crs(4547).set_crs(None, allow_override=True).to_file(tmp_path / "s.shp")
    assert_rejected(district, lambda: import_areas(tmp_path / "s.shp", "street"),
                    ["declares no coordinate system", "--crs"])
    # a GeoJSON always means WGS84, so metres there are out of range, per feature
    frame("street").to_crs(4547).set_crs(4326, allow_override=True).to_file(tmp_path / "s.geojson")
    assert_rejected(district, lambda: import_areas(tmp_path / "s.geojson", "street"),
                    ["feature 0", "feature 1", "outside lon/lat range"])


def test_missing_code_column_and_empty_codes(district, tmp_path):
    frame("street").drop(columns=["code"]).to_file(tmp_path / "nocode.geojson", driver="GeoJSON")
    assert_rejected(district, lambda: import_areas(tmp_path / "nocode.geojson", "street"),
                    ["no 'code' column", "--code-field"])
    assert_rejected(district, lambda: import_areas(tmp_path / "nocode.geojson", "street", code_field="bm"),
                    ["column 'bm'", "does not exist"])
    g = frame("street")
    g.loc[1, "code"] = ""
    g.to_file(tmp_path / "empty.geojson", driver="GeoJSON")
    assert_rejected(district, lambda: import_areas(tmp_path / "empty.geojson", "street"),
                    ["feature 1", "missing code"], AreaImportError)


def test_duplicate_codes_name_the_rows(district, tmp_path):
    g = frame("street")
    g.loc[1, "code"] = g.loc[0, "code"]
    g.to_file(tmp_path / "dup.geojson", driver="GeoJSON")
    assert_rejected(district, lambda: import_areas(tmp_path / "dup.geojson", "street"),
                    ["duplicate code: appears in features 0, 1", D + "001"], AreaImportError)


def test_wrong_code_length_parent_mismatch_and_missing_parent(streets, tmp_path):
    g = frame("community")
    g.loc[0, "code"] = D + "00100"  # 11 digits
    g.loc[1, "code"] = D + "00100A"  # not all digits
    g.loc[2, "parent_code"] = D + "001"  # feature 2 is 440199003001: not its prefix
    g.to_file(tmp_path / "c.geojson", driver="GeoJSON")
    err = assert_rejected(streets, lambda: import_areas(tmp_path / "c.geojson", "community"),
                          ["feature 0", "exactly 12 digits", "feature 1", "feature 2",
                           "is not the code's 9-digit prefix"])
    assert err.extra["problem_count"] == 3
    # grids whose community does not exist
    frame("grid").to_file(tmp_path / "g.geojson", driver="GeoJSON")
    err = assert_rejected(streets, lambda: import_areas(tmp_path / "g.geojson", "grid"),
                          ["parent community " + D + "001001 does not exist"])
    assert err.extra["problem_count"] == 16


def test_non_polygon_and_empty_geometries_rejected(district, tmp_path):
    g = frame("street")
    extra = gpd.GeoDataFrame({"code": [D + "005", D + "006"], "name": ["线", "点"], "parent_code": [D, D]},
                             geometry=[LineString([(113.36, 23.13), (113.37, 23.14)]), Point(113.36, 23.13)],
                             crs=4326)
    gpd.GeoDataFrame(pd_concat([g, extra]), crs=4326).to_file(tmp_path / "mixed.geojson", driver="GeoJSON")
    assert_rejected(district, lambda: import_areas(tmp_path / "mixed.geojson", "street"),
                    ["feature 2 (code 440199005): geometry type LineString", "feature 3", "Point"])
    g.loc[1, "geometry"] = Polygon()
    g.to_file(tmp_path / "e.geojson", driver="GeoJSON")
    assert_rejected(district, lambda: import_areas(tmp_path / "e.geojson", "street"), ["feature 1", "geometry"])


def pd_concat(frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("name,content,needle", [
    ("garbage.gpkg", b"\x00\x01not a geopackage" * 50, "cannot read"),
    ("garbage.geojson", b"{\"type\": \"FeatureCollection\", \"features\": [ {oops", "cannot read"),
    ("garbage.parquet", b"PAR1 nope" * 10, "cannot read"),
    ("empty.geojson", b"", "empty"),
    ("none.geojson", json.dumps({"type": "FeatureCollection", "features": []}).encode(), "no features"),
])
def test_corrupt_and_empty_files_rejected(district, tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_bytes(content)
    assert_rejected(district, lambda: import_areas(path, "street"), [needle, name])


def test_missing_file_and_unknown_level(district, tmp_path):
    assert_rejected(district, lambda: import_areas(tmp_path / "nope.geojson", "street"), ["file not found"])
    frame("street").to_file(tmp_path / "s.geojson", driver="GeoJSON")
    assert_rejected(district, lambda: import_areas(tmp_path / "s.geojson", "province"), ["unknown level"])


def test_many_problems_are_capped_with_a_total(streets, tmp_path):
    cells = [box(113.35 + i * 1e-4, 23.12, 113.35 + (i + 1) * 1e-4, 23.121) for i in range(30)]
    g = gpd.GeoDataFrame({"code": [f"{D}001{i:04d}" for i in range(30)], "name": [f"c{i}" for i in range(30)]},
                         geometry=cells, crs=4326)
    g.to_file(tmp_path / "c.geojson", driver="GeoJSON")
    err = assert_rejected(streets, lambda: import_areas(tmp_path / "c.geojson", "community"),
                          ["30 problem(s)", "and 10 more"])
    assert err.detail.count("exactly 12 digits") == 20


# --- CLI --------------------------------------------------------------------------------------
def test_cli_import_summary_and_exit_codes(district, tmp_path):
    from typer.testing import CliRunner

    from gridserver.cli import app

    runner = CliRunner()
    frame("street").to_file(tmp_path / "s.geojson", driver="GeoJSON")
    res = runner.invoke(app, ["import", "areas", str(tmp_path / "s.geojson"), "--level", "street"])
    assert res.exit_code == 0, res.output
    assert "inserted" in res.output and "2" in res.output
    assert set(current(district)) == {D, D + "001", D + "003"}

    res = runner.invoke(app, ["import", "areas", str(tmp_path / "s.geojson"), "--level", "street"])
    assert res.exit_code == 0
    assert "unchanged" in res.output

    g = frame("community")
    g.loc[0, "code"] = g.loc[1, "code"]
    g.to_file(tmp_path / "dup.geojson", driver="GeoJSON")
    before = snapshot(district)
    res = runner.invoke(app, ["import", "areas", str(tmp_path / "dup.geojson"), "--level", "community"])
    assert res.exit_code == 2
    assert "duplicate code" in res.stderr
    res = runner.invoke(app, ["import", "areas", str(tmp_path / "s.geojson"), "--level", "street", "--crs", "xyz"])
    assert res.exit_code == 2
    assert "unknown coordinate system" in res.stderr
    assert snapshot(district) == before


# --- HTTP -------------------------------------------------------------------------------------
@pytest.fixture
def admin_token(engine):
    from gridserver.auth.security import create_access_token
    from gridserver.auth.users import create_user, get_user

    names = {"admin": "areas_import_admin", "analyst": "areas_import_analyst"}
    with engine.begin() as conn:
        for role, name in names.items():
            if get_user(conn, name) is None:
                create_user(conn, name, "import-pass-123", role)
    yield {role: create_access_token(name) for role, name in names.items()}
    with engine.begin() as conn:  # other suites may count accounts
        conn.execute(text("DELETE FROM users WHERE username = ANY(:n)"), {"n": list(names.values())})


def test_upload_requires_admin_and_imports(http, district, admin_token, tmp_path):
    frame("street").to_file(tmp_path / "s.geojson", driver="GeoJSON")
    data = (tmp_path / "s.geojson").read_bytes()
    files = {"file": ("s.geojson", data, "application/geo+json")}
    assert http.post("/api/v1/areas/import", files=files, data={"level": "street"}).status_code == 401
    r = http.post("/api/v1/areas/import", files=files, data={"level": "street"},
                  headers={"Authorization": f"Bearer {admin_token['analyst']}"})
    assert r.status_code == 403
    r = http.post("/api/v1/areas/import", files=files, data={"level": "street"},
                  headers={"Authorization": f"Bearer {admin_token['admin']}"})
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 2
    bad = {"file": ("bad.geojson", b"garbage", "application/geo+json")}
    before = snapshot(district)
    r = http.post("/api/v1/areas/import", files=bad, data={"level": "street"},
                  headers={"Authorization": f"Bearer {admin_token['admin']}"})
    assert r.status_code == 422 and "cannot read" in r.json()["detail"]
    assert snapshot(district) == before


def test_list_areas_paginated_and_geojson(http, streets):
    r = http.get("/api/v1/areas", params={"parent": D, "level": "street"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 2 and [i["code"] for i in body["items"]] == [D + "001", D + "003"]
    r = http.get("/api/v1/areas", params={"parent": D, "limit": 1, "offset": 1})
    assert [i["code"] for i in r.json()["items"]] == [D + "003"]
    fc = http.get("/api/v1/areas", params={"parent": D, "format": "geojson"}).json()
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 2
    west = shapely.geometry.shape(fc["features"][0]["geometry"])
    assert west.equals(box(113.35, 23.12, 113.37, 23.15))
    r = http.get("/api/v1/areas", params={"bbox": "113.375,23.13,113.38,23.14", "level": "street"})
    assert [i["code"] for i in r.json()["items"]] == [D + "003"]
    r = http.get("/api/v1/areas", params={"bbox": "1,2,3"})
    assert r.status_code == 422 and "bbox" in r.json()["detail"]


# --- real data: Yuexiu ------------------------------------------------------------------------
def _yuexiu() -> Path:
    from gridserver.settings import get_settings

    return get_settings().yuexiu_dir


def _iou(a, b) -> float:
    return shapely.area(shapely.intersection(a, b)) / shapely.area(shapely.union(a, b))


def test_yuexiu_osm_streets_and_gcj02_outline(engine):
    d = _yuexiu()
    streets_file = d / "yuexiu_subdistricts_osm_wgs84.geojson"
    outline = d / "yuexiu_district_boundary_osm_wgs84.geojson"
    gcj = d / "district-440104.geojson"
    if not (streets_file.exists() and outline.exists() and gcj.exists()):
        pytest.skip(f"Yuexiu reference data not found in {d}")
    with engine.connect() as conn:
        tx = conn.begin()  # rolled back: the shared small city also uses 440104
        try:
            r = import_areas(outline, "district", conn=conn)
            assert r.features == 1 and any("ref:admin:CN" in n for n in r.notes)
            r = import_areas(streets_file, "street", conn=conn)
            assert r.features == 18 and any("ref:admin:CN:nbs" in n for n in r.notes)
            names = dict(conn.execute(text("""SELECT code, name FROM admin_areas
                                              WHERE valid_to IS NULL AND parent_code = '440104'""")).all())
            assert len(names) == 18 and names["440104003"] == "北京街道"
            osm = shapely.from_wkb(bytes(conn.execute(text(
                "SELECT ST_AsBinary(geom) FROM admin_areas WHERE code = '440104' AND valid_to IS NULL")).scalar()))

            def outline_after(crs):
                import_areas(gcj, "district", crs=crs, conn=conn)
                return shapely.from_wkb(bytes(conn.execute(text(
                    "SELECT ST_AsBinary(geom) FROM admin_areas WHERE code = '440104' AND valid_to IS NULL")).scalar()))

            raw = outline_after("wgs84")  # read as if it were WGS84: off by the GCJ-02 shift
            corrected = outline_after("gcj02")
            assert _iou(raw, osm) < 0.9
            assert _iou(corrected, osm) >= 0.95
            versions = conn.execute(text("SELECT count(*) FROM admin_areas WHERE code = '440104'")).scalar()
            assert versions >= 3  # OSM, raw, corrected: history kept
        finally:
            tx.rollback()
