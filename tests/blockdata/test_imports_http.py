"""HTTP upload import (issue 9): POST /api/v1/imports/{kind} streams the file to disk under the body
limit, checks it, queues the same background job as `gridserver import`, answers 202 + Location;
Idempotency-Key replays; bad files are 422 with row/column and queue nothing; admins only.
Real PostGIS, real HTTP, the job run by the real worker code."""

from __future__ import annotations

import io
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).parent))
import data as T  # noqa: E402
from conftest import load_areas, scratch_codes  # noqa: E402
from raw_http import raw_chunked  # noqa: E402
from shapely.geometry import box  # noqa: E402

from gridserver.limits import LIMIT_KEY  # noqa: E402

D = "440179"
GRID = f"{D}001001001"
HEADER = ["身份证号", "姓名", "联系电话", "性别", "户号", "地址", "人口类型", "重点人群"]


@pytest.fixture(scope="module")
def district(engine):
    from gridserver.address.base import NewAddress, bulk_create, set_actor

    gen = scratch_codes(engine, D)
    next(gen)
    g = box(113.40, 23.20, 113.44, 23.23)
    load_areas(engine, [dict(level="district", code=D, name="上传区", parent_code=None, geom=g),
                        dict(level="street", code=f"{D}001", name="上传街道", parent_code=D, geom=g),
                        dict(level="community", code=f"{D}001001", name="上传社区", parent_code=f"{D}001", geom=g),
                        dict(level="grid", code=GRID, name="上传社区第001网格", parent_code=f"{D}001001", geom=g)])
    A = dict(district_code=D, geom_source="survey")
    with engine.begin() as conn:
        set_actor(conn, "test", "create", "upload-import test addresses")
        bulk_create(conn, [NewAddress("上传路", "1", "", "", "", "", lon=113.410, lat=23.215, **A),
                           NewAddress("上传路", "2", "", "", "", "", lon=113.430, lat=23.215, **A)], source="测试")
    yield
    from gridserver.blockdata.routes_import import upload_dir

    with engine.begin() as conn:  # jobs these tests queued and did not run are not for other tests' workers
        conn.execute(text("UPDATE jobs SET state = 'cancelled', finished_at = now() WHERE task = 'blockdata.import' "
                          "AND state = 'queued' AND args->>'path' LIKE :p || '%'"), {"p": str(upload_dir().resolve())})
    try:
        next(gen)
    except StopIteration:
        pass


def _csv(rows, header=HEADER) -> bytes:
    out = io.StringIO()
    out.write(",".join(header) + "\n")
    for r in rows:
        out.write(",".join(r) + "\n")
    return out.getvalue().encode("utf-8")


def _people_csv() -> bytes:
    return _csv([[T.pid(41, "M", 1961), "冯上传", "13800000041", "男", "", "上传路1号", "户籍", ""],
                 [T.pid(42, "F", 1972), "陈上传", "13800000042", "女", "", "上传路2号", "流动", "独居老人"],
                 [T.bad_check(T.pid(43)), "周坏号", "13800000043", "男", "", "上传路1号", "户籍", ""]])  # row 4


def _post(http, auth, who, kind, content: bytes, name="people.csv", key=None, **form):
    headers = {**auth(who), **({"Idempotency-Key": key} if key else {})}
    return http.post(f"/api/v1/imports/{kind}", headers=headers, files={"file": (name, content, "text/csv")},
                     data={"source": form.pop("source", "上传测试"), **form})


