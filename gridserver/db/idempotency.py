"""``Idempotency-Key`` for creates: a retried POST returns the original answer and makes nothing new.

The rule. A client may send ``Idempotency-Key: <1–255 visible ASCII characters>`` with a create.
The first request with a given (caller, key) runs normally; its status, body and ``Location`` are
stored **in the same transaction** as the row it creates, so either both exist or neither does.
A later request with the same caller and key:

* same method, path and body (JSON compared after parsing) → the stored answer, same status, with
  ``Idempotent-Replayed: true``; nothing is created;
* anything else → 422 ``idempotency_key_reused`` (a key names one request, not a slot to reuse).

Concurrent duplicates serialize on the key: the second ``INSERT … ON CONFLICT DO NOTHING`` waits
on the unique index until the first transaction commits (→ it replays the stored answer) or rolls
back (→ it runs the create itself). Exactly one row results, without any "in progress" state.
A request that fails (4xx, 503 while the database restarts) stores nothing: its retry runs afresh.
Without the header nothing changes. The caller is the authenticated user (``user:<id>``), else the
client address. Keys are kept ``RETENTION_HOURS``; ``purge()`` removes older ones.

Applying it to a create route (``POST /api/v1/incidents`` shows it)::

    from gridserver.db.idempotency import Idempotency, idempotency

    @router.post("", response_model=ThingOut, status_code=201)
    def create(body: ThingIn, response: Response, session: Session = Depends(get_session, scope="function"),
               user: User = Depends(current_user), idem: Idempotency = Depends(idempotency)):
        if (replay := idem.replay(session, user)) is not None:
            return replay
        out = service.create_thing(session, body, user)
        response.headers["Location"] = f"/api/v1/things/{out['id']}"
        idem.save(session, out, 201, {"Location": response.headers["Location"]})
        session.commit()
        return out

``replay`` must come before any write of the route and ``save`` after the last one, in the same
session (transaction).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from fastapi import Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import (Column, DateTime, Integer, MetaData, PrimaryKeyConstraint, Table, Text, func, text)
from sqlalchemy.dialects.postgresql import JSONB

from gridserver.errors import InvalidInput
from gridserver.limits import MB, limit_request_body

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
RETENTION_HOURS = 24 * 7
#: Cap on a body this module reads itself (one the route did not parse first); read per request.
MAX_BODY_BYTES = 16 * MB

metadata = MetaData()

#: One row per (caller, key): the request's fingerprint and the answer it got.
idempotency_keys = Table(
    "idempotency_keys", metadata,
    Column("principal", Text, nullable=False, comment="user:<id>, or client:<address> for anonymous callers"),
    Column("key", Text, nullable=False),
    Column("endpoint", Text, nullable=False, comment="METHOD /path of the first request"),
    Column("request_hash", Text, nullable=False, comment="sha256 of method, path and canonical body"),
    Column("status_code", Integer, comment="status of the stored answer (null only if a route forgot save())"),
    Column("response_body", JSONB),
    Column("response_headers", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("principal", "key", name="idempotency_keys_pkey"),
)


def limit_key_body(request: Request) -> None:
    """Cap a body that is read for an ``Idempotency-Key`` at ``MAX_BODY_BYTES`` (413 ``body_too_large``
    while it streams in): for this helper's own read, and for a route that reads the raw body first."""
    limit_request_body(request, MAX_BODY_BYTES, what=f"request body (read for {HEADER})")


