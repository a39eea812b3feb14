"""A second real OGC API – Features client: OWSLib (``owslib.ogcapi.features``) reads /ogc the way its users
do (no Accept header, paths built by the client, one page per call, non-2xx raises)."""

from __future__ import annotations

import pytest

owslib_features = pytest.importorskip("owslib.ogcapi.features")


def test_owslib_lists_reads_and_filters_grids(live_url, small_city):
    api = owslib_features.Features(f"{live_url}/ogc")
    assert api.links and any(link["rel"] == "service-desc" for link in api.links)
    conf = api.conformance()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in conf
    ids = {c["id"] for c in api.collections()["collections"]}
    assert {"grids", "communities", "streets", "districts"} <= ids
    assert {"grids", "districts"} <= set(api.feature_collections())
    doc = api.api()  # needs the service-desc link typed application/vnd.oai.openapi+json;version=3.0
    assert doc["openapi"].startswith("3.0")
    assert {"code", "name", "parent_code", "area_m2"} <= set(api.collection_queryables("grids")["properties"])
    assert api.collection_schema("grids")["properties"]["code"]["x-ogc-role"] == "id"
    meta = api.collection("grids")
    assert meta["id"] == "grids" and meta["itemType"] == "feature"
    page = api.collection_items("grids", limit=2)
    assert page["type"] == "FeatureCollection" and page["numberReturned"] == len(page["features"]) <= 2
    # offset paging, as OWSLib passes it
    seen: list[str] = []
    while True:  # to the first empty page, whatever other tests added
        got = api.collection_items("grids", limit=7, offset=len(seen))["features"]
        if not got:
            break
        seen += [f["properties"]["code"] for f in got]
        assert len(seen) < 100_000
    ours = {c for c, a in small_city.items() if a["level"] == "grid"}
    assert len(seen) == len(set(seen)) and set(seen) >= ours
    # bbox as a list, comma-joined by OWSLib
    nw = api.collection_items("grids", bbox=[113.251, 23.143, 113.259, 23.149], limit=100)["features"]
    assert {f["properties"]["code"] for f in nw} & set(small_city) == {"440104001001001"}
    one = api.collection_item("grids", str(nw[0]["id"]))
    assert one["type"] == "Feature" and one["id"] == nw[0]["id"]


def test_owslib_raises_on_unknown_collection(live_url, small_city):
    api = owslib_features.Features(f"{live_url}/ogc")
    with pytest.raises(RuntimeError):
        api.collection("no-such-collection")
