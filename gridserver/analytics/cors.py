"""Cross-origin reads of the OGC API: a web map on another origin may read ``/ogc`` (with a bearer token for
the collections that need one) and see every answer, errors included.

Only ``/ogc`` is opened: the rest of the API stays same-origin. Tokens travel in the ``Authorization`` header,
never in cookies, so allowing any origin does not let a foreign page act with a user's session.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware

PREFIX = "/ogc"


class OgcCors:
    """ASGI middleware: Starlette's CORS handling (preflight answers, headers on every answer) for ``/ogc``."""

    def __init__(self, app):
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=["*"], allow_methods=["GET", "HEAD", "OPTIONS"],
                                   allow_headers=["Authorization", "Accept", "Accept-Language", "Content-Type",
                                                  "If-None-Match"],
                                   expose_headers=["Content-Crs", "Link", "ETag"], max_age=600)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and (scope["path"] == PREFIX or scope["path"].startswith(PREFIX + "/")):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
