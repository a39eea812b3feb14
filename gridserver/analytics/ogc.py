"""OGC API – Features (Part 1 Core, Part 2 CRS by reference, Part 3 CQL2 text filter) under ``/ogc/``.

Formats: JSON/GeoJSON (default, also for a missing or ``*/*`` Accept, as GDAL, QGIS and OWSLib
expect) and HTML, chosen by ``f=json|html`` or the Accept header (406 when neither fits).
Areas are public; other collections need a bearer token and follow the layer's role rules
(``analytics.layers``). Paging is ``limit``/``offset`` with absolute ``next``/``prev`` links.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.orm import Session

from gridserver.analytics import features, layers, ogc_html, params
from gridserver.analytics.params import CRS84, BadParameter
from gridserver.auth.deps import optional_user
from gridserver.auth.users import User
from gridserver.db.engine import get_session
from gridserver.errors import GridserverError, NotFound

router = APIRouter(prefix="/ogc", tags=["OGC API Features 要素服务"])


def _get(path: str, **kw):
    """GET and HEAD (the spec recommends HEAD on every resource). The route that serves both comes first
    (so a 405 names both in ``Allow``) and stays out of the OpenAPI document; a GET-only twin documents
    the operation, so every operation keeps one unique operationId."""
    def register(fn):
        router.api_route(path, methods=["GET", "HEAD"], **{**kw, "include_in_schema": False})(fn)
        return router.api_route(path, methods=["GET"], **kw)(fn)

    return register


GEOJSON, JSON, HTML = "application/geo+json", "application/json", "text/html"
OPENAPI_TYPE = "application/vnd.oai.openapi+json;version=3.0"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
]
ITEM_PARAMS = {"f", "limit", "offset", "after", "bbox", "bbox-crs", "crs", "datetime", "filter", "filter-lang", "filter-crs"}


class NotAcceptable(GridserverError):
    status, code = 406, "not_acceptable"


def _format(request: Request, *, features_doc: bool = False) -> str:
    """'json' or 'html' from ``f=`` or Accept; 406 when the client accepts neither."""
    f = request.query_params.get("f")
    if f is not None:
        f = f.lower()
        if f in ("json", "geojson", "application/json", "application/geo+json"):
            return "json"
        if f in ("html", "text/html"):
            return "html"
        raise BadParameter(f"f: unknown format {f!r}; use f=json or f=html")
    accept = request.headers.get("accept", "").lower()
    if not accept.strip():
        return "json"
    best, best_q = None, -1.0
    for part in accept.split(","):
        media, *opts = [p.strip() for p in part.split(";")]
        q = 1.0
        for o in opts:
            if o.startswith("q="):
                try:
                    q = float(o[2:])
                except ValueError:
                    q = 0.0
        kind = {"application/json": "json", "application/geo+json": "json", "*/*": "json",
                "application/*": "json", "text/html": "html", "text/*": "html",
                "application/vnd.oai.openapi+json": "json"}.get(media)
        if kind and q > best_q + (0.0001 if kind == "json" else 0):  # prefer JSON on ties
            best, best_q = kind, q
    if best is None or best_q <= 0:
        raise NotAcceptable(f"cannot produce {accept!r}: this API serves application/json, "
                            "application/geo+json and text/html")
    return best


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/ogc"


def _link(href: str, rel: str, type_: str, title: str | None = None) -> dict:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def _self_links(url: str, fmt: str, json_type: str = JSON) -> list[dict]:
    """self (own format) and alternate (the other) links for a resource URL without query."""
    sep = "&" if "?" in url else "?"
    j = _link(f"{url}{sep}f=json", "self" if fmt == "json" else "alternate", json_type, "JSON")
    h = _link(f"{url}{sep}f=html", "self" if fmt == "html" else "alternate", HTML, "HTML")
    return [j, h] if fmt == "json" else [h, j]


def _respond(kind: str, doc: dict, fmt: str, *, media: str = JSON, headers: dict | None = None):
    # CORS headers: analytics/cors.py, for every /ogc answer
    if fmt == "html":
        return HTMLResponse(ogc_html.render(kind, doc), headers=headers)
    return JSONResponse(doc, media_type=media, headers=headers)


@_get("/", summary="OGC API 入口 landing page")
@_get("", include_in_schema=False)
def landing(request: Request):
    fmt = _format(request)
    base = _base(request)
    doc = {
        "title": "gridserver 网格化管理 OGC API – Features",
        "description": "网格、社区、街道、区与事件等要素服务 grids, communities, streets, districts and incidents "
                       "as OGC API – Features (Part 1 Core, Part 2 CRS, Part 3 CQL2 text filters).",
        "links": _self_links(base + "/", fmt) + [
            _link(f"{base}/api", "service-desc", OPENAPI_TYPE, "API 定义 OpenAPI 3.0"),
            _link(str(request.base_url).rstrip("/") + "/docs", "service-doc", HTML, "API 文档 documentation"),
            _link(f"{base}/conformance", "conformance", JSON, "符合性 conformance classes"),
            _link(f"{base}/collections", "data", JSON, "数据集合 collections"),
        ],
    }
    return _respond("landing", doc, fmt)


@_get("/conformance", summary="符合性 conformance classes")
def conformance(request: Request):
    fmt = _format(request)
    doc = {"conformsTo": CONFORMANCE, "links": _self_links(_base(request) + "/conformance", fmt)}
    return _respond("conformance", doc, fmt)


@_get("/api", summary="OpenAPI 3.0 定义 the API definition", include_in_schema=False)
def api_definition(request: Request, session: Session = Depends(get_session, scope="function")):
    from gridserver.analytics.ogc_openapi import openapi_document

    doc = openapi_document(_base(request), layers.available_layers(session.connection()))
    return JSONResponse(doc, media_type=OPENAPI_TYPE)


def _collection_doc(conn, base: str, layer: layers.Layer, user: User | None, fmt: str) -> dict:
    url = f"{base}/collections/{layer.id}"
    return {
        "id": layer.id, "title": layer.title, "description": layer.description, "itemType": "feature",
        "extent": features.extent(conn, layer, user),
        "crs": list(params.CRS_LIST), "storageCrs": CRS84,
        "links": _self_links(url, fmt) + [
            _link(f"{url}/items", "items", GEOJSON, f"{layer.title} 要素 items (GeoJSON)"),
            _link(f"{url}/items?f=html", "items", HTML, f"{layer.title} 要素 items (HTML)"),
            _link(f"{url}/queryables", "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                  "application/schema+json", "可查询属性 queryables"),
            _link(f"{url}/schema", "http://www.opengis.net/def/rel/ogc/1.0/schema",
                  "application/schema+json", "要素结构 schema"),
        ],
    }


@_get("/collections", summary="数据集合 collections")
def collections(request: Request, user: User | None = Depends(optional_user),
                session: Session = Depends(get_session, scope="function")):
    """The collections the caller may read (areas for everyone; others with a token)."""
    fmt = _format(request)
    base = _base(request)
    conn = session.connection()
    cols = [_collection_doc(conn, base, lay, user, fmt) for lay in layers.available_layers(conn)
            if layers.may_read(user, lay)]
    doc = {"links": _self_links(f"{base}/collections", fmt), "collections": cols, "crs": list(params.CRS_LIST)}
    return _respond("collections", doc, fmt)


@_get("/collections/{collection_id}", summary="数据集合 one collection")
def collection(collection_id: str, request: Request, user: User | None = Depends(optional_user),
               session: Session = Depends(get_session, scope="function")):
    fmt = _format(request)
    conn = session.connection()
    layer = layers.get_layer(conn, collection_id, user)
    return _respond("collection", _collection_doc(conn, _base(request), layer, user, fmt), fmt)


def _geometry_schema(layer: layers.Layer) -> dict:
    return {"format": "geometry-point" if layer.point else "geometry-any"}


def _json_type(typ: str) -> dict:
    return {"type": "string", "format": "date-time"} if typ == "date-time" else {"type": typ}


def _schema_doc(request: Request, layer: layers.Layer, kind: str, props: dict, fmt: str):
    """A JSON Schema resource of a collection (``queryables`` or ``schema``), as JSON or HTML."""
    url = f"{_base(request)}/collections/{layer.id}/{kind}"
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": url, "type": "object",
           "title": layer.title, "properties": props, "additionalProperties": False,
           "links": _self_links(url, fmt, "application/schema+json")}
    if fmt == "html":
        return _respond(kind, doc, fmt)
    return JSONResponse(doc, media_type="application/schema+json")


@_get("/collections/{collection_id}/queryables", summary="可查询属性 queryables (JSON Schema)",
            responses={200: {"content": {"application/schema+json": {}}}})
def queryables(collection_id: str, request: Request, user: User | None = Depends(optional_user),
               session: Session = Depends(get_session, scope="function")):
    """The properties ``filter`` and ``name=value`` may use (Part 3)."""
    layer = layers.get_layer(session.connection(), collection_id, user)
    props = {name: {"type": typ, "title": name} for name, typ in layer.queryables.items()}
    props["geometry"] = _geometry_schema(layer)
    if layer.time_start:
        props["datetime"] = _json_type("date-time")
    return _schema_doc(request, layer, "queryables", props, _format(request))


@_get("/collections/{collection_id}/schema", summary="要素结构 the schema of the features (JSON Schema)",
            responses={200: {"content": {"application/schema+json": {}}}})
def feature_schema(collection_id: str, request: Request, user: User | None = Depends(optional_user),
                   session: Session = Depends(get_session, scope="function")):
    """Every property a feature of the collection carries, with its type and role (Part 5, Schemas)."""
    layer = layers.get_layer(session.connection(), collection_id, user)
    time_roles = [(sql, role) for sql, role in (
        (layer.time_start, "primary-interval-start" if layer.time_end else "primary-instant"),
        (layer.time_end, "primary-interval-end")) if sql]
    props = {}
    for name, expr in layer.props.items():
        typ = layer.queryables.get(name) or layer.prop_types.get(name, "string")
        props[name] = {"title": name, **_json_type(typ), "readOnly": True}
        # the time properties are formatted from the layer's time columns, hence "in"
        role = "id" if expr == layer.id_sql else next((r for sql, r in time_roles if sql in expr), None)
        if role:
            props[name]["x-ogc-role"] = role
    props["geometry"] = {**_geometry_schema(layer), "x-ogc-role": "primary-geometry"}
    return _schema_doc(request, layer, "schema", props, _format(request))


def parse_item_query(request: Request, layer: layers.Layer) -> features.FeatureQuery:
    """Validate the items query string into a FeatureQuery (400 naming the bad parameter)."""
    qp = request.query_params
    unknown = [k for k in qp.keys() if k not in ITEM_PARAMS and k not in layer.queryables]
    if unknown:
        allowed = ", ".join(sorted(ITEM_PARAMS | set(layer.queryables)))
        raise BadParameter(f"unknown query parameter(s) {', '.join(map(repr, unknown))} for collection "
                           f"{layer.id!r}; allowed: {allowed}")
    q = features.FeatureQuery(limit=params.parse_limit(qp.get("limit")), offset=params.parse_offset(qp.get("offset")),
                              crs=params.parse_crs(qp.get("crs"), "crs"))
    if qp.get("after"):
        if layer.id_type == "integer":
            try:
                int(qp["after"])
            except ValueError:
                raise BadParameter(f"after must be a feature id (integer) of {layer.id!r}, got {qp['after']!r}") from None
        q.after = qp["after"]
    if qp.get("bbox"):
        q.boxes = params.parse_bbox(qp["bbox"], params.parse_crs(qp.get("bbox-crs"), "bbox-crs"))
    elif qp.get("bbox-crs"):
        params.parse_crs(qp.get("bbox-crs"), "bbox-crs")
    q.time = params.parse_datetime(qp.get("datetime"))
    for name in layer.queryables:
        values = qp.getlist(name)
        if values:
            vals = [v for value in values for v in value.split(",") if v != ""]
            typ = layer.queryables[name]
            for v in vals:
                try:
                    int(v) if typ == "integer" else float(v) if typ == "number" else v
                except ValueError:
                    raise BadParameter(f"{name}: {v!r} is not a valid {typ}") from None
            q.props[name] = vals
    if qp.get("filter"):
        lang = qp.get("filter-lang", "cql2-text")
        if lang != "cql2-text":
            raise BadParameter(f"filter-lang: only cql2-text is supported, got {lang!r}")
        from gridserver.analytics.cql2 import compile_cql2

        filter_crs = params.parse_crs(qp.get("filter-crs"), "filter-crs")
        q.cql = compile_cql2(qp["filter"], layer, filter_crs)
    return q


def _page_url(request: Request, base_url: str, **changes) -> str:
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    items += [(k, str(v)) for k, v in changes.items() if v is not None]
    return f"{base_url}?{urlencode(items)}" if items else base_url


@_get("/collections/{collection_id}/items", summary="要素 features of a collection",
            responses={200: {"content": {"application/geo+json": {}}}})
def items(collection_id: str, request: Request, user: User | None = Depends(optional_user),
          session: Session = Depends(get_session, scope="function")):
    """A page of features: ``limit`` (default 10, max 10000), ``offset`` or ``after`` (keyset: ids greater
    than it; the ``next`` links use it), ``bbox`` + ``bbox-crs``,
    ``crs``, ``datetime``, property filters (``?status=reported``) and CQL2 text ``filter``."""
    fmt = _format(request)
    conn = session.connection()
    layer = layers.get_layer(conn, collection_id, user)
    q = parse_item_query(request, layer)
    matched = features.count_features(conn, layer, dataclasses.replace(q, after=None), user)
    feats = features.fetch_features(conn, layer, q, user)
    url = f"{_base(request)}/collections/{layer.id}/items"
    for f in feats:
        f["links"] = [_link(f"{url}/{f['id']}", "self", GEOJSON),
                      _link(f"{_base(request)}/collections/{layer.id}", "collection", JSON)]
    self_fmt = "json" if fmt == "json" else "html"
    links = [_link(_page_url(request, url, f=self_fmt), "self", GEOJSON if fmt == "json" else HTML),
             _link(_page_url(request, url, f="html" if fmt == "json" else "json"), "alternate",
                   HTML if fmt == "json" else GEOJSON),
             _link(f"{_base(request)}/collections/{layer.id}", "collection", JSON)]
    # next pages by keyset (after = the last id, fast at any depth); offset travels along for prev links
    if feats and q.offset + len(feats) < matched:
        links.append(_link(_page_url(request, url, offset=q.offset + len(feats), after=feats[-1]["id"], limit=q.limit,
                                     f=self_fmt), "next", GEOJSON if fmt == "json" else HTML, "下一页 next page"))
    if q.offset > 0:
        links.append(_link(_page_url(request, url, offset=max(0, q.offset - q.limit), after=None, limit=q.limit,
                                     f=self_fmt), "prev", GEOJSON if fmt == "json" else HTML, "上一页 previous page"))
    doc = {"type": "FeatureCollection", "features": feats, "links": links,
           "timeStamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "numberMatched": matched, "numberReturned": len(feats)}
    return _respond("items", doc, fmt, media=GEOJSON, headers={"Content-Crs": f"<{q.crs.uri}>"})


@_get("/collections/{collection_id}/items/{feature_id}", summary="要素 one feature",
            responses={200: {"content": {"application/geo+json": {}}}})
def item(collection_id: str, feature_id: str, request: Request, user: User | None = Depends(optional_user),
         session: Session = Depends(get_session, scope="function")):
    fmt = _format(request)
    conn = session.connection()
    layer = layers.get_layer(conn, collection_id, user)
    unknown = [k for k in request.query_params.keys() if k not in ("f", "crs")]
    if unknown:
        raise BadParameter(f"unknown query parameter(s) {', '.join(map(repr, unknown))}; allowed: f, crs")
    crs = params.parse_crs(request.query_params.get("crs"), "crs")
    feat = features.fetch_one(conn, layer, feature_id, crs, user)
    if feat is None:
        raise NotFound(f"集合 {layer.id} 中没有要素 {feature_id!r} no feature {feature_id!r} in collection {layer.id!r}")
    url = f"{_base(request)}/collections/{layer.id}/items/{feature_id}"
    feat["links"] = _self_links(url, fmt, GEOJSON) + [
        _link(f"{_base(request)}/collections/{layer.id}", "collection", JSON, layer.title)]
    return _respond("feature", feat, fmt, media=GEOJSON, headers={"Content-Crs": f"<{crs.uri}>"})
