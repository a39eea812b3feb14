"""Open311 GeoReport v2 as an independent client meets it (../shared/docs/specs.md §1): raw and
declared-charset form bodies, strict XML, ids that cannot exist, extension-less paths, HEAD, the spec's
error list on every failure (also unknown paths and database faults), lenient W3C datetimes, and the
event loop kept free while a request waits on the database."""

from __future__ import annotations

import re
import threading
import uuid
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import text

BASE = "/open311/v2"
POINT = {"lat": "23.146", "long": "113.255"}


@pytest.fixture(scope="module")
def api_key(engine, make_user, small_city):
    from gridserver.incidents.open311 import issue_key

    who = make_user("citizen")
    with engine.begin() as conn:
        return issue_key(conn, f"conf-{who['username']}", who["username"])


def _xml(r: httpx.Response) -> ET.Element:
    assert r.headers["content-type"] == "text/xml; charset=utf-8", r.headers["content-type"]
    assert r.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    return ET.fromstring(r.content)  # expat: not well-formed → ParseError


def _json(r: httpx.Response):
    assert r.headers["content-type"] == "application/json; charset=utf-8", r.headers["content-type"]
    return r.json()


def _spec_error(r: httpx.Response, status: int, fragment: str = "") -> str:
    """The spec's error list, in the format the path asked for; returns the description."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    if r.headers["content-type"].startswith("text/xml"):
        root = _xml(r)
        assert root.tag == "errors" and root.find("error/code").text == str(status)
        desc = root.find("error/description").text
    else:
        body = _json(r)
        assert isinstance(body, list) and body[0]["code"] == status, body
        desc = body[0]["description"]
    assert fragment in desc, desc
    return desc


def _rows(engine, description: str) -> list:
    with engine.connect() as c:
        return c.execute(text("SELECT id, description, address_text FROM incidents WHERE description = :d"),
                         {"d": description}).all()


def _post_raw(http, fmt: str, body: bytes, ctype: str = "application/x-www-form-urlencoded") -> httpx.Response:
    return http.post(f"{BASE}/requests.{fmt}", content=body, headers={"Content-Type": ctype})


# --- form bodies --------------------------------------------------------------------------------------
def test_raw_utf8_form_body_is_stored_as_sent(http, engine, api_key):
    """Many clients put UTF-8 text into a form body without percent-encoding it: it must not turn into
    mojibake (Starlette's form parser reads such bytes as Latin-1)."""
    desc = f"路灯不亮 很黑 {uuid.uuid4().hex[:8]}"
    body = (f"api_key={api_key}&service_code=public_facility_01&lat=23.146&long=113.255"
            f"&description={desc}&address_string=越秀区北京路1号").encode("utf-8")
    r = _post_raw(http, "json", body)
    assert r.status_code == 200, r.text
    rid = _json(r)[0]["service_request_id"]
    got = _json(http.get(f"{BASE}/requests/{rid}.json"))[0]
    assert got["description"] == desc and got["address"] == "越秀区北京路1号"
    assert len(_rows(engine, desc)) == 1


def test_declared_charset_is_honoured_and_undecodable_forms_are_refused(http, engine, api_key):
    desc = f"井盖缺失 {uuid.uuid4().hex[:8]}"
    form = {"api_key": api_key, "service_code": "public_facility_01", **POINT, "description": desc}
    r = _post_raw(http, "xml", urlencode(form, encoding="gbk").encode(),
                  "application/x-www-form-urlencoded; charset=GBK")
    assert r.status_code == 200, r.text
    rid = _xml(r).find("request/service_request_id").text
    assert _json(http.get(f"{BASE}/requests/{rid}.json"))[0]["description"] == desc
    # GBK bytes sent as UTF-8 (no charset): refused with the reason, nothing stored
    bad = f"{desc} 错码"
    r = _post_raw(http, "json", urlencode({**form, "description": bad}, encoding="gbk").encode())
    _spec_error(r, 400, "UTF-8")
    r = _post_raw(http, "xml", urlencode({**form, "description": bad}).encode(),
                  "application/x-www-form-urlencoded; charset=no-such-charset")
    _spec_error(r, 400, "no-such-charset")
    assert _rows(engine, bad) == []


def test_a_body_that_is_not_a_form_is_a_400_naming_the_content_type(http, api_key):
    r = http.post(f"{BASE}/requests.json", params={"api_key": api_key},
                  json={"service_code": "public_facility_01", **POINT})
    _spec_error(r, 400, "application/json")


def test_only_listed_service_codes_are_accepted(http, engine, api_key):
    """A category code is not in services.json: a request filed with it would read back with a
    service_code no client can resolve."""
    listed = {s["service_code"] for s in _json(http.get(f"{BASE}/services.json"))}
    assert "city_appearance" not in listed and "city_appearance_01" in listed
    desc = f"类别码 {uuid.uuid4().hex[:8]}"
    r = http.post(f"{BASE}/requests.json", data={"api_key": api_key, "service_code": "city_appearance", **POINT,
                                                 "description": desc})
    _spec_error(r, 404, "city_appearance")
    assert _rows(engine, desc) == []
    # surrounding blanks are not part of a value; a blank service_code is a missing one
    r = http.post(f"{BASE}/requests.json", data={"api_key": api_key, "service_code": " city_appearance_01 ",
                                                 **POINT, "description": desc})
    assert r.status_code == 200, r.text
    r = http.post(f"{BASE}/requests.json", data={"api_key": api_key, "service_code": "  ", **POINT})
    _spec_error(r, 400, "service_code is required")


def test_media_url_must_be_a_web_link(http, api_key):
    r = http.post(f"{BASE}/requests.json", data={"api_key": api_key, "service_code": "city_appearance_01", **POINT,
                                                 "media_url": "javascript:alert(1)"})
    _spec_error(r, 400, "media_url")


# --- output -----------------------------------------------------------------------------------------
def test_service_descriptions_speak_plainly(http):
    """Clients show ``description`` to the public: the taxonomy's '1wd'/'4h' notation is spelt out."""
    services = {s["service_code"]: s for s in _json(http.get(f"{BASE}/services.json"))}
    assert services["city_appearance_01"]["description"].endswith("时限 1 个工作日）")  # 1wd in the taxonomy
    assert services["city_appearance_02"]["description"].endswith("时限 4 小时）")  # 4h
    assert not any(re.search(r"\d(wd|h)\b", s["description"]) for s in services.values())


def test_xml_stays_well_formed_with_control_characters_and_keeps_line_breaks(http, api_key):
    desc = f"bell\x07 vt\x0b ff\x0c nul-free\r\n第二行 {uuid.uuid4().hex[:6]}"
    r = http.post(f"{BASE}/requests.xml", data={"api_key": api_key, "service_code": "city_appearance_01", **POINT,
                                                "description": desc})
    rid = _xml(r).find("request/service_request_id").text
    x = _xml(http.get(f"{BASE}/requests/{rid}.xml"))
    assert x.find("request/description").text == desc.replace("\x07", "").replace("\x0b", "").replace("\x0c", "")
    assert _json(http.get(f"{BASE}/requests/{rid}.json"))[0]["description"] == desc  # JSON can carry them
    listed = _xml(http.get(f"{BASE}/requests.xml", params={"service_request_id": rid}))
    assert len(listed.findall("request")) == 1


def test_an_unplaced_address_report_has_no_invented_point(http, api_key):
    """An address that cannot be geocoded waits for manual dispatch at a stand-in point: lat/long must
    say "unknown", not publish the stand-in as the report's location."""
    r = http.post(f"{BASE}/requests.json", data={"api_key": api_key, "service_code": "city_appearance_01",
                                                 "address_string": f"不存在路{uuid.uuid4().hex[:6]}号"})
    assert r.status_code == 200, r.text
    rid = _json(r)[0]["service_request_id"]
    got = _json(http.get(f"{BASE}/requests/{rid}.json"))[0]
    assert got["lat"] is None and got["long"] is None and got["address"].startswith("不存在路")
    x = _xml(http.get(f"{BASE}/requests/{rid}.xml")).find("request")
    assert not (x.find("lat").text or "") and not (x.find("long").text or "")
    placed = http.post(f"{BASE}/requests.json", data={"api_key": api_key, "service_code": "city_appearance_01",
                                                      **POINT}).json()[0]["service_request_id"]
    got = _json(http.get(f"{BASE}/requests/{placed}.json"))[0]
    assert got["lat"] == pytest.approx(23.146) and got["long"] == pytest.approx(113.255)


# --- ids, filters, datetimes ---------------------------------------------------------------------------
@pytest.mark.parametrize("rid", ["²", "١٢", "99999999999999999999", "abc"])
def test_request_ids_that_cannot_exist_are_404(http, rid):
    for fmt in ("json", "xml"):
        _spec_error(http.get(f"{BASE}/requests/{rid}.{fmt}"), 404, "no service request")


def test_service_request_id_lists(http, api_key):
    rid = http.post(f"{BASE}/requests.json", data={"api_key": api_key, "service_code": "city_appearance_01",
                                                   **POINT}).json()[0]["service_request_id"]
    for ids in (f"{rid},", f" {rid} , ,", f"{rid},99999999999999999999"):
        got = _json(http.get(f"{BASE}/requests.json", params={"service_request_id": ids}))
        assert [x["service_request_id"] for x in got] == [rid], ids
    _spec_error(http.get(f"{BASE}/requests.json", params={"service_request_id": f"{rid},²"}), 400, "²")


def test_w3c_datetimes_as_clients_send_them(http, api_key):
    r = http.post(f"{BASE}/requests.json", data={"api_key": api_key, "service_code": "city_appearance_04", **POINT})
    rid = r.json()[0]["service_request_id"]
    got = _json(http.get(f"{BASE}/requests/{rid}.json"))[0]
    day = got["requested_datetime"][:10]  # the +08:00 calendar day it was filed on

    def ids(**params):
        return [x["service_request_id"] for x in _json(http.get(f"{BASE}/requests.json", params={
            "service_code": "city_appearance_04", **params}))]

    # '+08:00' written unencoded in a query string arrives as ' 08:00'
    url = f"{BASE}/requests.json?service_code=city_appearance_04&start_date={day}T00:00:00+08:00"
    assert rid in [x["service_request_id"] for x in _json(http.get(url))]
    # a W3C date alone: that whole local (+08:00) day
    assert rid in ids(start_date=day, end_date=day)
    assert rid not in ids(end_date="2020-01-01")
    # no timezone on a datetime: still refused (the spec requires one)
    _spec_error(http.get(f"{BASE}/requests.json", params={"start_date": f"{day}T00:00:00"}), 400, "timezone")
    assert rid in ids(status="Open, closed")


def test_list_filters_may_also_be_repeated_parameters(http, api_key):
    """"can be declared multiple times, comma delimited": service_code=a&service_code=b as well as a,b."""
    rids = {}
    for code in ("city_appearance_05", "city_appearance_06"):
        r = http.post(f"{BASE}/requests.json", data={"api_key": api_key, "service_code": code, **POINT})
        rids[code] = r.json()[0]["service_request_id"]
    for query in ("service_code=city_appearance_05&service_code=city_appearance_06",
                  "service_code=city_appearance_05,city_appearance_06"):
        got = {x["service_request_id"] for x in _json(http.get(f"{BASE}/requests.json?{query}&status=open&status=closed"))}
        assert set(rids.values()) <= got, query
    got = _json(http.get(f"{BASE}/requests.json?service_request_id={rids['city_appearance_05']}"
                         f"&service_request_id={rids['city_appearance_06']}"))
    assert {x["service_request_id"] for x in got} == set(rids.values())


def test_jurisdiction_id_is_checked_on_every_endpoint(http, api_key):
    out = http.post(f"{BASE}/requests.json", data={"api_key": api_key, "service_code": "city_appearance_01", **POINT})
    token = out.json()[0]["service_notice"].split("tracking code ")[1].split("；")[0]
    ok = _json(http.get(f"{BASE}/tokens/{token}.json", params={"jurisdiction_id": "440104"}))
    assert ok[0]["service_request_id"] == out.json()[0]["service_request_id"] and ok[0]["token"] == token
    _spec_error(http.get(f"{BASE}/tokens/{token}.xml", params={"jurisdiction_id": "999999"}), 404, "jurisdiction")


# --- paths and methods --------------------------------------------------------------------------------
def test_extension_less_paths_answer_xml_unless_json_is_asked_for(http, api_key):
    x = _xml(http.get(f"{BASE}/discovery"))
    assert x.tag == "discovery"
    assert _json(http.get(f"{BASE}/discovery", headers={"Accept": "application/json"}))["endpoints"]
    assert _xml(http.get(f"{BASE}/services")).tag == "services"
    assert _xml(http.get(f"{BASE}/services/city_appearance_01")).tag == "service_definition"
    r = http.post(f"{BASE}/requests", data={"api_key": api_key, "service_code": "city_appearance_01", **POINT})
    rid = _xml(r).find("request/service_request_id").text
    assert _xml(http.get(f"{BASE}/requests/{rid}")).find("request/service_request_id").text == rid
    got = _json(http.get(f"{BASE}/requests", params={"service_request_id": rid}, headers={"Accept": "application/json"}))
    assert got[0]["service_request_id"] == rid
    _spec_error(http.get(f"{BASE}/tokens/NOPE"), 404, "NOPE")


def test_head_answers_like_get_without_a_body(http):
    for path in ("/discovery.xml", "/services.json", "/requests.json", "/services/city_appearance_01.xml"):
        get, head = http.get(BASE + path), http.head(BASE + path)
        assert head.status_code == get.status_code == 200, path
        assert head.headers["content-type"] == get.headers["content-type"] and head.content == b""


def test_unknown_paths_get_the_spec_error_list(http):
    _spec_error(http.get(f"{BASE}/nothing_here.json"), 404, "nothing_here")
    _spec_error(http.get(f"{BASE}/nothing/here.xml"), 404, "nothing/here")
    _spec_error(http.get(f"{BASE}/services.html"), 404, "html")
    r = http.post(f"{BASE}/requests/1.json")
    _spec_error(r, 405, "GET")
    assert set(r.headers["Allow"].split(", ")) == {"GET", "HEAD"}
    r = http.put(f"{BASE}/requests.xml")
    _spec_error(r, 405, "PUT")
    assert set(r.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}


# --- concurrency and faults -----------------------------------------------------------------------------
def _wait_for_lock_waiter(engine, table: str) -> None:
    with engine.connect() as c:
        for _ in range(600):
            if c.execute(text("SELECT count(*) FROM pg_locks l JOIN pg_class t ON t.oid = l.relation "
                              "WHERE t.relname = :t AND NOT l.granted"), {"t": table}).scalar():
                return
            c.execute(text("SELECT pg_sleep(0.05)"))
    raise AssertionError("the request never reached the locked table")


def test_a_request_waiting_on_the_database_does_not_stall_the_server(live_url, engine):
    """Endpoint bodies run in the thread pool: while one waits for a lock, others are answered."""
    results = {}
    with engine.connect() as locker:
        tx = locker.begin()
        locker.execute(text("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE"))
        waiting = threading.Thread(target=lambda: results.setdefault(
            "slow", httpx.get(f"{live_url}{BASE}/requests.json", timeout=120)))
        waiting.start()
        try:
            _wait_for_lock_waiter(engine, "incidents")
            meanwhile = httpx.get(f"{live_url}{BASE}/discovery.json", timeout=20)
            assert meanwhile.status_code == 200 and "slow" not in results
        finally:
            tx.rollback()
        waiting.join(timeout=120)
    assert results["slow"].status_code == 200


def test_database_faults_answer_503_in_the_spec_shape_with_retry_after(db_url, engine, tmp_path):
    from trust.private_pg import AppServer

    server = AppServer(db_url, tmp_path, GRIDSERVER_STATEMENT_TIMEOUT_MS=1000, GRIDSERVER_RETRY_AFTER=7)
    try:
        with engine.connect() as locker:
            tx = locker.begin()
            locker.execute(text("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE"))
            try:
                for fmt in ("xml", "json"):
                    r = httpx.get(f"{server.base}{BASE}/requests.{fmt}", timeout=60)
                    _spec_error(r, 503, "")
                    assert r.headers["Retry-After"] == "7"
            finally:
                tx.rollback()
        assert httpx.get(f"{server.base}{BASE}/requests.json", timeout=60).status_code == 200
    finally:
        server.stop()
