"""Geocoding from our own standard address base — no external service.

* :func:`geocode` — text → the best standard address, its code, point, grid and a confidence in
  [0, 1]. It runs the import matcher on the one text; when the full address is not in the base it
  falls back to the deepest level that is (``中山四路13号99栋`` → ``中山四路13号``), with confidence
  reduced by 0.7 per level dropped, and says so (``"precision": "house"``).
* :func:`reverse` — point (any supported CRS) → nearest standard addresses with distances in metres.
* :func:`geocode_for_incident` — what the incident service calls for reports that give an address
  instead of coordinates.
"""

from __future__ import annotations

import re
import threading

from sqlalchemy import text

from gridserver.address.base import road_gazetteer
from gridserver.address.keys import RoadGazetteer, ancestor_keys
from gridserver.address.matcher import CLEAR_ROAD_LEAD, AreaNames, RowIn, match_rows
from gridserver.areas.locate import to_storage
from gridserver.errors import InvalidInput, NotFound

LEVEL_DROP_FACTOR = 0.7
#: What may stand between a road and its house number: 中山四路,13号 / 中山四路第13号.
_SEPARATORS = re.compile(r"^[\s,，、:：;；\-—]*第?")
_cache: dict = {}
_lock = threading.Lock()

_ADDR = ("SELECT id, code, level, full_text, status, ST_X(geom) AS lon, ST_Y(geom) AS lat, grid_code, community_code, "
         "street_code, district_code FROM std_addresses")


def _gazetteer(conn) -> RoadGazetteer:
    # Rebuilt only when roads or aliases changed: a cheap signature query per request.
    sig = tuple(conn.execute(text(
        "SELECT (SELECT count(*) FROM std_addresses WHERE level = 'road' AND status <> 'retired'), "
        "(SELECT max(updated_at) FROM std_addresses WHERE level = 'road'), "
        "(SELECT max(id) FROM address_aliases)")).one())
    with _lock:
        if _cache.get("sig") == sig and conn.engine.url == _cache.get("url"):
            return _cache["gaz"]
    gaz = road_gazetteer(conn)
    with _lock:
        _cache.update(sig=sig, gaz=gaz, url=conn.engine.url)
    return gaz


def _address(conn, address_id: int) -> dict:
    r = conn.execute(text(_ADDR + " WHERE id = :i"), {"i": address_id}).first()
    return dict(r._mapping)


def geocode(conn, q: str) -> dict:
    """Best standard address for ``q`` with a confidence; NotFound when nothing in the base fits."""
    q = (q or "").strip()
    if not q:
        raise InvalidInput("q must be an address text, e.g. q=越秀区中山四路13号")
    if len(q) > 500:
        raise InvalidInput(f"q is {len(q)} characters long; an address has at most 500")
    m = match_rows(conn, [RowIn(idx=0, text=q)], gazetteer=_gazetteer(conn), areas=AreaNames(conn))[0]
    if m.status == "rejected":
        raise NotFound(f"cannot geocode {q!r}: {m.reason}")
    if m.status == "matched" and m.address_id:
        a = _address(conn, m.address_id)
        return _answer(a, q, (m.score or 0) / 100.0, m.method, a["level"])
    _refuse_if_ambiguous(q, m)
    # Not the full address: the deepest level of it that the base has.
    if m.key and _numbers_follow_road(m):
        chain = ancestor_keys(m.key)[:-1]
        base_conf = 0.88 if m.parts and m.parts.road_how == "fuzzy" else 1.0
        for dropped, (level, key) in enumerate(reversed(chain), start=1):
            if level == "road" and m.parts is not None and m.parts.road_how not in ("exact", "alias"):
                # none of the numbers is on the road we guessed (from a misspelling, or a known name
                # inside a longer one: 北京路 in 北京路商步行街): the guess itself is doubtful
                break
            r = conn.execute(text(_ADDR + " WHERE match_key = :k AND status <> 'retired'"), {"k": key}).first()
            if r is not None:
                a = dict(r._mapping)
                return _answer(a, q, base_conf * LEVEL_DROP_FACTOR ** dropped, "partial", level)
    # (the matcher's review candidate is not an answer: it may be the neighbouring house of a digit typo)
    raise NotFound(f"cannot geocode {q!r}: {m.reason or 'no standard address matches'}")


def _numbers_follow_road(m) -> bool:
    """True when the road's spelling in the text is followed by the numbers (or by nothing), so an
    ancestor of the parsed address is a part of what was written. Words between the road and the
    numbers (北京路商步行街14号…) may be the rest of a longer road's name (北京路商业步行街) or a lane or
    estate off it: the numbers that were read need not be on this road, and neither need the address.
    """
    if m.parts is None or m.parts.road_end < 0:
        return True
    after = _SEPARATORS.sub("", m.normalised[m.parts.road_end:], count=1)
    return not after or after[0].isdigit()


