"""Request-body limits enforced while the body streams in (issue 8).

A ``Content-Length`` above the limit is refused before anything is read; without one (chunked
uploads) the bytes are counted as they arrive and reading stops with **413** ``body_too_large``
as soon as the limit is passed — the rest of the body is never read or buffered.

Two ways to use it:

* A route whose body FastAPI parses (``File``/``Form``/JSON model parameters): build its router
  with ``route_class=LimitedBodyRoute`` and declare the limit in ``openapi_extra`` (it also shows
  in the OpenAPI document)::

      router = APIRouter(prefix="/api/v1", route_class=LimitedBodyRoute)

      @router.post("/things/import", openapi_extra=max_body(50 * MB))
      def upload(file: UploadFile = File(...)): ...

  ``max_body(n, anonymous=m)`` gives requests without an ``Authorization`` header the smaller
  limit ``m`` (whether the token is valid is still checked by the route's dependencies).
* A route that reads the body itself (``await request.body()``, ``request.stream()``,
  ``request.form()``): call ``limit_request_body(request, n)`` first, or ``await read_body(request, n)``.
"""

from __future__ import annotations

from typing import Callable

from fastapi import Request
from starlette.exceptions import HTTPException
from fastapi.routing import APIRoute

from gridserver.errors import GridserverError

MB = 1024 * 1024
LIMIT_KEY = "x-max-body-bytes"
ANONYMOUS_LIMIT_KEY = "x-max-body-bytes-anonymous"


class BodyTooLarge(GridserverError):
    status, code = 413, "body_too_large"


def _too_large(max_bytes: int, what: str, hint: str) -> BodyTooLarge:
    return BodyTooLarge(f"请求体过大 {what} is larger than {max_bytes:,} bytes{hint}", extra={"limit_bytes": max_bytes})


def limit_request_body(request: Request, max_bytes: int, *, what: str = "request body", hint: str = "") -> None:
    """Cap this request's body at ``max_bytes``: every later read (``body()``, ``stream()``,
    ``form()``, ``json()``) raises BodyTooLarge (413) once more has arrived.

    A declared Content-Length above the limit is refused at once. ``hint`` is appended to the
    message (e.g. how to get a higher limit).
    """
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise _too_large(max_bytes, f"{what} ({int(length):,} bytes declared)", hint)
    receive = request._receive  # Starlette reads the body only through this callable
    seen = 0

    async def counted():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise _too_large(max_bytes, what, hint)
        return message

    request._receive = counted


async def read_body(request: Request, max_bytes: int, **kw) -> bytes:
    """The whole body, read under ``limit_request_body(request, max_bytes)``."""
    limit_request_body(request, max_bytes, **kw)
    return await request.body()


def max_body(max_bytes: int, *, anonymous: int | None = None, extra: dict | None = None) -> dict:
    """``openapi_extra`` for a LimitedBodyRoute: the body limit (and a smaller one without a token)."""
    out = dict(extra or {})
    out[LIMIT_KEY] = max_bytes
    if anonymous is not None:
        out[ANONYMOUS_LIMIT_KEY] = anonymous
    return out


def _body_too_large_in(exc: BaseException) -> BodyTooLarge | None:
    """The BodyTooLarge behind ``exc`` (its causes/contexts, exception groups), if any."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, BodyTooLarge):
            return e
        todo += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]
    return None


class LimitedBodyRoute(APIRoute):
    """An APIRoute that applies the ``max_body`` limit from its ``openapi_extra`` before FastAPI reads
    the body; routes without one are left alone."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        extra = self.openapi_extra or {}
        if not extra.get(LIMIT_KEY):
            return handler

        async def limited(request: Request):
            limit, anonymous = extra[LIMIT_KEY], extra.get(ANONYMOUS_LIMIT_KEY)  # read per request
            n, hint = limit, ""
            if anonymous is not None and not request.headers.get("authorization"):
                n, hint = anonymous, f" without a token; log in (Authorization: Bearer) for up to {limit:,} bytes"
            limit_request_body(request, n, hint=hint)
            try:
                return await handler(request)
            except HTTPException as exc:  # FastAPI turns errors while parsing the body into a 400
                cause = _body_too_large_in(exc)
                if cause is not None:
                    raise cause from None
                raise

        return limited