def _jobs(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM jobs WHERE task = 'blockdata.import'")).scalar()


def _uploads() -> set:
    from gridserver.blockdata.routes_import import upload_dir

    return set(upload_dir().iterdir()) if upload_dir().exists() else set()


def test_upload_queues_the_import_job_and_the_rows_get_linked(http, auth, admin_user, engine, district):
    from gridserver.jobs.worker import import_task_modules, run_one

    source = f"上传{uuid.uuid4().hex[:6]}"
    r = _post(http, auth, admin_user, "people", _people_csv(), source=source, update_rule="monthly")
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == f"/api/v1/jobs/{body['job_id']}" == body["status_url"]
    assert body["rows"] == 3 and body["state"] == "queued" and body["file"] == "people.csv"
    job = http.get(r.headers["location"], headers=auth(admin_user)).json()
    assert job["state"] == "queued" and job["task"] == "blockdata.import" and job["created_by"] == admin_user["username"]
    import_task_modules()
    assert run_one(engine, only=body["job_id"]) == body["job_id"]
    job = http.get(r.headers["location"], headers=auth(admin_user)).json()
    assert job["state"] == "done", job.get("error")
    rep = job["result"]
    assert (rep["rows"], rep["inserted"], rep["rejected"]) == (3, 2, 1)
    assert {"row": 4, "column": "id_number"}.items() <= rep["errors"][0].items()
    with engine.connect() as conn:
        people = conn.execute(text("SELECT grid_code, address_code FROM people WHERE source = :s"), {"s": source}).all()
        ds = conn.execute(text("SELECT update_rule, row_count FROM bd_datasets WHERE name = :n"),
                          {"n": f"people:{source}"}).one()
    assert len(people) == 2 and all(p.grid_code == GRID and p.address_code for p in people)
    assert tuple(ds) == ("monthly", 2)


def test_idempotency_key_returns_the_same_job(http, auth, admin_user, engine, district):
    key = f"imp-{uuid.uuid4()}"
    content = _people_csv()
    first = _post(http, auth, admin_user, "households", _csv([["H900", "上传路1号", "家庭户", "2"]],
                                                             ["户号", "地址", "户类型", "户人数"]), key=key)
    assert first.status_code == 202, first.text
    before, dirs = _jobs(engine), _uploads()
    again = _post(http, auth, admin_user, "households", _csv([["H900", "上传路1号", "家庭户", "2"]],
                                                             ["户号", "地址", "户类型", "户人数"]), key=key)
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
    assert _jobs(engine) == before and _uploads() == dirs  # nothing queued, no second copy on disk
    other = _post(http, auth, admin_user, "households", content, key=key)  # same key, another file
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert _jobs(engine) == before


@pytest.mark.parametrize("name,content,row,column", [
    ("ragged.csv", _csv([["a"] * 8, ["b"] * 9]), 3, None),                       # line 3 has 9 fields
    ("nocol.csv", _csv([["张三", "男"]], ["姓名", "性别"]), 1, "id_number"),       # no ID-number column
    ("empty.csv", _csv([]), 2, None),                                              # header only
])
def test_bad_file_is_422_with_row_or_column_and_queues_nothing(http, auth, admin_user, engine, district,
                                                                name, content, row, column):
    before, dirs = _jobs(engine), _uploads()
    r = _post(http, auth, admin_user, "people", content, name=name)
    assert r.status_code == 422, r.text
    assert r.json()["row"] == row and r.json().get("column") == column and name in r.json()["detail"]
    assert _jobs(engine) == before and _uploads() == dirs


def test_wrong_type_or_kind_is_422(http, auth, admin_user, engine, district):
    before = _jobs(engine)
    r = _post(http, auth, admin_user, "people", b"MZ\x90\x00binary", name="tool.exe")
    assert r.status_code == 422 and r.json()["code"] == "unsupported_file"
    assert _post(http, auth, admin_user, "pets", _people_csv()).status_code == 422
    r = _post(http, auth, admin_user, "people", _people_csv(), crs="EPSG:999999")
    assert r.status_code == 422 and "crs" in r.json()["detail"]
    assert _jobs(engine) == before


def test_only_admins_may_upload(http, auth, make_user, engine, district):
    before = _jobs(engine)
    r = http.post("/api/v1/imports/people", files={"file": ("p.csv", _people_csv(), "text/csv")}, data={"source": "x"})
    assert r.status_code == 401
    for role, scope in (("district_operator", D), ("analyst", None), ("grid_worker", GRID)):
        r = _post(http, auth, make_user(role, scope), "people", _people_csv())
        assert r.status_code == 403, (role, r.text)
    assert _jobs(engine) == before


@pytest.fixture
def import_limit_1mb(live_url):
    from gridserver.blockdata.routes_import import router

    extra = next(r.openapi_extra for r in router.routes if r.path.endswith("/imports/{kind}"))
    old = extra[LIMIT_KEY]
    extra[LIMIT_KEY] = 1024 * 1024
    yield
    extra[LIMIT_KEY] = old


def test_upload_over_the_limit_is_413_while_streaming(live_url, auth, admin_user, engine, district, import_limit_1mb):
    before, dirs = _jobs(engine), _uploads()
    boundary = "gsimport"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"source\"\r\n\r\nx\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\n").encode() + ",".join(HEADER).encode() + b"\n"
    sent, status, body = raw_chunked(live_url, "/api/v1/imports/people",
                                     {**auth(admin_user), "Content-Type": f"multipart/form-data; boundary={boundary}"},
                                     head, b"1,2,3,4,5,6,7,8\n" * 2048, 64 * 1024 * 1024)
    assert status == 413 and body["code"] == "body_too_large", body
    assert sent < 16 * 1024 * 1024
    assert _jobs(engine) == before and _uploads() == dirs


def test_uploaded_files_are_deleted_after_their_job_ended(http, auth, admin_user, engine, district):
    import os
    import time

    from gridserver.blockdata.retention import purge_uploads
    from gridserver.blockdata.routes_import import upload_dir
    from gridserver.jobs import get_job

    ended = _post(http, auth, admin_user, "people", _people_csv(), source=f"删{uuid.uuid4().hex[:6]}").json()
    waiting = _post(http, auth, admin_user, "people", _people_csv(), source=f"等{uuid.uuid4().hex[:6]}").json()
    with engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET state = 'done', finished_at = now() - interval '2 hours' WHERE id = :i"),
                     {"i": ended["job_id"]})
        folders = {j: Path(get_job(conn, j)["args"]["path"]).parent for j in (ended["job_id"], waiting["job_id"])}
    orphan = upload_dir() / "orphan-test"
    orphan.mkdir()
    day_ago = time.time() - 25 * 3600
    os.utime(orphan, (day_ago, day_ago))
    fresh = upload_dir() / "fresh-orphan-test"
    fresh.mkdir()
    with engine.connect() as conn:
        assert purge_uploads(conn) >= 2
    assert not folders[ended["job_id"]].exists() and not orphan.exists()
    assert folders[waiting["job_id"]].exists() and fresh.exists()  # still queued; too young to be an orphan
    fresh.rmdir()
