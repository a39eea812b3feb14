"""Routing errors (no such path, wrong method) answer in the API's one error shape and say what and where;
a 405 lists in ``Allow`` every method the path serves, whichever route serves it."""

from __future__ import annotations

import re

import pytest


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing", "/ogc/collections/grids/no-such-thing", "/static/no-such.js"])
def test_unknown_paths_are_404_naming_the_path(http, path):
    r = http.get(path)
    assert r.status_code == 404
    assert r.json() == {"detail": f"没有此路径 no such path: {path}", "code": "not_found"}


def test_405_lists_every_method_of_the_path(http):
    doc = http.get("/openapi.json").json()
    several = {path: {m.upper() for m in ops} for path, ops in doc["paths"].items()
               if path.startswith("/api/v1/") and len(ops) > 1}
    assert len(several) >= 3, "too few paths with several methods to check"
    for path, methods in several.items():
        url = re.sub(r"\{[^}]+\}", "1", path)
        other = next(m for m in ("PATCH", "PUT", "DELETE", "POST") if m not in methods)
        r = http.request(other, url)
        assert r.status_code == 405, (url, r.status_code, r.text)
        assert set(r.headers["allow"].split(", ")) - {"HEAD"} == methods, (url, r.headers["allow"])
        assert r.json()["code"] == "method_not_allowed" and url in r.json()["detail"]
    r = http.post("/ogc/collections")  # the OGC resources serve GET and HEAD through two routes
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
