"""Domain errors and their HTTP mapping: one shape everywhere, ``{"detail": ..., "code": ...}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

# the code of a routing error, by HTTP status (domain errors carry their own)
_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 413: "too_large", 415: "unsupported_media_type"}
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class GridserverError(Exception):
    """Base error. ``code`` is a stable machine-readable slug, ``detail`` says what and where."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None, extra=None):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        if status:
            self.status = status
        self.extra = extra or {}


class InvalidInput(GridserverError):
    status, code = 422, "invalid_input"


class UnknownCRS(GridserverError):
    status, code = 422, "unknown_crs"


class NotFound(GridserverError):
    status, code = 404, "not_found"


class OutsideArea(GridserverError):
    status, code = 404, "outside_area"


class Conflict(GridserverError):
    status, code = 409, "conflict"


class Unauthorized(GridserverError):
    status, code = 401, "unauthorized"


class Forbidden(GridserverError):
    status, code = 403, "forbidden"


class DatabaseUnavailable(GridserverError):
    """The database cannot be reached (down, restarting, pool exhausted): 503 with Retry-After."""

    status, code = 503, "database_unavailable"


def _database_error(exc: Exception) -> GridserverError | None:
    """The domain error for a driver/pool exception, or None when it is not a database fault.

    Connection failures and server shutdowns (SQLSTATE classes 08, 53, 57, 58 are all psycopg
    ``OperationalError``) → 503; a cancelled statement (``statement_timeout``) → 503 saying so; a
    data exception (class 22, e.g. a number out of range that slipped past validation) → 422.
    """
    import psycopg
    from sqlalchemy import exc as sa_exc

    from gridserver.db.engine import PoolTimeout

    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    if isinstance(orig, psycopg.errors.QueryCanceled):
        from gridserver.settings import get_settings

        return DatabaseUnavailable(
            f"数据库查询超时 the database cancelled the query after the statement timeout "
            f"({get_settings().statement_timeout_ms / 1000:g} s): narrow the request (smaller area, "
            f"fewer rows) or retry later", code="query_timeout")
    if isinstance(orig, (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, sa_exc.TimeoutError)) or (
            isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated):
        return DatabaseUnavailable("数据库暂不可用 the database is unavailable (down or restarting); "
                                   "nothing was changed by this request: retry after a few seconds")
    if isinstance(orig, psycopg.errors.DataError):
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return InvalidInput(f"数据无效 a value was rejected by the database: {first}")
    return None


#: The one error shape, as documented in the OpenAPI document (every 4xx/5xx body has it).
ERROR_SCHEMA = {
    "title": "Error", "type": "object", "required": ["detail", "code"], "additionalProperties": True,
    "properties": {"detail": {"type": "string", "description": "what was wrong and where (zh-CN first)"},
                   "code": {"type": "string", "description": "stable machine-readable slug"},
                   "errors": {"type": "array", "description": "per-field details of a validation error"}},
}


def _document_error_shape(app: FastAPI) -> None:
    """FastAPI documents 422 as its own ``HTTPValidationError`` (``detail`` a list); ours is
    ``{"detail": str, "code": str}``: make the OpenAPI document say what the server sends."""
    generate = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {})["HTTPValidationError"] = ERROR_SCHEMA
        return app.openapi_schema

    app.openapi = openapi


def install_handlers(app: FastAPI) -> None:
    _document_error_shape(app)
    import psycopg
    from sqlalchemy import exc as sa_exc

    from gridserver.db.engine import PoolTimeout

    async def _database(request: Request, exc: Exception):
        err = _database_error(exc)
        if err is None:
            raise exc
        return await _domain(request, err)

    for cls in (sa_exc.DBAPIError, sa_exc.TimeoutError, psycopg.Error, PoolTimeout):
        app.add_exception_handler(cls, _database)

    @app.exception_handler(GridserverError)
    async def _domain(_: Request, exc: GridserverError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 503:
            from gridserver.settings import get_settings

            headers = {"Retry-After": str(get_settings().retry_after)}
        return JSONResponse({"detail": exc.detail, "code": exc.code, **exc.extra}, exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        """Routing errors (unknown path, wrong method) in the same shape as ours, saying what and where."""
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"没有此路径 no such path: {request.url.path}"
        elif exc.status_code == 405:
            # Starlette names only the first route of the path: ask the router which methods it would serve
            allowed = {m for m in _METHODS if any(route.matches({**request.scope, "method": m})[0] == Match.FULL
                                                   for route in request.app.router.routes)}
            headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
            headers["Allow"] = ", ".join(sorted(allowed))
            detail = f"不支持此方法 {request.method} is not allowed on {request.url.path}; allowed: {headers['Allow']}"
        return JSONResponse({"detail": detail, "code": _HTTP_CODES.get(exc.status_code, "http_error")},
                            exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')} (got {err.get('input')!r})")
        return JSONResponse({"detail": "; ".join(parts), "code": "invalid_input", "errors": jsonable_encoder(exc.errors(), custom_encoder={Exception: str})}, 422)
