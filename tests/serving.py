"""Waiting for a server subprocess the tests started (``gridserver serve`` / uvicorn) to answer."""

from __future__ import annotations

import time
from typing import Callable

import httpx


def wait_serving(proc, base: str, seconds: float = 60, what: str = "serve",
                 log: Callable[[], str] | None = None, every: float = 0.2) -> None:
    """Poll ``base``/healthz until it answers 200; fail (with the server's log when given) if the
    process exits or ``seconds`` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start" + (f": {log()[-2000:]}" if log else ""))
        time.sleep(every)
