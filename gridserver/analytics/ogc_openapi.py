"""The OpenAPI 3.0 definition of ``/ogc`` (oas30 conformance; FastAPI's own document is 3.1).

Every collection gets concrete ``/collections/{id}/items`` paths so clients (GDAL, QGIS) read the
``limit`` default/maximum and the property filters of that collection.
"""

from __future__ import annotations

from gridserver.analytics import params

_ERR = {"description": "错误 error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/exception"}}}}


def _responses(ok: str, media=("application/json", "text/html")) -> dict:
    return {"200": {"description": ok, "content": {m: {} for m in media}},
            "400": _ERR, "401": _ERR, "404": _ERR, "406": _ERR, "500": _ERR}


def openapi_document(base: str, layers) -> dict:
    p = params
    comp_params = {
        "f": {"name": "f", "in": "query", "required": False, "description": "输出格式 output format",
              "schema": {"type": "string", "enum": ["json", "html"]}},
        "limit": {"name": "limit", "in": "query", "required": False, "style": "form", "explode": False,
                  "description": "每页要素数 page size (above the maximum it is clamped)",
                  "schema": {"type": "integer", "minimum": 1, "maximum": p.MAX_LIMIT, "default": p.DEFAULT_LIMIT}},
        "offset": {"name": "offset", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0, "default": 0}},
        "after": {"name": "after", "in": "query", "required": False,
                  "description": "keyset paging: features with an id greater than this (used by next links)",
                  "schema": {"type": "string"}},
        "bbox": {"name": "bbox", "in": "query", "required": False, "style": "form", "explode": False,
                 "schema": {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}}},
        "bbox-crs": {"name": "bbox-crs", "in": "query", "required": False,
                     "schema": {"type": "string", "format": "uri", "enum": list(p.CRS_LIST)}},
        "crs": {"name": "crs", "in": "query", "required": False,
                "schema": {"type": "string", "format": "uri", "enum": list(p.CRS_LIST)}},
        "datetime": {"name": "datetime", "in": "query", "required": False, "schema": {"type": "string"}},
        "filter": {"name": "filter", "in": "query", "required": False, "description": "CQL2 text", "schema": {"type": "string"}},
        "filter-lang": {"name": "filter-lang", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["cql2-text"], "default": "cql2-text"}},
        "filter-crs": {"name": "filter-crs", "in": "query", "required": False,
                       "schema": {"type": "string", "format": "uri", "enum": list(p.CRS_LIST)}},
    }
    ref = lambda n: {"$ref": f"#/components/parameters/{n}"}  # noqa: E731
    paths = {
        "/": {"get": {"summary": "landing page", "operationId": "getLandingPage", "parameters": [ref("f")],
                      "responses": _responses("landing page")}},
        "/conformance": {"get": {"summary": "conformance classes", "operationId": "getConformance",
                                 "parameters": [ref("f")], "responses": _responses("conformance")}},
        "/collections": {"get": {"summary": "collections", "operationId": "getCollections",
                                 "parameters": [ref("f")], "responses": _responses("collections")}},
    }
    for lay in layers:
        props = [{"name": k, "in": "query", "required": False, "style": "form", "explode": False,
                  "schema": {"type": "string" if t == "string" else t}} for k, t in lay.queryables.items()]
        secure = [] if lay.public else [{"bearer": []}]
        paths[f"/collections/{lay.id}"] = {"get": {
            "summary": f"{lay.title} collection", "operationId": f"describe_{lay.id}", "parameters": [ref("f")],
            "responses": _responses("collection"), "security": secure}}
        paths[f"/collections/{lay.id}/queryables"] = {"get": {
            "summary": f"{lay.title} queryables", "operationId": f"queryables_{lay.id}", "parameters": [ref("f")],
            "responses": _responses("queryables", ("application/schema+json", "text/html")), "security": secure}}
        paths[f"/collections/{lay.id}/schema"] = {"get": {
            "summary": f"{lay.title} schema", "operationId": f"schema_{lay.id}", "parameters": [ref("f")],
            "responses": _responses("schema", ("application/schema+json", "text/html")), "security": secure}}
        paths[f"/collections/{lay.id}/items"] = {"get": {
            "summary": f"{lay.title} features", "operationId": f"items_{lay.id}",
            "parameters": [ref(n) for n in ("f", "limit", "offset", "after", "bbox", "bbox-crs", "crs", "datetime",
                                             "filter", "filter-lang", "filter-crs")] + props,
            "responses": _responses("features", ("application/geo+json", "text/html")), "security": secure}}
        paths[f"/collections/{lay.id}/items/{{featureId}}"] = {"get": {
            "summary": f"{lay.title} feature", "operationId": f"item_{lay.id}",
            "parameters": [{"name": "featureId", "in": "path", "required": True, "schema": {"type": "string"}},
                           ref("f"), ref("crs")],
            "responses": _responses("feature", ("application/geo+json", "text/html")), "security": secure}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "gridserver OGC API – Features", "version": "1.0.0",
                 "description": "网格化管理要素服务 grids, areas and incidents"},
        "servers": [{"url": base}],
        "paths": paths,
        "components": {
            "parameters": comp_params,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {"exception": {"type": "object", "required": ["code"],
                                      "properties": {"code": {"type": "string"}, "detail": {"type": "string"},
                                                     "description": {"type": "string"}}}},
        },
    }
