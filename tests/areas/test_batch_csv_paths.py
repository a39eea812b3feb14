"""POST /api/v1/locate CSV bodies through the pyarrow fast path and its pandas fallback, over real HTTP.

Each input is also checked against the same points sent as a plain JSON list, so both parsers must
give the same ids, order and grids; expected grids come from the small city's known layout.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from gridserver.areas import batch

FIELDS = ("grid_code", "community_code", "street_code", "district_code")
IN_A = (113.255, 23.145)  # inside 440104001001001
IN_B = (113.285, 23.125)  # inside 440104003002004
OUT = (113.0, 23.0)


def ndjson(resp) -> list[dict]:
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines()]


def post_csv(http, body: bytes | str, fmt: str = ""):
    return http.post(f"/api/v1/locate{fmt}", content=body, headers={"content-type": "text/csv"})


def test_quoted_bom_crlf_and_blank_lines(http, small_city):
    body = ('\ufeffid,lon,lat\r\n'
            f'"a,1",{IN_A[0]},{IN_A[1]}\r\n'
            '\r\n'
            f'"say ""hi""",{IN_B[0]},{IN_B[1]}\r\n'
            f'点三,"{OUT[0]}",{OUT[1]}\r\n'
            '\r\n').encode()
    assert batch._from_csv_arrow(body, None) is not None  # really the fast path
    rows = ndjson(post_csv(http, body))
    assert [r["id"] for r in rows] == ["a,1", 'say "hi"', "点三"]
    assert [r["grid_code"] for r in rows] == ["440104001001001", "440104003002004", None]
    assert rows[1]["district_code"] == "440104" and rows[2]["district_code"] is None
    resp = post_csv(http, body, "?format=csv")
    got = list(csv.reader(io.StringIO(resp.text)))
    assert got[0] == ["id", *FIELDS]
    assert got[1] == ["a,1", "440104001001001", "440104001001", "440104001", "440104"]
    assert got[2][0] == 'say "hi"' and got[3] == ["点三", "", "", "", ""]


def test_no_id_column_numbers_rows_and_aliases(http, small_city):
    body = f"经度,纬度\n{IN_B[0]},{IN_B[1]}\n{OUT[0]},{OUT[1]}\n{IN_A[0]},{IN_A[1]}\n"
    rows = ndjson(post_csv(http, body))
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert [r["grid_code"] for r in rows] == ["440104003002004", None, "440104001001001"]
    text = post_csv(http, body, "?format=csv").text
    assert text.splitlines()[1:] == ["1,440104003002004,440104003002,440104003,440104", "2,,,,",
                                     "3,440104001001001,440104001001,440104001,440104"]


@pytest.mark.parametrize("body", [
    # leading blanks (pandas skips them), per-row CRS with padding, ids needing JSON escapes
    f"id, lon, lat\n x,  {IN_A[0]}, {IN_A[1]}\ny,{IN_B[0]},{IN_B[1]}\n",
    f"id,lon,lat,crs\nx,{IN_A[0]},{IN_A[1]}, wgs84\ny,{IN_B[0]},{IN_B[1]},WGS84 \n",
    f"id,lon,lat\n\\x,{IN_A[0]},{IN_A[1]}\ny,{IN_B[0]},{IN_B[1]}\n",
])
def test_fallback_inputs_same_answers(http, small_city, body):
    rows = ndjson(post_csv(http, body))
    assert [r["grid_code"] for r in rows] == ["440104001001001", "440104003002004"]
    assert rows[0]["id"] in ("x", "\\x") and rows[1]["id"] == "y"


