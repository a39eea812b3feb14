"""OGC API – Features under /ogc against a live server: schemas, paging, parameters, CRS, scope rules."""

from __future__ import annotations

from datetime import datetime

import pytest
import shapely
import shapely.ops
from pyproj import Transformer
from shapely.geometry import box, shape
from sqlalchemy import text



CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG4326 = "http://www.opengis.net/def/crs/EPSG/0/4326"
EPSG4490 = "http://www.opengis.net/def/crs/EPSG/0/4490"
EPSG3857 = "http://www.opengis.net/def/crs/EPSG/0/3857"
IN_WINDOW = "2026-03-01T00:00:00Z/2026-05-01T00:00:00Z"


@pytest.fixture(scope="module")
def analyst(make_user):
    return make_user("analyst")


def _rel(doc, rel, type_=None):
    return [link for link in doc["links"] if link["rel"] == rel and (type_ is None or link.get("type") == type_)]


def _walk(http, url, headers=None, params=None):
    """Follow next links from url to the end; returns (features, pages)."""
    feats, pages = [], []
    r = http.get(url, headers=headers, params=params)
    while True:
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(page)
        feats += page["features"]
        nxt = _rel(page, "next")
        if not nxt:
            return feats, pages
        assert nxt[0]["href"].startswith("http://")
        r = http.get(nxt[0]["href"], headers=headers)


