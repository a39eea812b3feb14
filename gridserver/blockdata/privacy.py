"""The one masking layer for block data (people, households, buildings, businesses).

Everyone who shows block data — the listings here, the maps, the OGC API — goes through this module:

* :func:`pii_hash` — HMAC-SHA256 of an ID or phone number. The key comes from
  ``GRIDSERVER_PII_KEY`` or the file ``$GRIDSERVER_HOME/pii-key`` (created 0600 on first use), never
  from the database, so a database dump cannot be reversed by hashing every possible ID number.
* :func:`mask_name` 张三明 → 张*明, :func:`mask_id` → ``4401**********123X``,
  :func:`mask_phone` → ``138****5678``, :func:`generalise_address` → the building's address code.
* :func:`view_for` decides what a caller sees of records in an area:

  ==================================  =================================================================
  caller                              view
  ==================================  =================================================================
  admin                               ``full`` anywhere (each read is logged)
  grid worker / community / street /  ``full`` inside their scope (their grid(s) / area), nothing
  district operator                   outside it
  dept_handler                        ``masked`` inside their scope (names, IDs and phones masked)
  analyst                             ``deidentified`` anywhere: no name, ID, phone; address → building
  citizen, anyone else                ``none``
  ==================================  =================================================================

* :func:`shape_person` / :func:`shape_business` / … turn a row into the dict the caller may see.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from functools import lru_cache

from gridserver.settings import get_settings

FULL, MASKED, DEIDENTIFIED, NONE = "full", "masked", "deidentified", "none"
#: Roles that see everything unmasked inside their scope.
_FULL_IN_SCOPE = ("grid_worker", "community_operator", "street_operator", "district_operator")


@lru_cache
def _key_for(home: str, env_key: str | None) -> bytes:
    if env_key:
        return env_key.encode()
    path = os.path.join(home, "pii-key")
    if not os.path.exists(path):
        os.makedirs(home, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    with open(path) as f:
        return f.read().strip().encode()


def pii_key() -> bytes:
    """The HMAC key (env ``GRIDSERVER_PII_KEY`` or ``$GRIDSERVER_HOME/pii-key``)."""
    return _key_for(str(get_settings().home.resolve()), os.environ.get("GRIDSERVER_PII_KEY"))


def pii_hash(value: str, key: bytes | None = None) -> str:
    """HMAC-SHA256 (hex) of a normalised ID or phone number."""
    return hmac.new(key or pii_key(), value.strip().upper().encode(), hashlib.sha256).hexdigest()


def mask_name(name: str | None) -> str:
    """张三 → 张*, 张三明 → 张*明, 欧阳小明 → 欧**明; keeps first and (for 3+) last character."""
    n = (name or "").strip()
    if len(n) <= 1:
        return n
    if len(n) == 2:
        return n[0] + "*"
    return n[0] + "*" * (len(n) - 2) + n[-1]


def mask_id(id_number: str) -> str:
    """4401**********123X: the first 4 (province + city) and last 4 characters."""
    v = id_number.strip().upper()
    return v[:4] + "*" * (len(v) - 8) + v[-4:]


def mask_phone(phone: str | None) -> str | None:
    """138****5678 for mobiles; fixed lines keep their first 3 and last 2 digits."""
    if not phone:
        return None
    d = re.sub(r"\D", "", phone)
    if len(d) == 11:
        return d[:3] + "****" + d[-4:]
    return d[:3] + "*" * max(len(d) - 5, 1) + d[-2:]


def mask_many(kind: str, values):
    """:func:`mask_name` / :func:`mask_id` / :func:`mask_phone` of many values at once (an Arrow string
    array; bulk loads): the same output as the single-value functions for ``name``, for normalised ID
    numbers (``id``) and for phone numbers of digits only (``phone``); nulls stay null."""
    import pyarrow as pa
    import pyarrow.compute as pc

    v = pa.array(values, pa.string()) if not isinstance(values, pa.Array) else values
    n = pc.utf8_length(v)

    def cut(a, b=None):
        return pc.utf8_slice_codeunits(v, a, b)

    def stars(k):
        return pc.binary_repeat("*", pc.max_element_wise(k, 0))

    if kind == "id":
        return pc.binary_join_element_wise(cut(0, 4), stars(pc.subtract(n, 8)), cut(-4), "")
    if kind == "phone":
        mobile = pc.equal(n, 11)
        return pc.if_else(mobile, pc.binary_join_element_wise(cut(0, 3), "****", cut(-4), ""),
                          pc.binary_join_element_wise(cut(0, 3), stars(pc.max_element_wise(pc.subtract(n, 5), 1)),
                                                      cut(-2), ""))
    if kind == "name":
        v = pc.utf8_trim_whitespace(v)
        n = pc.utf8_length(v)
        masked = pc.binary_join_element_wise(cut(0, 1), stars(pc.max_element_wise(pc.subtract(n, 2), 1)),
                                             pc.if_else(pc.greater_equal(n, 3), cut(-1), ""), "")
        return pc.if_else(pc.less_equal(n, 1), v, masked)
    raise ValueError(f"kind must be name, id or phone, got {kind!r}")


_BUILDING_PREFIX = re.compile(r"^(.*?H\d{4}(?:B\d{3})?)")


def generalise_address(address_code: str | None) -> str | None:
    """The address code cut back to its building (…H0007B003), or to its house when it has no building."""
    if not address_code:
        return address_code
    m = _BUILDING_PREFIX.match(address_code)
    return m.group(1) if m else address_code


def age_band(birth_year: int | None, year: int) -> str | None:
    """0-14 / 15-34 / 35-59 / 60-79 / 80+ (the profile's bands)."""
    if birth_year is None:
        return None
    age = year - birth_year
    for hi, label in ((14, "0-14"), (34, "15-34"), (59, "35-59"), (79, "60-79")):
        if age <= hi:
            return label
    return "80+"


def in_scope(user, area_code: str | None) -> bool:
    """True when ``area_code`` lies inside the user's scope (prefix rule; admin/analyst unscoped = city)."""
    from gridserver.auth.deps import user_in_scope

    return user_in_scope(user, area_code)


def view_for(user, area_code: str) -> str:
    """What ``user`` may see of personal records in area ``area_code`` (a grid or a parent area)."""
    if user is None:
        return NONE
    role = user.role
    if role == "admin":
        return FULL
    if role == "analyst":
        return DEIDENTIFIED
    if role in _FULL_IN_SCOPE or role == "dept_handler":
        if user.scope_code and area_code.startswith(user.scope_code):
            return FULL if role != "dept_handler" else MASKED
        return NONE
    return NONE


def can_see_aggregates(user, area_code: str) -> bool:
    """Profiles (counts only): analysts anywhere, staff whose scope overlaps the area, never citizens."""
    if user is None or user.role == "citizen":
        return False
    if user.role in ("admin", "analyst"):
        return user.scope_code is None or area_code.startswith(user.scope_code) or user.scope_code.startswith(area_code)
    if not user.scope_code:
        return False
    return area_code.startswith(user.scope_code) or user.scope_code.startswith(area_code)


def shape_person(row: dict, view: str, year: int) -> dict:
    """A person row as ``view`` allows. ``row`` has the table's columns (no raw ID/phone ever exists)."""
    if view == FULL:
        out = {k: row.get(k) for k in ("id", "name", "id_masked", "phone_masked", "sex", "birth_year", "residence",
                                       "household_code", "house_code", "building_code", "address_code", "grid_code",
                                       "source", "confirmed_at")}
        out["person"] = row.get("id_hash")
        out["tags"] = row.get("tags") or []
        return out
    if view == MASKED:
        return {"id": row.get("id"), "name": row.get("name_masked"), "id_masked": row.get("id_masked"),
                "phone_masked": row.get("phone_masked"), "sex": row.get("sex"),
                "age_band": age_band(row.get("birth_year"), year), "residence": row.get("residence"),
                "household_code": row.get("household_code"), "house_code": row.get("house_code"),
                "building_code": row.get("building_code"), "address_code": row.get("address_code"),
                "grid_code": row.get("grid_code"), "tags": row.get("tags") or []}
    if view == DEIDENTIFIED:
        return {"sex": row.get("sex"), "age_band": age_band(row.get("birth_year"), year),
                "residence": row.get("residence"),
                "building_code": row.get("building_code"),
                "address_code": generalise_address(row.get("address_code")),
                "grid_code": row.get("grid_code"), "tags": row.get("tags") or []}
    raise PermissionError("no view")


def shape_household(row: dict, view: str) -> dict:
    keys = ("household_code", "house_code", "building_code", "address_code", "grid_code", "kind", "members",
            "source", "confirmed_at")
    out = {k: row.get(k) for k in keys}
    if view == DEIDENTIFIED:
        out.pop("household_code")
        out.pop("house_code")
        out["address_code"] = generalise_address(out["address_code"])
    return out


def shape_building(row: dict, view: str) -> dict:
    """Buildings hold no personal data: the same fields for every view that sees the area."""
    return {k: row.get(k) for k in ("building_code", "address_code", "name", "floors", "use", "year_built",
                                    "grid_code", "source", "confirmed_at", "households", "people")
            if k in row}


def shape_business(row: dict, view: str) -> dict:
    """Businesses are public register data; de-identified rows keep name and code, address → building."""
    out = {k: row.get(k) for k in ("credit_code", "name", "category", "address_code", "building_code",
                                   "house_code", "grid_code", "source", "confirmed_at", "lon", "lat") if k in row}
    if view == DEIDENTIFIED:
        out["address_code"] = generalise_address(out.get("address_code"))
        out.pop("house_code", None)
    return out
