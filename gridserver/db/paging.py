"""One bound for every page window: ``offset``/``limit``-like query parameters are checked once, for
every route (a global dependency registered by the app factory), before any SQL runs.

PostgreSQL's OFFSET/LIMIT take a bigint; a larger number sent by a client used to reach the driver
and come back as a 500. Any of ``PAGING_PARAMS`` that is written as an integer must lie in
[0, ``MAX_WINDOW``], else 422 naming the parameter. Routes still declare their own, tighter bounds
(``Query(ge=1, le=...)``); this one also covers routes added later that forget to.
"""

from __future__ import annotations

import re

from fastapi import Request

from gridserver.errors import InvalidInput

#: Larger than any real page window, small enough for every integer type the database has.
MAX_WINDOW = 2**31 - 1
PAGING_PARAMS = ("offset", "limit", "page", "page_size", "per_page", "start", "skip", "cursor")
_INT = re.compile(r"^\s*[+-]?\d+\s*$")


async def bound_paging(request: Request) -> None:
    """422 when a paging parameter is an integer outside [0, MAX_WINDOW] (async: pure CPU, so no thread hop per request)."""
    for name in PAGING_PARAMS:
        for value in request.query_params.getlist(name):
            if _INT.match(value) and not 0 <= int(value) <= MAX_WINDOW:
                shown = value.strip() if len(value) <= 40 else value.strip()[:40] + "…"
                raise InvalidInput(f"query parameter {name} must be between 0 and {MAX_WINDOW:,}, got {shown}",
                                   extra={"parameter": name})
