"""A real Open311 client: the ``georeport`` package (0.3.1, requests + xmltodict) reads our GeoReport v2
endpoint in both of its formats, against requests filed by form POST as FixMyStreet files them."""

from __future__ import annotations

import pytest

georeport = pytest.importorskip("georeport")

BASE = "/open311/v2"


@pytest.fixture(scope="module")
def filed(http, engine, make_user, small_city):
    from gridserver.incidents.open311 import issue_key

    who = make_user("citizen")
    with engine.begin() as conn:
        key = issue_key(conn, f"georeport-{who['username']}", who["username"])
    code = http.get(f"{BASE}/services.json").json()[0]["service_code"]
    ids = []
    for k in range(2):
        r = http.post(f"{BASE}/requests.xml", data={"api_key": key, "jurisdiction_id": "", "service_code": code,
                                                     "lat": "23.146", "long": f"{113.255 + k * 0.001:.3f}",
                                                     "description": f"georeport 客户端 第{k + 1}条"})
        assert r.status_code in (200, 201), r.text
        ids.append(r.text.split("<service_request_id>")[1].split("</service_request_id>")[0])
    return code, ids


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_georeport_reads_services_definitions_and_requests(live_url, filed, fmt):
    code, ids = filed
    client = georeport.GeoReport(f"{live_url}{BASE}", output_format=fmt)
    services = client.get_service_list()
    services = services if isinstance(services, list) else [services]
    assert code in {s["service_code"] for s in services}
    # metadata is false for every service (no extra attributes), but a definition is still served
    assert {str(s["metadata"]).lower() for s in services} == {"false"}
    assert client.get_service_definition(code)["service_code"] == code
    listed = client.get_service_requests(service_request_id=",".join(ids))
    listed = listed if isinstance(listed, list) else [listed]
    assert sorted(str(x["service_request_id"]) for x in listed) == sorted(ids)
    one = client.get_service_request(ids[0])
    assert str(one["service_request_id"]) == ids[0]
    assert one["status"] == "open" and one["service_code"] == code
    assert float(one["lat"]) == pytest.approx(23.146) and "georeport 客户端" in one["description"]
    recent = client.get_service_requests(service_code=code, status="open")
    recent = recent if isinstance(recent, list) else [recent]
    assert set(ids) <= {str(x["service_request_id"]) for x in recent}


def test_georeport_raises_on_unknown_request(live_url, filed):
    client = georeport.GeoReport(f"{live_url}{BASE}")
    with pytest.raises(Exception) as err:
        client.get_service_request("999999999")
    assert "404" in str(err.value)