@pytest.mark.parametrize("body, fragment", [
    (f"id,lon,lat\na,{IN_A[0]},{IN_A[1]}\nb,{IN_B[0]},{IN_B[1]}\nc,{IN_A[0]},north\nd,1,2\n", "row 3: 'lat'"),
    (f"id,lon,lat\r\na,{IN_A[0]},{IN_A[1]}\r\n\r\nb,,{IN_B[1]}\r\nc,1,2\r\n", "row 2: missing 'lon'"),
    (f"id,lon,lat\na,{IN_A[0]},{IN_A[1]}\nb,inf,{IN_B[1]}\n", "row 2: 'lon' is not a finite number"),
    (f'id,lon,lat\na,{IN_A[0]},{IN_A[1]}\nb,"{IN_B[0]},{IN_B[1]}\n', "CSV could not be parsed"),
    (f"id,lon,lat\na,{IN_A[0]},{IN_A[1]}\nb,{IN_B[0]},95\n", "row 2: 'lat' must be between"),
])
def test_bad_rows_in_the_middle(http, small_city, body, fragment):
    resp = post_csv(http, body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "invalid_input"
    assert fragment in resp.json()["detail"], resp.json()["detail"]


def test_fast_path_agrees_with_pandas_path(small_city):
    """Both CSV parsers read the same numbers and ids (fast path on, then forced off)."""
    import numpy as np

    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(113.24, 113.30, 5000), rng.uniform(23.11, 23.16, 5000)
    body = ("id,lon,lat\n" + "".join(f"p{i},{x!r},{y!r}\n" for i, (x, y) in enumerate(zip(lon.tolist(), lat.tolist())))).encode()
    fast, slow = batch._from_csv_arrow(body, None), batch._from_csv_pandas(body, None)
    assert fast is not None
    assert np.array_equal(fast.x, lon) and np.array_equal(fast.y, lat)
    assert np.array_equal(slow.x, fast.x) and np.array_equal(slow.y, fast.y)
    assert fast.ids.to_pylist() == list(slow.ids)


def test_json_ids_of_every_kind(http, small_city):
    """All-str, all-int, mixed, escaped and missing ids come back as given (or as row numbers)."""
    pts = [IN_A, IN_B, OUT]
    for ids in (["a", "点b", "c"], [10, 20, 30], ["a", 2, None], ['q"1', "back\\slash", "tab\there"], [None] * 3):
        body = [{"lon": x, "lat": y} | ({} if i is None else {"id": i}) for i, (x, y) in zip(ids, pts)]
        rows = ndjson(http.post("/api/v1/locate", json=body))
        assert [r["id"] for r in rows] == [k + 1 if i is None else i for k, i in enumerate(ids)]
        assert [r["grid_code"] for r in rows] == ["440104001001001", "440104003002004", None]
        resp = http.post("/api/v1/locate?format=csv", json=body)
        got = list(csv.reader(io.StringIO(resp.text)))[1:]
        assert [g[0] for g in got] == [str(k + 1 if i is None else i) for k, i in enumerate(ids)]
        assert [g[1] for g in got] == ["440104001001001", "440104003002004", ""]


def test_json_non_finite_literals_still_name_the_row(http, small_city):
    body = '[{"lon": 113.255, "lat": 23.145}, {"lon": NaN, "lat": 23.1}]'
    resp = http.post("/api/v1/locate", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 422
    assert "row 2: 'lon' is not a finite number" in resp.json()["detail"]


def test_quoted_line_breaks_across_parser_blocks(http, small_city):
    """Ids holding line breaks, in a body larger than one pyarrow block (4 MB), keep rows aligned."""
    n = 200_000
    lines = [f'"id\n{i}",{IN_A[0] if i % 2 else OUT[0]},{IN_A[1] if i % 2 else OUT[1]}' for i in range(n)]
    body = ("id,lon,lat\n" + "\n".join(lines) + "\n").encode()
    assert len(body) > 4 << 20
    pts = batch._from_csv_arrow(body, None)
    assert pts is not None and len(pts.x) == n
    assert pts.ids[n - 1].as_py() == f"id\n{n - 1}"
    assert np.array_equal(pts.x, np.where(np.arange(n) % 2 == 1, IN_A[0], OUT[0]))
