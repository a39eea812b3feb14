"""Per-client limits kept in memory: failed logins per IP address.

The per-account lockout lives in the database (``login_failures``) so it holds across processes
and restarts; this limit is a cheap first line against one address spraying many usernames
(which the per-account lockout cannot see). It is per process: with several workers an address
gets up to ``workers × limit`` attempts, still far from a brute force.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque


class SlidingWindow:
    """At most ``limit`` events per key within ``window`` seconds."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000):
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._events: dict[str, deque] = {}
        self._lock = threading.Lock()

    def _trim(self, q: deque, now: float) -> None:
        while q and q[0] <= now - self.window:
            q.popleft()

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may act again (0 = now)."""
        now = time.monotonic()
        with self._lock:
            q = self._events.get(key)
            if not q:
                return 0
            self._trim(q, now)
            if len(q) < self.limit:
                return 0
            return max(1, math.ceil(q[0] + self.window - now))

    def hit(self, key: str) -> None:
        """Record one event for ``key``."""
        now = time.monotonic()
        with self._lock:
            if key not in self._events and len(self._events) >= self.max_keys:
                for k in [k for k, q in self._events.items() if not q or q[-1] <= now - self.window]:
                    del self._events[k]
                if len(self._events) >= self.max_keys:  # still full: forget the oldest key
                    self._events.pop(next(iter(self._events)))
            q = self._events.setdefault(key, deque())
            self._trim(q, now)
            q.append(now)

    def reset(self) -> None:
        with self._lock:
            self._events.clear()


#: Failed logins per client address: 50 in 5 minutes (an office behind one NAT address has many
#: users), then 429 until the oldest falls out — 600 guesses an hour at most, against 5 per account.
LOGIN_FAILURES_PER_IP = SlidingWindow(limit=50, window=300)
