"""POST /api/v1/locate with Arrow IPC streams in and/or out (the fast option for large batches), over real
HTTP against the small test city: the same answers as NDJSON, which itself is checked against shapely
in test_batch_api.py; bad Arrow input is a 4xx naming row and column."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from areas.test_batch_api import FIELDS, expected, ndjson, sample_points, stored  # noqa: F401 (fixture)

ARROW = "application/vnd.apache.arrow.stream"


def arrow_bytes(**columns) -> bytes:
    tbl = pa.table(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, tbl.schema) as w:
        for b in tbl.to_batches(max_chunksize=max(1, tbl.num_rows // 3)):  # several batches
            w.write_batch(b)
    return sink.getvalue().to_pybytes()


def read_arrow(resp) -> list[dict]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == ARROW
    tbl = pa.ipc.open_stream(resp.content).read_all()
    assert tbl.column_names == ["id", *FIELDS]
    for f in FIELDS:
        assert pa.types.is_dictionary(tbl.schema.field(f).type)
    return tbl.to_pylist()


def test_arrow_in_and_out_give_the_ndjson_answers(http, small_city, stored):
    lon, lat = sample_points(stored)
    ids = [f"p{i}" for i in range(len(lon))]
    want = expected(small_city, lon, lat, stored)
    body = arrow_bytes(id=ids, lon=lon, lat=lat)
    for resp in (http.post("/api/v1/locate?format=arrow", content=body, headers={"content-type": ARROW}),
                 http.post("/api/v1/locate", content=body, headers={"content-type": ARROW, "accept": ARROW})):
        rows = read_arrow(resp)
        assert [r["id"] for r in rows] == ids
        assert [{f: r[f] for f in FIELDS} for r in rows] == want
    # Arrow in, NDJSON out: byte-identical to the same points sent as CSV
    as_ndjson = http.post("/api/v1/locate", content=body, headers={"content-type": ARROW})
    csv_text = "id,lon,lat\n" + "".join(f"{i},{float(x)!r},{float(y)!r}\n" for i, x, y in zip(ids, lon, lat))
    as_csv_in = http.post("/api/v1/locate", content=csv_text, headers={"content-type": "text/csv"})
    assert as_ndjson.status_code == 200 and as_ndjson.content == as_csv_in.content
    assert [{f: r[f] for f in FIELDS} for r in ndjson(as_ndjson)] == want


def test_arrow_out_for_json_input_with_int_ids_and_default_ids(http, small_city, stored):
    lon, lat = sample_points(stored)
    want = expected(small_city, lon, lat, stored)
    pts = [{"id": 10 * i, "lon": x, "lat": y} for i, (x, y) in enumerate(zip(lon, lat))]
    rows = read_arrow(http.post("/api/v1/locate?format=arrow", json=pts))
    assert [r["id"] for r in rows] == [10 * i for i in range(len(lon))]
    assert [{f: r[f] for f in FIELDS} for r in rows] == want
    # untyped Arrow body (curl --data-binary) is recognised; no id column → row numbers from 1
    rows = read_arrow(http.post("/api/v1/locate?format=arrow", content=arrow_bytes(longitude=lon, latitude=lat),
                                headers={"content-type": "application/octet-stream"}))
    assert [r["id"] for r in rows] == list(range(1, len(lon) + 1))
    assert [{f: r[f] for f in FIELDS} for r in rows] == want
    assert rows[-1]["grid_code"] is None  # outside every grid: null codes


def test_arrow_per_row_crs_and_float32_coordinates(http, small_city, stored):
    from gridserver.geo.crs import wgs84_to_gcj02

    lon = [113.255, 113.285, 113.265, 113.275]
    lat = [23.145, 23.145, 23.125, 23.125]
    glon, glat = wgs84_to_gcj02(np.array(lon), np.array(lat))
    body = arrow_bytes(id=["a", "b", "c", "d"], lon=[lon[0], glon[1], lon[2], glon[3]],
                       lat=[lat[0], glat[1], lat[2], glat[3]], crs=["wgs84", "gcj02", "", "GCJ-02"])
    rows = ndjson(http.post("/api/v1/locate", content=body, headers={"content-type": ARROW}))
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    assert [{f: r[f] for f in FIELDS} for r in rows] == expected(small_city, lon, lat, stored)
    f32 = arrow_bytes(lon=pa.array([113.255], pa.float32()), lat=pa.array([23.145], pa.float32()))
    assert ndjson(http.post("/api/v1/locate", content=f32, headers={"content-type": ARROW}))[0]["grid_code"] \
        == "440104001001001"


@pytest.mark.parametrize("body, fragment", [
    (lambda: arrow_bytes(lon=[113.26, None], lat=[23.13, 23.13]), "row 2: missing 'lon'"),
    (lambda: arrow_bytes(lon=[113.26, 113.27, float("nan")], lat=[23.13] * 3), "row 3: 'lon' is not a finite"),
    (lambda: arrow_bytes(x1=[113.26], lat=[23.13]), "no 'lon' column"),
    (lambda: arrow_bytes(lon=["东"], lat=[23.13]), "must be numeric"),
    (lambda: arrow_bytes(lon=[213.0], lat=[23.13]), "row 1: 'lon' must be between"),
    (lambda: b"\xff\xff\xff\xff not arrow at all", "not a readable Arrow IPC stream"),
])
def test_bad_arrow_input_is_a_clear_422(http, small_city, body, fragment):
    resp = http.post("/api/v1/locate", content=body(), headers={"content-type": ARROW})
    assert resp.status_code == 422, resp.text
    assert fragment in resp.json()["detail"]


def test_unknown_format_names_the_choices(http, small_city):
    resp = http.post("/api/v1/locate?format=parquet", json=[{"lon": 113.26, "lat": 23.13}])
    assert resp.status_code == 422 and "'arrow'" in resp.json()["detail"]
    assert json.loads(http.get("/openapi.json").text)["paths"]["/api/v1/locate"]["post"]["requestBody"]["content"][ARROW]
