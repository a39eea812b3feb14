"""A web map on another origin reads the OGC API in a real browser: Chromium sends the CORS preflight for a
bearer token, reads features and error answers under /ogc, and is refused the rest of the API."""

from __future__ import annotations

import json
from urllib.parse import urlparse

_FETCH = """async ([url, token]) => {
  try {
    const r = await fetch(url, {headers: token ? {Authorization: 'Bearer ' + token} : {}});
    return {status: r.status, body: await r.text(), crs: r.headers.get('Content-Crs')};
  } catch (e) { return {error: String(e)}; }
}"""


def test_a_page_on_another_origin_reads_ogc_with_a_token(chromium, live_url, small_city, make_user):
    analyst = make_user("analyst")
    port = urlparse(live_url).port
    page = chromium.new_page()
    try:
        page.goto(f"http://localhost:{port}/healthz")  # the web map's origin: localhost, not 127.0.0.1
        call = lambda path, token=None: page.evaluate(_FETCH, [f"{live_url}{path}", token])  # noqa: E731

        got = call("/ogc/collections/incidents/items?limit=1", analyst["token"])  # needs a preflight
        assert got.get("status") == 200, got
        assert json.loads(got["body"])["type"] == "FeatureCollection"
        assert got["crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"  # exposed to the page

        denied = call("/ogc/collections/incidents/items?limit=1")  # no token: the 401 is readable
        assert denied.get("status") == 401 and json.loads(denied["body"])["code"] == "unauthorized"
        bad = call("/ogc/collections/grids/items?limit=x")
        assert bad.get("status") == 400 and "limit" in json.loads(bad["body"])["detail"]

        other = call("/api/v1/incidents?limit=1", analyst["token"])  # the rest of the API stays same-origin
        assert "error" in other and "Failed to fetch" in other["error"], other
    finally:
        page.close()
