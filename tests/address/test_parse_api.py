"""HTTP routes of the address parser, through the real app over real HTTP."""

from __future__ import annotations

import pytest

from gridserver.address.parser import MODEL_PATH
from gridserver.address.routes_parse import MAX_BATCH

pytestmark = pytest.mark.skipif(not MODEL_PATH.exists(), reason=f"model {MODEL_PATH} not built")


@pytest.fixture(scope="module")
def client(http):
    return http


def test_get_parse(client):
    r = client.get("/api/v1/address/parse", params={"q": "浙江省杭州市余杭区文一西路969号"})
    assert r.status_code == 200
    body = r.json()
    assert body["input"] == "浙江省杭州市余杭区文一西路969号"
    assert body["components"][0] == {"label": "prov", "text": "浙江省", "start": 0, "end": 3}
    assert {c["label"] for c in body["components"]} >= {"city", "district", "road", "roadno"}


def test_get_empty_and_missing(client):
    r = client.get("/api/v1/address/parse", params={"q": ""})
    assert r.status_code == 200 and r.json() == {"input": "", "components": []}
    r = client.get("/api/v1/address/parse")
    assert r.status_code == 422 and r.json()["code"] == "invalid_input" and "q" in r.json()["detail"]


def test_post_parse_batch(client):
    texts = ["广东省广州市越秀区东风中路338号", "", "杭州市滨江区六和路368号"]
    r = client.post("/api/v1/address/parse", json=texts)
    assert r.status_code == 200
    body = r.json()
    assert [b["input"] for b in body] == texts
    assert body[1]["components"] == []
    for b in body:
        for c in b["components"]:
            assert b["input"][c["start"]:c["end"]] == c["text"]


def test_post_too_many(client, admin_token, auth):
    r = client.post("/api/v1/address/parse", json=["杭州市"] * (MAX_BATCH + 1), headers=auth(admin_token))
    assert r.status_code == 422
    assert r.json()["code"] == "too_many" and str(MAX_BATCH) in r.json()["detail"]


def test_post_wrong_shape(client):
    r = client.post("/api/v1/address/parse", json={"q": "杭州市"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    r = client.post("/api/v1/address/parse", json=["杭州市", 3])
    assert r.status_code == 422
