"""Schema fuzz: schemathesis over every operation the OpenAPI document lists at run time, with an
admin token, a bounded number of examples per operation and realistic values from
``fuzz_values.json``. No answer may be a server error; bodies and content types must match the
schema where the schema documents them.

It runs against an app server of its own (a subprocess) on a database of its own on the test server:
the fuzzer creates users, incidents and the like, which must not leak into other tests' data.
``GRIDSERVER_FUZZ_EXAMPLES`` (default 2 plus the explicit examples, to keep ``make test`` short; 6+ for a deeper run) sets the examples per operation.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from gridserver.db import embedded
from trust.private_pg import AppServer, any_category, setup_city_and_admin

VALUES = json.loads((Path(__file__).with_name("fuzz_values.json")).read_text(encoding="utf-8"))
EXAMPLES = int(os.environ.get("GRIDSERVER_FUZZ_EXAMPLES", "2"))
#: Operations that would end the fuzzer's own session or never finish; each is tested elsewhere.
EXCLUDED = [("POST", "/api/v1/auth/password"), ("POST", "/api/v1/auth/logout"),
            ("PATCH", "/api/v1/users/{username}")]


def _streams(op: dict) -> bool:
    """Server-sent events and other endless streams cannot be fuzzed by request/response."""
    content = op.get("responses", {}).get("200", {}).get("content", {})
    return any(t.startswith("text/event-stream") for t in content)


@pytest.fixture(scope="module")
def fuzz_server(db_url):
    name = f"gs_fuzz_{os.getpid()}"
    admin = db_url.rsplit("/", 1)[0] + "/postgres"
    embedded.drop_database(admin, name)
    embedded.ensure_database(admin, name)
    url = admin.rsplit("/", 1)[0] + "/" + name
    home = Path(tempfile.mkdtemp(prefix="gs-fuzz-"))
    try:
        username, password = setup_city_and_admin(url)
        _address_base(url)
        server = AppServer(url, home)
        try:
            with httpx.Client(base_url=server.base, timeout=30) as c:
                token = c.post("/api/v1/auth/token", data={"username": username, "password": password}).json()["access_token"]
                c.headers["Authorization"] = f"Bearer {token}"
                cat = any_category(c)
                for lon, lat in ((113.255, 23.145), (113.275, 23.125)):
                    assert c.post("/api/v1/incidents", json={"lon": lon, "lat": lat, "category": cat,
                                                             "description": "模糊测试"}).status_code == 201
                collections = c.get("/ogc/collections")
                if collections.status_code == 200:
                    ids = [col.get("id") for col in collections.json().get("collections", []) if col.get("id")]
                    VALUES["path"]["collection_id"] = ids or VALUES["path"]["collection_id"]
            VALUES["path"]["username"] = [username]
            yield server.base, token
        finally:
            server.stop()
            log = (home / "server.log").read_text(errors="replace")
            if "Traceback" in log:
                print("\nfuzz server log (tracebacks):\n" + log[-6000:])
    finally:
        embedded.drop_database(admin, name)
        import shutil

        shutil.rmtree(home, ignore_errors=True)


def _address_base(url: str) -> None:
    from sqlalchemy import create_engine

    from gridserver.address.demo_data import generate_base, load_base

    eng = create_engine(url)
    try:
        with eng.begin() as conn:
            load_base(conn, generate_base(7, bbox=(113.262, 23.125, 113.272, 23.135), max_houses_per_side=2),
                      source="模糊测试")
    finally:
        eng.dispose()


def _load_schema(base: str):
    raw = httpx.get(base + "/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_url(base + "/openapi.json")
    for method, path in EXCLUDED:
        schema = schema.exclude(method=method, path=path)
    for path, ops in raw["paths"].items():
        for method, op in ops.items():
            if isinstance(op, dict) and _streams(op):
                schema = schema.exclude(method=method.upper(), path=path)
    return schema


_rng = random.Random(20261125)


def _realistic(case) -> None:
    """Swap about half of the generated path/query values for realistic ones."""
    for name in list(case.path_parameters or {}):
        if name in VALUES["path"] and _rng.random() < 0.6:
            case.path_parameters[name] = _rng.choice(VALUES["path"][name])
    if isinstance(case.query, dict):
        for name in list(case.query):
            if name in VALUES["query"] and _rng.random() < 0.5:
                case.query[name] = _rng.choice(VALUES["query"][name])


def _fuzz_operation(op, token: str, mode: GenerationMode) -> list[str]:
    """Run the bounded examples of one operation; return the failures (first one per operation)."""
    failures: list[str] = []
    calls = [0]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(mode))
    def run(case):
        if failures:
            return
        _realistic(case)
        calls[0] += 1
        try:
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, timeout=60,
                                   checks=[not_a_server_error, response_schema_conformance, content_type_conformance])
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - failed checks; reported below
            failures.append(f"{op.method.upper()} {op.path} [{mode.value}]: {str(exc)[:1500]}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (e.g. no parameters in negative mode)
        pass
    return failures


def test_no_server_errors_and_answers_match_the_schema(fuzz_server):
    base, token = fuzz_server
    schema = _load_schema(base)
    failures, operations, timings = [], 0, []
    only = os.environ.get("GRIDSERVER_FUZZ_ONLY")  # a regex on "METHOD /path", to rerun one operation
    for result in schema.get_all_operations():
        op = result.ok()
        if only and not re.search(only, f"{op.method.upper()} {op.path}"):
            continue
        operations += 1
        t0 = time.perf_counter()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _fuzz_operation(op, token, mode)
        timings.append((time.perf_counter() - t0, f"{op.method.upper()} {op.path}"))
    print("slowest:", ", ".join(f"{name} {sec:.1f}s" for sec, name in sorted(timings, reverse=True)[:8]))
    print(f"\nschema fuzz: {operations} operations x 2 modes x <= {EXAMPLES} examples, {len(failures)} failing")
    assert operations >= (1 if only else 20)  # the whole API was seen
    assert not failures, "\n\n".join(failures)
