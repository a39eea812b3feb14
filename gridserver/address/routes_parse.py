"""HTTP: ``GET /api/v1/address/parse?q=`` and ``POST /api/v1/address/parse`` (a JSON list of strings)."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel

from gridserver.address.parser import parse_batch
from gridserver.auth.deps import optional_user
from gridserver.errors import InvalidInput
from gridserver.limits import MB, LimitedBodyRoute, max_body

router = APIRouter(prefix="/api/v1/address", tags=["地址 address"], route_class=LimitedBodyRoute)

MAX_BATCH = 10_000
MAX_CHARS = 10_000  # per address; the parser handles long text, but nobody's address is this long
#: Without a token a batch is for trying the parser, not for bulk work (≈ 15 ms of CPU).
ANONYMOUS_MAX_BATCH = 100
MAX_BODY_BYTES = 16 * MB
ANONYMOUS_MAX_BODY_BYTES = 64 * 1024


class ComponentOut(BaseModel):
    label: str
    text: str
    start: int
    end: int


class ParseResult(BaseModel):
    input: str
    components: list[ComponentOut]


def _check(texts: list[str]) -> None:
    for i, t in enumerate(texts):
        if len(t) > MAX_CHARS:
            raise InvalidInput(f"address #{i} has {len(t)} characters; at most {MAX_CHARS} are accepted")


def _results(texts: list[str]) -> list[dict]:
    return [{"input": t, "components": [c.as_dict() for c in comps]} for t, comps in zip(texts, parse_batch(texts))]


@router.get("/parse", response_model=ParseResult, summary="解析一条地址 parse one address")
def parse_one(q: str = Query(..., description="地址 address text", max_length=MAX_CHARS)) -> dict:
    """Components of one address with offsets into ``q``."""
    return _results([q])[0]


@router.post("/parse", response_model=list[ParseResult], summary="批量解析地址 parse many addresses",
             openapi_extra=max_body(MAX_BODY_BYTES, anonymous=ANONYMOUS_MAX_BODY_BYTES))
def parse_many(texts: list[str] = Body(..., description=f"地址列表，最多 {MAX_BATCH} 条 up to {MAX_BATCH} addresses "
                                                        f"({ANONYMOUS_MAX_BATCH} without a token)"),
               user=Depends(optional_user)) -> list[dict]:
    """Components of each address, in input order. More than MAX_BATCH items (ANONYMOUS_MAX_BATCH
    without a token) → 422 ``too_many``; a body over 16 MB (64 KB without a token) → 413."""
    limit = MAX_BATCH if user is not None else ANONYMOUS_MAX_BATCH
    if len(texts) > limit:
        hint = "" if user is not None else f"; log in (Authorization: Bearer) for up to {MAX_BATCH}"
        raise InvalidInput(f"{len(texts)} addresses in one request; at most {limit} are accepted{hint}",
                           code="too_many")
    _check(texts)
    return _results(texts)
