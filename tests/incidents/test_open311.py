"""Open311 GeoReport v2 over HTTP, JSON and XML, the way independent clients call it."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

BASE = "/open311/v2"


@pytest.fixture(scope="module")
def api_key(db_url, make_user, small_city):
    who = make_user("citizen")
    env = {**os.environ, "DATABASE_URL": db_url}
    r = subprocess.run([sys.executable, "-m", "gridserver.cli", "users", "apikey", f"app-{who['username']}",
                        "--user", who["username"]], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]
    assert key.startswith("o311_")
    return key


def _xml(r):
    assert r.headers["content-type"].startswith("text/xml"), r.headers["content-type"]
    assert r.text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(r.content)


def test_discovery_in_both_formats(http):
    j = http.get(f"{BASE}/discovery.json").json()
    for k in ("changeset", "contact", "key_service", "endpoints"):
        assert k in j
    ep = j["endpoints"][0]
    assert ep["specification"] == "http://wiki.open311.org/GeoReport_v2" and ep["type"] == "production"
    assert set(ep["formats"]) == {"text/xml", "application/json"} and ep["url"].endswith("/open311/v2/")
    x = _xml(http.get(f"{BASE}/discovery.xml"))
    assert x.tag == "discovery" and x.find("endpoints/endpoint/specification").text == ep["specification"]
    assert [f.text for f in x.findall("endpoints/endpoint/formats/format")] == ep["formats"]


def test_services_are_the_taxonomy_items(http):
    j = http.get(f"{BASE}/services.json", params={"jurisdiction_id": ""}).json()
    cats = http.get("/api/v1/incidents/categories").json()
    assert len(j) == sum(len(c["items"]) for c in cats) >= 80
    s = next(x for x in j if x["service_code"] == "city_appearance_01")
    assert s["service_name"] == "暴露垃圾" and s["group"] == "市容环境" and s["type"] == "realtime"
    assert s["metadata"] is False and isinstance(s["keywords"], str) and isinstance(s["service_code"], str)
    x = _xml(http.get(f"{BASE}/services.xml"))
    assert x.tag == "services" and len(x.findall("service")) == len(j)
    assert x.find("service/metadata").text == "false"
    d = http.get(f"{BASE}/services/city_appearance_01.json").json()
    assert d == {"service_code": "city_appearance_01", "attributes": []}
    assert _xml(http.get(f"{BASE}/services/city_appearance_01.xml")).tag == "service_definition"
    assert http.get(f"{BASE}/service/city_appearance_01.json").status_code == 200  # open311 1.1 client path
    r = http.get(f"{BASE}/services/nope.json")
    assert r.status_code == 404 and r.json()[0]["code"] == 404 and "nope" in r.json()[0]["description"]
    r = http.get(f"{BASE}/services.json", params={"jurisdiction_id": "999999"})
    assert r.status_code == 404


def test_post_with_form_fields_then_read_back(http, api_key):
    r = http.post(f"{BASE}/requests.json", data={
        "api_key": api_key, "jurisdiction_id": "", "service_code": "public_facility_01", "lat": "23.146",
        "long": "113.255", "description": "路灯不亮一周了\n晚上很黑", "email": "a@example.com", "first_name": "李",
        "media_url": "https://example.com/p.jpg"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, list) and len(body) == 1 and "token" not in body[0]
    rid = body[0]["service_request_id"]
    assert isinstance(rid, str) and "查询码" in body[0]["service_notice"]
    # the citizen's page for that code is named in the notice, and it answers
    track = body[0]["service_notice"].split("进度查询 ")[1]
    assert track.startswith("http") and "/track?code=" in track
    code = track.split("code=")[1]
    assert http.get(f"/api/v1/track/{code}").status_code == 200
    got = http.get(f"{BASE}/requests/{rid}.json").json()
    assert len(got) == 1
    req = got[0]
    assert req["service_request_id"] == rid and req["status"] == "open" and req["service_code"] == "public_facility_01"
    assert req["agency_responsible"] == "越秀区城市管理和综合执法局" and req["media_url"] == "https://example.com/p.jpg"
    assert req["lat"] == pytest.approx(23.146) and req["long"] == pytest.approx(113.255)
    assert req["requested_datetime"].endswith("+08:00") and "a@example.com" not in str(got)
    x = _xml(http.get(f"{BASE}/requests/{rid}.xml"))
    assert x.tag == "service_requests" and x.find("request/service_request_id").text == rid
    assert x.find("request/status").text == "open"
    # XML POST, api_key in the query string (the open311 1.1 client)
    r = http.post(f"{BASE}/requests.xml", params={"api_key": api_key},
                  data={"service_code": "city_appearance_02", "lat": "23.146", "long": "113.256"})
    assert r.status_code == 200
    rid2 = _xml(r).find("request/service_request_id").text
    lst = http.get(f"{BASE}/requests.json", params={"service_request_id": f"{rid},{rid2}"}).json()
    assert {x["service_request_id"] for x in lst} == {rid, rid2}


def test_list_filters_and_status_mapping(http, api_key, auth, admin_token):
    r = http.post(f"{BASE}/requests.json", data={"api_key": api_key, "service_code": "city_appearance_03",
                                                 "lat": "23.146", "long": "113.2555", "description": "小广告"})
    rid = r.json()[0]["service_request_id"]
    opened = http.get(f"{BASE}/requests.json", params={"service_code": "city_appearance_03", "status": "open"}).json()
    assert rid in [x["service_request_id"] for x in opened] and all(x["status"] == "open" for x in opened)
    for action, body in [("accept", {}), ("start", {}), ("resolve", {"note": "已清除"})]:
        assert http.post(f"/api/v1/incidents/{rid}/actions/{action}", headers=auth(admin_token), json=body).status_code == 200
    closed = http.get(f"{BASE}/requests.json", params={"service_code": "city_appearance_03", "status": "closed"}).json()
    assert rid in [x["service_request_id"] for x in closed] and all(x["status"] == "closed" for x in closed)
    now = datetime.now(timezone.utc)
    win = http.get(f"{BASE}/requests.json", params={"start_date": (now - timedelta(hours=1)).isoformat(),
                                                    "end_date": (now + timedelta(hours=1)).isoformat()}).json()
    assert rid in [x["service_request_id"] for x in win]
    old = http.get(f"{BASE}/requests.json", params={"end_date": (now - timedelta(days=1)).isoformat()}).json()
    assert rid not in [x["service_request_id"] for x in old]
    r = http.get(f"{BASE}/requests.json", params={"start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"})
    assert r.status_code == 400 and "90 days" in r.json()[0]["description"]
    r = http.get(f"{BASE}/requests.xml", params={"status": "pending"})
    assert r.status_code == 400 and _xml(r).find("error/code").text == "400"


@pytest.mark.parametrize("form, status, fragment", [
    ({"service_code": "city_appearance_01", "lat": "23.146", "long": "113.255"}, 403, "api_key"),
    ({"api_key": "wrong", "service_code": "city_appearance_01", "lat": "23.146", "long": "113.255"}, 403, "invalid"),
    ({"service_code": "", "lat": "23.146", "long": "113.255"}, 400, "service_code"),
    ({"service_code": "zzz", "lat": "23.146", "long": "113.255"}, 404, "zzz"),
    ({"service_code": "city_appearance_01"}, 400, "location"),
    ({"service_code": "city_appearance_01", "lat": "23.146"}, 400, "together"),
    ({"service_code": "city_appearance_01", "lat": "x", "long": "113.255"}, 400, "numbers"),
    ({"service_code": "city_appearance_01", "lat": "23.13", "long": "113.40"}, 400, "outside"),
])
def test_post_errors_follow_the_spec(http, api_key, form, status, fragment):
    data = {"api_key": api_key, **form} if "api_key" not in form and status != 403 else form
    r = http.post(f"{BASE}/requests.json", data=data)
    assert r.status_code == status, r.text
    err = r.json()
    assert isinstance(err, list) and err[0]["code"] == status and fragment in err[0]["description"]
    rx = http.post(f"{BASE}/requests.xml", data=data)
    assert rx.status_code == status and _xml(rx).tag == "errors"


def test_token_lookup_and_unknown_request(http, api_key):
    rid = http.post(f"{BASE}/requests.json", data={"api_key": api_key, "service_code": "city_appearance_01",
                                                   "lat": "23.146", "long": "113.255"}).json()[0]["service_request_id"]
    code = http.get(f"/api/v1/incidents/{rid}", headers={}).status_code  # private API needs a token
    assert code == 401
    r = http.get(f"{BASE}/requests/999999999.json")
    assert r.status_code == 404 and r.json()[0]["code"] == 404
    assert http.get(f"{BASE}/tokens/NOPE.json").status_code == 404