def _refuse_if_ambiguous(q: str, m) -> None:
    """NotFound (code ``ambiguous_address``, with the candidate roads) when the text fits several roads
    and the full address was not found on exactly one of them: answering a house or road of one of
    them would be a guess, and a wrong answer is worse than none.

    * the road is misspelt and two known roads are about as close (中山路 → 中山一路 … 中山八路);
    * the road is a real one but the address is not on it, while a road whose name has one character
      more has it (麓湖路12号1栋1单元301室 → 麓湖横路…).
    """
    roads: list[str] = []
    if m.parts is not None and m.parts.road_how == "fuzzy" and len(m.alternatives) > 1 \
            and m.alternatives[0][1] - m.alternatives[1][1] < CLEAR_ROAD_LEAD:
        roads = [r for r, s in m.alternatives if m.alternatives[0][1] - s < CLEAR_ROAD_LEAD]
    elif m.near:
        roads = [m.parts.road] + sorted({r for r, _ in m.near})
    if roads:
        raise NotFound(f"cannot geocode {q!r}: ambiguous, the road could be {'、'.join(roads)}",
                       code="ambiguous_address", extra={"alternatives": [{"road": r} for r in roads]})


def _answer(a: dict, q: str, confidence: float, method: str | None, precision: str) -> dict:
    return {"query": q, "code": a["code"], "full_text": a["full_text"], "level": a["level"], "status": a["status"],
            "lon": a["lon"], "lat": a["lat"], "grid_code": a["grid_code"], "community_code": a["community_code"],
            "street_code": a["street_code"], "district_code": a["district_code"],
            "confidence": round(float(confidence), 3), "method": method, "precision": precision}


def _has_metric_position(lon: float, lat: float) -> bool:
    """True when the WGS84 point has finite EPSG:4547 coordinates (the CRS distances are measured in)."""
    import math

    from gridserver.geo.crs import metric_transformer

    mx, my = metric_transformer().transform(lon, lat)
    return math.isfinite(mx) and math.isfinite(my)


def reverse(conn, lon: float, lat: float, crs: str | None = "wgs84", *, limit: int = 5,
            level: str | None = "house", max_distance_m: float = 500.0) -> dict:
    """Nearest live standard addresses to a point, nearest first, with distance in metres."""
    if not 1 <= limit <= 100:
        raise InvalidInput(f"limit must be between 1 and 100, got {limit}")
    levels = ("road", "house", "building", "unit", "floor", "room")
    if level not in (None, "any", *levels):
        raise InvalidInput(f"level must be one of {', '.join(levels)} or any, got {level!r}")
    x, y, name = to_storage(lon, lat, crs)
    if not _has_metric_position(x, y):
        # Too far from the metric CRS's zone for a distance in metres (e.g. lon 15°): no standard
        # address can lie within max_distance_m of it, and PostGIS would fail transforming it.
        return {"lon": x, "lat": y, "input_crs": name, "items": []}
    rows = conn.execute(text(
        f"""WITH pt AS (SELECT ST_SetSRID(ST_MakePoint(:x, :y), 4326) AS g)
            SELECT s.id, s.code, s.level, s.full_text, s.status, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat,
                   s.grid_code, s.community_code, s.street_code, s.district_code,
                   ST_Distance(ST_Transform(s.geom, 4547), ST_Transform(pt.g, 4547)) AS distance_m
            FROM (SELECT s.* FROM std_addresses s, pt
                  WHERE s.status <> 'retired' AND s.geom IS NOT NULL
                    {"" if level in (None, "any") else "AND s.level = :level"}
                  ORDER BY s.geom <-> pt.g LIMIT :lim) s, pt
            ORDER BY distance_m"""), {"x": x, "y": y, "level": level, "lim": limit}).all()
    items = [{**{k: v for k, v in r._mapping.items() if k != "id"}, "distance_m": round(float(r.distance_m), 2)}
             for r in rows if r.distance_m <= max_distance_m]
    return {"lon": x, "lat": y, "input_crs": name, "items": items}


def geocode_for_incident(session, address_text: str) -> tuple[float, float, float, str]:
    """(lon, lat, confidence, address code) for an incident reported by address; NotFound if it cannot.

    ``session`` is a SQLAlchemy Session or Connection. Addresses without a point are not usable.
    """
    conn = session.connection() if hasattr(session, "connection") and not hasattr(session, "engine") else session
    g = geocode(conn, address_text)
    if g["lon"] is None:
        raise NotFound(f"address {g['code']} has no location yet")
    return float(g["lon"]), float(g["lat"]), float(g["confidence"]), g["code"]