async def _fingerprint(request: Request) -> str:
    """sha256 of method, path and body: JSON compared after parsing, forms by their parsed fields
    (never the raw multipart bytes, whose boundary changes on every retry): each field's name and
    value, each upload's name, filename, size and sha256 (read in chunks and rewound for the route).

    A body the route has not read yet is read here under ``MAX_BODY_BYTES`` (413 ``body_too_large``
    while it streams in)."""
    h = hashlib.sha256()
    for part in (request.method.encode(), b"\0", request.url.path.encode(), b"\0"):
        h.update(part)
    if not hasattr(request, "_body") and getattr(request, "_form", None) is None:
        limit_key_body(request)
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()  # usually already parsed (and cached) by FastAPI for the route
        for name, value in sorted(form.multi_items(), key=lambda kv: kv[0]):
            h.update(name.encode() + b"\0")
            if isinstance(value, str):
                h.update(b"v" + value.encode() + b"\0")
                continue
            digest, size = hashlib.sha256(), 0
            while chunk := await value.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            await value.seek(0)
            h.update(b"f" + (value.filename or "").encode() + b"\0" + f"{size}:{digest.hexdigest()}".encode() + b"\0")
        return h.hexdigest()
    body = await request.body()
    try:
        h.update(json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
    except (ValueError, UnicodeDecodeError):
        h.update(body)
    return h.hexdigest()


def _check_key(key: str) -> str:
    if not key or len(key) > MAX_KEY_LENGTH or not all(33 <= ord(c) <= 126 for c in key):
        shown = key if len(key) <= 40 else key[:40] + "…"
        raise InvalidInput(f"请求头 {HEADER} must be 1–{MAX_KEY_LENGTH} visible ASCII characters "
                           f"(e.g. a UUID), got {shown!r} ({len(key)} characters)", code="invalid_idempotency_key")
    return key


@dataclass
class Idempotency:
    """The request's key and fingerprint; a no-op when the client sent no key."""

    key: str | None
    endpoint: str
    request_hash: str
    client: str
    response_model: object = None
    _principal: str | None = field(default=None, repr=False)

    def principal(self, user=None) -> str:
        """Whose key it is: ``user:<id>`` for an authenticated caller, else ``client:<address>``."""
        return f"user:{user.id}" if user is not None and getattr(user, "id", None) is not None \
            else f"client:{self.client}"

    def replay(self, session, user=None) -> JSONResponse | None:
        """Claim the key for this request, or return the stored answer of the request that holds it.

        None means "go on and create" (no key, or the key is new and now held by this transaction).
        Raises 422 when the key was used for a different request.
        """
        if self.key is None:
            return None
        self._principal = self.principal(user)
        params = {"p": self._principal, "k": self.key}
        claimed = session.execute(
            text("""INSERT INTO idempotency_keys (principal, key, endpoint, request_hash)
                    VALUES (:p, :k, :e, :h) ON CONFLICT (principal, key) DO NOTHING RETURNING 1"""),
            {**params, "e": self.endpoint, "h": self.request_hash}).first()
        if claimed:
            return None
        # The key's holder has committed (we waited on the unique index); a new statement sees its row.
        row = session.execute(text(LOOKUP_SQL), {"idem_principal": self._principal, "idem_key": self.key}).one()
        return self.answer(row._mapping)

    def answer(self, row) -> JSONResponse:
        """The replay of a stored row (mapping with ``LOOKUP_SQL``'s columns): 422 when it was another
        request, 409 when it holds no answer."""
        if row["request_hash"] != self.request_hash:
            raise InvalidInput(
                f"{HEADER} {self.key!r} was already used for a different request ({row['endpoint']} with another "
                f"body): use a new key for a new request", code="idempotency_key_reused")
        if row["status_code"] is None:
            from gridserver.errors import Conflict

            raise Conflict(f"{HEADER} {self.key!r}: the original request stored no answer; use a new key",
                           code="idempotency_key_unfinished")
        headers = {**(row["response_headers"] or {}), "Idempotent-Replayed": "true"}
        return JSONResponse(row["response_body"], status_code=row["status_code"], headers=headers)

    def save(self, session, content, status_code: int, headers: dict | None = None) -> None:
        """Store the answer with the key, in the caller's transaction (before its commit).

        ``content`` is what the route returns; it is shaped by the route's ``response_model`` as
        FastAPI would, so a replay is byte-for-byte the same JSON document.
        """
        if self.key is None:
            return
        if self._principal is None:
            raise RuntimeError("Idempotency.save() called without replay() first")
        body = self._shape(content)
        session.execute(
            text("""UPDATE idempotency_keys SET status_code = :s, response_body = CAST(:b AS jsonb),
                           response_headers = CAST(:hd AS jsonb)
                    WHERE principal = :p AND key = :k"""),
            {"s": status_code, "b": json.dumps(body, ensure_ascii=False), "hd": json.dumps(headers or {}),
             "p": self._principal, "k": self.key})

    def _shape(self, content):
        return shape(self.response_model, content)


_adapters: dict = {}


def shape(model, content):
    """``content`` as the JSON document FastAPI would send for ``response_model`` ``model`` (None: as is)."""
    if model is None:
        return jsonable_encoder(content)
    adapter = _adapters.get(model)
    if adapter is None:
        from pydantic import TypeAdapter

        adapter = _adapters[model] = TypeAdapter(model)
    return adapter.dump_python(adapter.validate_python(content, from_attributes=True), mode="json")


#: The stored answer of (:idem_principal, :idem_key) (intake runs it inside its one context statement).
LOOKUP_SQL = """SELECT endpoint, request_hash, status_code, response_body, response_headers
                FROM idempotency_keys WHERE principal = CAST(:idem_principal AS text) AND key = CAST(:idem_key AS text)"""
#: The key with its complete answer, inserted in the same statement as the row it answers (a CTE over
#: ``ins``, the created row with column ``id``): params %(idem_principal)s, %(idem_key)s, %(idem_endpoint)s,
#: %(idem_hash)s, %(idem_body)s (the answer with a placeholder id) and %(idem_path)s (Location = path/id).
#: A plain INSERT on purpose: a concurrent request holding the key makes it wait, then fail with a unique
#: violation (``is_key_conflict``), which undoes the whole statement; that request then replays.
INSERT_ANSWER_SQL = """INSERT INTO idempotency_keys (principal, key, endpoint, request_hash, status_code,
                                                     response_body, response_headers)
                       SELECT %(idem_principal)s, %(idem_key)s, %(idem_endpoint)s, %(idem_hash)s, 201,
                              jsonb_set(CAST(%(idem_body)s AS jsonb), '{id}', to_jsonb(ins.id)),
                              jsonb_build_object('Location', %(idem_path)s || '/' || ins.id)
                       FROM ins"""


def is_key_conflict(exc: Exception) -> bool:
    """True for the unique violation of ``INSERT_ANSWER_SQL`` (another request holds the key)."""
    diag = getattr(exc, "diag", None)
    return getattr(diag, "constraint_name", None) == "idempotency_keys_pkey"


async def idempotency(request: Request, key: str | None = Header(
        None, alias=HEADER, description="幂等键 any unique string (e.g. a UUID, ≤255 ASCII characters): a retry "
                                        "with the same key and body returns the original answer and creates nothing")) -> Idempotency:
    """FastAPI dependency: the request's ``Idempotency-Key`` (validated) and body fingerprint."""
    route = request.scope.get("route")
    return Idempotency(
        key=_check_key(key.strip()) if key is not None else None,
        endpoint=f"{request.method} {request.url.path}",
        request_hash=await _fingerprint(request) if key is not None else "",
        client=request.client.host if request.client else "unknown",
        response_model=getattr(route, "response_model", None),
    )


def purge(session, hours: int = RETENTION_HOURS) -> int:
    """Delete keys older than ``hours``; returns how many."""
    return session.execute(text("DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => :h)"),
                           {"h": hours}).rowcount
