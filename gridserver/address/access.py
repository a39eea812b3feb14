"""Who may see what of the standard address base (issue 8).

The base holds where people live, down to the room, and who changed what. The rule:

==============================  ===========================  ======================================
endpoint                        anonymous / citizen          staff token, address in scope
==============================  ===========================  ======================================
GET /address/geocode            road-level answer only       full answer (house … room)
GET /address/reverse            ``level=road`` only          any level, only addresses in scope
                                                             (citizens: roads only)
GET /address/{code}             road codes, no history       everything, history with actor names
review queue / decisions        no                           reviewers, records in scope
==============================  ===========================  ======================================

"Staff" is every role except citizen; "in scope" is the usual prefix rule on the address's most
precise area code (grid, else community, street, district). A staff token for an address outside
its scope gets what a stranger gets for geocode, 403 for a code below road level.
"""

from __future__ import annotations

from sqlalchemy import text

from gridserver.address.geocode import reverse
from gridserver.auth.deps import is_citywide, user_in_scope
from gridserver.auth.users import User
from gridserver.errors import Forbidden, Unauthorized

PUBLIC_LEVEL = "road"
RESTRICTED_NOTE = "门牌及以下需要登录且在管辖范围内 house-level detail needs a staff token whose scope covers it"


def area_code(address: dict) -> str | None:
    """The most precise area code of a standard address (what scopes are checked against)."""
    for f in ("grid_code", "community_code", "street_code", "district_code"):
        if address.get(f):
            return address[f]
    return None


def may_see_detail(user: User | None, address: dict) -> bool:
    """True when ``user`` may see this address below road level (and its history)."""
    return user is not None and user.role != "citizen" and user_in_scope(user, area_code(address))


def road_of(conn, address_id: int) -> dict | None:
    """The road-level ancestor of an address (by parent links), as geocode returns addresses."""
    r = conn.execute(text(
        """WITH RECURSIVE up AS (SELECT id, parent_id, level FROM std_addresses WHERE id = :i
                                 UNION ALL
                                 SELECT s.id, s.parent_id, s.level FROM std_addresses s JOIN up ON s.id = up.parent_id
                                 WHERE up.level <> 'road')
           SELECT s.code, s.full_text, s.level, s.status, ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat, s.grid_code,
                  s.community_code, s.street_code, s.district_code
           FROM up JOIN std_addresses s ON s.id = up.id WHERE up.level = 'road' LIMIT 1"""), {"i": address_id}).first()
    return dict(r._mapping) if r is not None else None


def geocode_for(conn, user: User | None, answer: dict) -> dict:
    """A geocode answer as ``user`` may see it: below road level only with detail rights, else its road."""
    if answer["level"] == PUBLIC_LEVEL or may_see_detail(user, answer):
        return answer
    address_id = conn.execute(text("SELECT id FROM std_addresses WHERE code = :c"), {"c": answer["code"]}).scalar()
    road = road_of(conn, address_id) if address_id is not None else None
    if road is None:
        error = Unauthorized if user is None else Forbidden
        raise error(f"{RESTRICTED_NOTE}; there is no road-level answer for this query")
    out = {**answer, **road, "precision": PUBLIC_LEVEL, "restricted": RESTRICTED_NOTE}
    out["method"] = "road_only"
    return out


def check_reverse_level(user: User | None, level: str | None) -> None:
    """Anonymous callers and citizens reverse-geocode to roads only (401/403 otherwise)."""
    if level == PUBLIC_LEVEL:
        return
    if user is None:
        raise Unauthorized(f"逆地理编码到门牌需要登录 reverse geocoding below road level needs a token: "
                           f"log in, or pass level={PUBLIC_LEVEL}")
    if user.role == "citizen":
        raise Forbidden(f"公众账号只能查询道路 citizens may reverse-geocode to roads only: pass level={PUBLIC_LEVEL}")


def reverse_for(conn, user: User | None, lon: float, lat: float, crs: str | None, *, limit: int, level: str | None,
                max_distance_m: float) -> dict:
    """``geocode.reverse`` as ``user`` may see it: roads for anyone, lower levels for staff and only
    addresses in their scope (401/403 for a level the caller may not ask for)."""
    check_reverse_level(user, level)
    # A scoped caller's hits are filtered after the nearest-first search: look further to fill the page.
    wanted = limit if user is None or is_citywide(user) else min(100, limit * 5)
    out = reverse(conn, lon, lat, crs, limit=wanted, level=level, max_distance_m=max_distance_m)
    if user is not None:
        out["items"] = [i for i in out["items"] if i["level"] == PUBLIC_LEVEL or may_see_detail(user, i)][:limit]
    return out


def address_for(user: User | None, address: dict) -> dict:
    """``GET /address/{code}`` as ``user`` may see it: full with history, a road without history, or 401/403."""
    if may_see_detail(user, address):
        return address
    if address["level"] == PUBLIC_LEVEL:
        return {k: v for k, v in address.items() if k != "history"}
    if user is None:
        raise Unauthorized(f"{RESTRICTED_NOTE}: log in to read address {address['code']}")
    raise Forbidden(f"address {address['code']} ({area_code(address) or 'no area'}) is outside your scope "
                    f"{user.scope_code or '(none)'}")
