"""Domain errors and their HTTP mapping: one shape everywhere, ``{"detail": ..., "code": ...}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


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


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(GridserverError)
    async def _domain(_: Request, exc: GridserverError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.detail, "code": exc.code, **exc.extra}, exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"{where}: {err.get('msg')} (got {err.get('input')!r})")
        return JSONResponse({"detail": "; ".join(parts), "code": "invalid_input", "errors": jsonable_encoder(exc.errors(), custom_encoder={Exception: str})}, 422)
