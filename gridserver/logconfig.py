"""Logging for ``gridserver serve``: uvicorn's own format, minus anything personal or secret.

Access log lines keep method, path and status but never the query string: queries carry addresses
(``/api/v1/address/geocode?q=…``), coordinates and names. ``uvicorn_log_config()`` is passed to
``uvicorn.run(log_config=...)``; ``StripQueryFilter`` can be attached to any handler.
"""

from __future__ import annotations

import copy
import logging


def strip_query(target: str) -> str:
    """``/path?query`` → ``/path`` (also without a fragment)."""
    return target.split("?", 1)[0].split("#", 1)[0]


class StripQueryFilter(logging.Filter):
    """Drops the query string from uvicorn access records (args: client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = args[:2] + (strip_query(args[2]),) + args[3:]
        return True


def uvicorn_log_config() -> dict:
    """uvicorn's default logging config with StripQueryFilter on the access handler."""
    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg.setdefault("filters", {})["strip_query"] = {"()": "gridserver.logconfig.StripQueryFilter"}
    cfg["handlers"]["access"].setdefault("filters", []).append("strip_query")
    return cfg
