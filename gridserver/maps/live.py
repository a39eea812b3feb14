"""Live incident updates as Server-Sent Events: ``GET /api/v1/events/incidents``.

PostgreSQL tells us (the ``incidents_notify`` trigger of migration 0009 sends a small JSON payload
on channel ``gridserver_incidents`` for every insert/update); one LISTEN connection per server
process fans each notification out to every subscriber's queue; each subscriber receives only the
incidents it may read (admin/analyst all, staff their scope prefix on ``grid_code``, citizens their
own reports — the rule of ``incidents.service``, applied here to the notification's fields).

EventSource cannot set headers, so the token may come as ``?access_token=``. Such URLs must never
reach a log: the access logger gets a filter that drops every query string (``logconfig``), added at
import here too so any uvicorn launch is covered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from gridserver.auth.deps import current_user, oauth2_scheme, user_in_scope
from gridserver.auth.users import User
from gridserver.db.engine import get_session

log = logging.getLogger(__name__)

CHANNEL = "gridserver_incidents"
#: A comment line this often keeps proxies from closing an idle stream.
HEARTBEAT_SECONDS = 15.0
#: Per-subscriber queue bound: a stalled client loses old events, never the server's memory.
QUEUE_SIZE = 1000
RETRY_MS = 2000


def _redact_access_log() -> None:
    try:
        from gridserver.logconfig import StripQueryFilter
    except ImportError:  # pragma: no cover - older tree
        return
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, StripQueryFilter) for f in access.filters):
        access.addFilter(StripQueryFilter())


_redact_access_log()


class Hub:
    """One LISTEN connection shared by every subscriber of this process (started on first use)."""

    def __init__(self) -> None:
        self.subscribers: set[asyncio.Queue] = set()
        self.task: asyncio.Task | None = None
        self.connected = asyncio.Event()
        self.connections_made = 0  # for tests: one per process lifetime unless the database drops it

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.add(q)
        if self.task is None or self.task.done():
            self.connected = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._listen())
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self.subscribers.discard(q)

    def publish(self, payload: dict) -> None:
        for q in list(self.subscribers):
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(payload)

    async def _listen(self) -> None:
        import psycopg

        from gridserver.db.engine import conninfo, connect_kwargs

        delay = 0.5
        while self.subscribers:
            try:
                kw = {k: v for k, v in connect_kwargs().items() if k != "options"}  # no statement_timeout
                async with await psycopg.AsyncConnection.connect(conninfo(), autocommit=True, **kw) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connections_made += 1
                    self.connected.set()
                    delay = 0.5
                    async for note in conn.notifies():
                        try:
                            self.publish(json.loads(note.payload))
                        except ValueError:
                            log.warning("ignored a malformed incident notification")
                        if not self.subscribers:
                            break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database restart: reconnect with backoff, subscribers stay
                self.connected.clear()
                log.warning("incident LISTEN connection lost (%s); retrying in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.connected.clear()


_hubs: dict[int, Hub] = {}


def hub() -> Hub:
    """The hub of the running event loop (one per server process)."""
    loop = asyncio.get_running_loop()
    h = _hubs.get(id(loop))
    if h is None:
        h = _hubs[id(loop)] = Hub()
    return h


def may_see(user: User, event: dict) -> bool:
    """True when ``user`` may read the incident the event describes (see the module docstring)."""
    if user.role == "citizen":
        return event.get("reporter_id") == user.id
    return user_in_scope(user, event.get("grid_code"))


def event_user(
    token: str | None = Depends(oauth2_scheme),
    access_token: str | None = Query(None, description="令牌 the bearer token, for EventSource (cannot send headers); "
                                                         "never logged"),
    session: Session = Depends(get_session, scope="function"),
) -> User:
    """The caller from the Authorization header or ``?access_token=``; 401 without either."""
    return current_user(token or access_token, session)


router = APIRouter(tags=["地图 maps"])


@router.get("/api/v1/events/incidents", summary="事件实时推送 live incident changes (Server-Sent Events)",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def incident_events(request: Request, user: User = Depends(event_user)):
    """A ``text/event-stream`` of ``incident`` events (JSON: op insert|update, id, status, category,
    grid_code, lon, lat, created_at) for the incidents the caller may read, as they happen."""
    h = hub()
    queue = h.subscribe()

    async def stream():
        try:
            yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(h.connected.wait(), 10)
            yield b"event: ready\ndata: {}\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        break
                    yield b": keep-alive\n\n"
                    continue
                if not may_see(user, event):
                    continue
                event = {k: v for k, v in event.items() if k != "reporter_id"}  # shared dict: copy
                data = json.dumps(event, ensure_ascii=False)
                yield f"event: incident\nid: {event.get('id')}\ndata: {data}\n\n".encode()
        finally:
            h.unsubscribe(queue)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/api/v1/events/status", include_in_schema=False)
async def events_status():
    """How many subscribers and LISTEN connections this process has (for tests and monitoring)."""
    h = hub()
    return {"subscribers": len(h.subscribers), "listen_connections_made": h.connections_made,
            "listening": h.connected.is_set()}