def test_landing_page_has_the_links_clients_need(http, ogc_schema):
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        r = http.get("/ogc/", headers=headers)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/json")
        doc = r.json()
        ogc_schema(doc, "landingPage.json")
    assert _rel(doc, "service-desc", "application/vnd.oai.openapi+json;version=3.0")
    assert _rel(doc, "service-doc", "text/html")
    assert _rel(doc, "conformance") and _rel(doc, "data")
    assert _rel(doc, "self") and _rel(doc, "alternate", "text/html")
    assert all(link["href"].startswith("http://") for link in doc["links"])
    api = http.get(_rel(doc, "service-desc")[0]["href"])
    assert api.status_code == 200 and api.json()["openapi"].startswith("3.0")
    limit = api.json()["components"]["parameters"]["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 10000, 10)
    assert "/collections/grids/items" in api.json()["paths"]
    from openapi_spec_validator import validate

    validate(api.json())  # a valid OpenAPI 3.0 document (the oas30 class)


def test_formats_by_accept_and_f(http):
    r = http.get("/ogc/", headers={"Accept": "text/html"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "<a href=" in r.text and "/ogc/collections" in r.text
    assert http.get("/ogc/?f=html").headers["content-type"].startswith("text/html")
    assert http.get("/ogc/?f=json", headers={"Accept": "text/html"}).headers["content-type"].startswith("application/json")
    h = http.head("/ogc/collections/grids/items")
    assert h.status_code == 200 and h.headers["content-type"].startswith("application/geo+json") and not h.content
    r = http.get("/ogc/", headers={"Accept": "application/xml"})
    assert r.status_code == 406 and r.json()["code"] == "not_acceptable"
    assert http.get("/ogc/?f=xml").status_code == 400


def test_conformance(http, ogc_schema):
    doc = http.get("/ogc/conformance").json()
    ogc_schema(doc, "confClasses.json")
    for cls in ("ogcapi-features-1/1.0/conf/core", "ogcapi-features-1/1.0/conf/geojson",
                "ogcapi-features-1/1.0/conf/html", "ogcapi-features-1/1.0/conf/oas30", "ogcapi-features-2/1.0/conf/crs"):
        assert f"http://www.opengis.net/spec/{cls}" in doc["conformsTo"]


def test_collections_are_role_aware(http, small_city, analyst, auth, ogc_schema):
    anon = http.get("/ogc/collections").json()
    ogc_schema(anon, "collections.json")
    assert {c["id"] for c in anon["collections"]} >= {"grids", "communities", "streets", "districts"}
    assert "incidents" not in {c["id"] for c in anon["collections"]}
    assert "people" not in {c["id"] for c in anon["collections"]}
    doc = http.get("/ogc/collections", headers=auth(analyst)).json()
    ogc_schema(doc, "collections.json")
    ids = {c["id"] for c in doc["collections"]}
    assert "incidents" in ids and not ids & {"people", "persons", "households", "residents"}
    for c in doc["collections"]:
        assert c["itemType"] == "feature"
        assert CRS84 in c["crs"] and EPSG4326 in c["crs"] and EPSG4490 in c["crs"]
        assert c["storageCrs"] in c["crs"]
        items = [link for link in c["links"] if link["rel"] == "items" and link["type"] == "application/geo+json"]
        assert len(items) == 1
        one = http.get(f"/ogc/collections/{c['id']}", headers=auth(analyst))
        assert one.status_code == 200
        ogc_schema(one.json(), "collection.json")
        assert one.json()["id"] == c["id"]
    grids = next(c for c in doc["collections"] if c["id"] == "grids")
    x0, y0, x1, y1 = grids["extent"]["spatial"]["bbox"][0]
    assert x0 <= 113.25 + 1e-9 and y0 <= 23.12 + 1e-9 and x1 >= 113.29 - 1e-9 and y1 >= 23.15 - 1e-9
    assert http.get("/ogc/collections/nope").status_code == 404
    r = http.get("/ogc/collections/incidents/items")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


def test_paging_through_every_grid_exactly_once(http, engine, small_city, ogc_schema):
    feats, pages = _walk(http, "/ogc/collections/grids/items", params={"limit": 3})
    with engine.connect() as conn:
        codes = {r[0] for r in conn.execute(text("SELECT code FROM admin_areas WHERE level='grid' AND valid_to IS NULL"))}
    ids = [f["id"] for f in feats]
    assert len(ids) == len(set(ids)) and set(ids) == codes
    assert len(pages) == -(-len(codes) // 3)
    for i, page in enumerate(pages):
        ogc_schema(page, "featureCollectionGeoJSON.json")
        assert page["numberMatched"] == len(codes)
        assert page["numberReturned"] == len(page["features"])
        datetime.fromisoformat(page["timeStamp"].replace("Z", "+00:00"))
        assert bool(_rel(page, "prev")) == (i > 0)
    r = http.get("/ogc/collections/grids/items?limit=3")
    assert r.headers["content-type"].startswith("application/geo+json")
    assert r.headers["content-crs"] == f"<{CRS84}>"


def test_paging_incidents_as_analyst(http, analytics_incidents, analyst, auth, ogc_schema):
    feats, pages = _walk(http, "/ogc/collections/incidents/items", headers=auth(analyst),
                         params={"limit": 70, "datetime": IN_WINDOW})
    ids = [f["id"] for f in feats]
    assert len(ids) == len(set(ids)) and set(ids) == set(analytics_incidents["id"])
    assert pages[0]["numberMatched"] == len(analytics_incidents)
    for f in feats:
        assert set(f["properties"]) >= {"category", "status", "grid_code", "created_at"}
        assert not set(f["properties"]) & {"description", "reporter", "reporter_id", "address", "address_text"}


def test_limit_rules(http, small_city):
    assert http.get("/ogc/collections/grids/items?limit=0").status_code == 400
    r = http.get("/ogc/collections/grids/items?limit=abc")
    assert r.status_code == 400 and "limit" in r.json()["detail"]
    r = http.get("/ogc/collections/grids/items?limit=50000")
    assert r.status_code == 200 and r.json()["numberReturned"] == r.json()["numberMatched"]
    assert http.get("/ogc/collections/grids/items").json()["numberReturned"] == 10
    r = http.get("/ogc/collections/grids/items?colour=red")
    assert r.status_code == 400 and "colour" in r.json()["detail"]


def test_bbox_and_bbox_crs(http, small_city):
    box_ = (113.255, 23.125, 113.262, 23.131)
    want = {c for c, a in small_city.items() if a["level"] == "grid" and a["geom"].intersects(box(*box_))}
    ours = {c for c, a in small_city.items() if a["level"] == "grid"}  # other tests may add grids elsewhere
    got = {f["id"] for f in http.get("/ogc/collections/grids/items", params={
        "bbox": ",".join(map(str, box_)), "limit": 100}).json()["features"]} & ours
    assert got == want and 0 < len(got) < 16
    latlon = f"{box_[1]},{box_[0]},{box_[3]},{box_[2]}"
    for crs in (EPSG4326, EPSG4490):
        got2 = {f["id"] for f in http.get("/ogc/collections/grids/items", params={
            "bbox": latlon, "bbox-crs": crs, "limit": 100}).json()["features"]} & ours
        assert got2 == want
    x0, y0 = Transformer.from_crs(4326, 3857, always_xy=True).transform(box_[0], box_[1])
    x1, y1 = Transformer.from_crs(4326, 3857, always_xy=True).transform(box_[2], box_[3])
    got3 = {f["id"] for f in http.get("/ogc/collections/grids/items", params={
        "bbox": f"{x0},{y0},{x1},{y1}", "bbox-crs": EPSG3857, "limit": 100}).json()["features"]} & ours
    assert got3 == want
    # a box touching only an edge still matches (intersects)
    xm, ym = small_city["440104001"]["geom"].bounds[2], small_city["440104001001"]["geom"].bounds[1]
    edge = {f["id"] for f in http.get("/ogc/collections/grids/items", params={
        "bbox": f"{xm!r},{ym!r},{xm!r},{ym!r}", "limit": 100}).json()["features"]} & ours
    assert len(edge) == 4
    for bad in ("1,2,3", "113,23,114,x", "113,160,114,161", "114,23,113,22"):
        r = http.get("/ogc/collections/grids/items", params={"bbox": bad})
        assert r.status_code == 400, bad
        assert "bbox" in r.json()["detail"]
    r = http.get("/ogc/collections/grids/items", params={"bbox": "1,2,3,4", "bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/2000"})
    assert r.status_code == 400 and "bbox-crs" in r.json()["detail"]


def test_output_crs_axis_order(http, small_city):
    code = "440104001001001"
    base = http.get(f"/ogc/collections/grids/items/{code}")
    assert base.headers["content-crs"] == f"<{CRS84}>"
    g84 = shape(base.json()["geometry"])
    assert g84.equals_exact(small_city[code]["geom"], 1e-7) or g84.normalize().equals_exact(
        shapely.MultiPolygon([small_city[code]["geom"]]).normalize(), 1e-7)
    for crs in (EPSG4326, EPSG4490):
        r = http.get(f"/ogc/collections/grids/items/{code}", params={"crs": crs})
        assert r.headers["content-crs"] == f"<{crs}>"
        flipped = shapely.ops.transform(lambda x, y: (y, x), shape(r.json()["geometry"]))
        assert flipped.equals_exact(g84, 1e-7)
        page = http.get("/ogc/collections/grids/items", params={"crs": crs, "limit": 1, "code": code})
        assert page.headers["content-crs"] == f"<{crs}>"
        assert shape(page.json()["features"][0]["geometry"]).equals_exact(shape(r.json()["geometry"]), 1e-9)
    r = http.get(f"/ogc/collections/grids/items/{code}", params={"crs": EPSG3857})
    t = Transformer.from_crs(4326, 3857, always_xy=True)
    want = shapely.ops.transform(lambda x, y: t.transform(x, y), g84)
    assert shape(r.json()["geometry"]).equals_exact(want, 0.05)
    assert http.get(f"/ogc/collections/grids/items/{code}", params={"crs": "EPSG:9999"}).status_code == 400
    assert http.get("/ogc/collections/grids/items/999").status_code == 404


def test_feature_links(http, small_city, ogc_schema):
    doc = http.get("/ogc/collections/grids/items/440104003002004").json()
    ogc_schema(doc, "featureGeoJSON.json")
    assert doc["id"] == "440104003002004"
    assert _rel(doc, "self") and _rel(doc, "alternate", "text/html") and _rel(doc, "collection", "application/json")
    assert doc["properties"]["parent_code"] == "440104003002"


def test_datetime_instants_intervals_and_open_ends(http, analytics_incidents, analyst, auth):
    df = analytics_incidents
    h = auth(analyst)

    def ids(dt, **extra):
        feats, _ = _walk(http, "/ogc/collections/incidents/items", headers=h,
                         params={"datetime": dt, "limit": 1000, **extra})
        return {f["id"] for f in feats}

    ts = df["created_at"]
    a, b = datetime.fromisoformat("2026-03-10T00:00:00+00:00"), datetime.fromisoformat("2026-03-20T00:00:00+00:00")
    assert ids("2026-03-10T00:00:00Z/2026-03-20T00:00:00Z") == set(df[(ts >= a) & (ts <= b)]["id"])
    assert ids("../2026-03-20T00:00:00Z") >= set(df[ts <= b]["id"])
    assert not ids("../2026-03-20T00:00:00Z") & set(df[ts > b]["id"])
    for dt in ("2026-04-20T00:00:00Z/..", "2026-04-20T00:00:00Z/"):
        got = ids(dt)
        c = datetime.fromisoformat("2026-04-20T00:00:00+00:00")
        assert got >= set(df[ts >= c]["id"]) and not got & set(df[ts < c]["id"])
    one = df.iloc[5]
    instant = one["created_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert int(one["id"]) in ids(instant)
    for bad in ("yesterday", "2026-13-01T00:00:00Z", "2026-04-01T00:00:00Z/2026-03-01T00:00:00Z", "../.."):
        r = http.get("/ogc/collections/incidents/items", headers=h, params={"datetime": bad})
        assert r.status_code == 400, bad
        assert "datetime" in r.json()["detail"]
    # areas: valid_from..valid_to; every current grid is valid now
    current = http.get("/ogc/collections/grids/items").json()["numberMatched"]
    assert current >= 16
    assert http.get("/ogc/collections/grids/items", params={"datetime": "2100-01-01T00:00:00Z", "limit": 100}
                    ).json()["numberMatched"] == current
    assert http.get("/ogc/collections/grids/items", params={"datetime": "../2000-01-01T00:00:00Z"}
                    ).json()["numberMatched"] == 0


def test_property_filters_and_cql2(http, analytics_incidents, analyst, auth, small_city):
    df = analytics_incidents
    h = auth(analyst)
    cat = df["category"].iloc[0]
    want = df[(df["status"] == "closed") & (df["category"] == cat)]
    r = http.get("/ogc/collections/incidents/items", headers=h,
                 params={"status": "closed", "category": cat, "datetime": IN_WINDOW, "limit": 1000})
    assert r.status_code == 200
    assert {f["id"] for f in r.json()["features"]} == set(want["id"])
    cats = sorted(df["category"].unique())[:2]
    flt = (f"status = 'closed' AND category IN ('{cats[0]}', '{cats[1]}') AND "
           "created_at >= TIMESTAMP('2026-03-01T00:00:00Z') AND created_at < TIMESTAMP('2026-05-01T00:00:00Z')")
    r = http.get("/ogc/collections/incidents/items", headers=h, params={"filter": flt, "limit": 1000})
    assert r.status_code == 200, r.text
    want = df[(df["status"] == "closed") & df["category"].isin(cats)]
    assert {f["id"] for f in r.json()["features"]} == set(want["id"])
    bb = (113.25, 23.12, 113.27, 23.135)
    flt = f"S_INTERSECTS(geometry, BBOX({bb[0]},{bb[1]},{bb[2]},{bb[3]})) AND NOT status = 'closed'"
    r = http.get("/ogc/collections/incidents/items", headers=h,
                 params={"filter": flt, "datetime": IN_WINDOW, "limit": 1000})
    assert r.status_code == 200, r.text
    inside = df[(df["lon"] >= bb[0]) & (df["lon"] <= bb[2]) & (df["lat"] >= bb[1]) & (df["lat"] <= bb[3])
                & (df["status"] != "closed")]
    assert {f["id"] for f in r.json()["features"]} == set(inside["id"])
    r = http.get("/ogc/collections/grids/items", params={
        "filter": "S_INTERSECTS(geometry, POINT(113.255 23.145)) OR code LIKE '4401040030020%'", "limit": 100})
    assert {f["id"] for f in r.json()["features"]} & set(small_city) == {
        "440104001001001", "440104003002001", "440104003002002", "440104003002003", "440104003002004"}
    for bad in ("status = ", "colour = 'red'", "status = 'a' AND (", "S_INTERSECTS(geometry, POINT 1 2)"):
        r = http.get("/ogc/collections/incidents/items", headers=h, params={"filter": bad})
        assert r.status_code == 400, bad
        assert "filter" in r.json()["detail"]


def test_staff_see_only_their_scope(http, analytics_incidents, make_user, auth):
    df = analytics_incidents
    street = make_user("street_operator", "440104001")
    feats, _ = _walk(http, "/ogc/collections/incidents/items", headers=auth(street),
                     params={"limit": 1000, "datetime": IN_WINDOW})
    got = {f["id"] for f in feats}
    assert got == set(df[df["street_code"] == "440104001"]["id"]) and got
    outside = int(df[df["street_code"] == "440104003"]["id"].iloc[0])
    assert http.get(f"/ogc/collections/incidents/items/{outside}", headers=auth(street)).status_code == 404
    citizen = make_user("citizen")
    r = http.get("/ogc/collections/incidents/items", headers=auth(citizen), params={"datetime": IN_WINDOW})
    assert r.status_code == 200 and r.json()["numberMatched"] == 0


def test_html_items_carry_every_link(http, small_city):
    r = http.get("/ogc/collections/grids/items?f=html&limit=5")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'rel="next"' in r.text and "440104001001001" in r.text
    j = http.get("/ogc/collections/grids/items?limit=5").json()
    nxt = _rel(j, "next")[0]["href"]
    assert "offset=5" in nxt and f"after={j['features'][-1]['id']}" in nxt
    by_keyset = [f["id"] for f in http.get(nxt).json()["features"]]
    by_offset = [f["id"] for f in http.get("/ogc/collections/grids/items?limit=5&offset=5").json()["features"]]
    assert by_keyset == by_offset and not set(by_keyset) & {f["id"] for f in j["features"]}
    assert http.get("/ogc/collections/incidents/items?after=abc").status_code in (400, 401)


def test_schema_describes_every_property_features_carry(http, analytics_incidents, small_city, analyst, auth):
    """/collections/{id}/schema (Part 5): each property a feature carries, typed as it is served, with roles."""
    import jsonschema

    doc = http.get("/ogc/collections", headers=auth(analyst)).json()
    checked = 0
    for c in doc["collections"]:
        link = _rel(c, "http://www.opengis.net/def/rel/ogc/1.0/schema", "application/schema+json")
        assert len(link) == 1
        r = http.get(link[0]["href"], headers=auth(analyst))
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/schema+json")
        sch = r.json()
        jsonschema.Draft202012Validator.check_schema(sch)
        props = {k: v for k, v in sch["properties"].items() if k != "geometry"}
        assert sch["properties"]["geometry"]["x-ogc-role"] == "primary-geometry"
        page = http.get(f"/ogc/collections/{c['id']}/items", headers=auth(analyst), params={"limit": 50}).json()
        check = jsonschema.Draft202012Validator(
            {"type": "object", "properties": {k: {kk: vv for kk, vv in v.items() if kk != "x-ogc-role"}
                                              for k, v in props.items()},
             "required": list(props), "additionalProperties": False},
            format_checker=jsonschema.FormatChecker())
        for f in page["features"]:
            nulls = {k for k, v in f["properties"].items() if v is None}
            errors = [e.message for e in check.iter_errors({k: v for k, v in f["properties"].items()
                                                            if k not in nulls})
                      if not (e.validator == "required" and any(repr(n) in e.message for n in nulls))]
            assert not errors, (c["id"], errors)
            checked += 1
    assert checked >= 20
    grids = http.get("/ogc/collections/grids/schema").json()["properties"]
    assert grids["code"]["x-ogc-role"] == "id" and grids["area_m2"]["type"] == "number"
    assert grids["valid_from"] == {"title": "valid_from", "type": "string", "format": "date-time",
                                   "readOnly": True, "x-ogc-role": "primary-interval-start"}
    inc = http.get("/ogc/collections/incidents/schema", headers=auth(analyst)).json()["properties"]
    assert inc["created_at"]["x-ogc-role"] == "primary-instant"
    assert http.get("/ogc/collections/incidents/schema").status_code == 401
    assert http.get("/ogc/collections/nope/schema").status_code == 404
    html = http.get("/ogc/collections/grids/schema?f=html")
    assert html.status_code == 200 and "valid_from" in html.text
