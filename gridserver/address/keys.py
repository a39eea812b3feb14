"""Address parts and match keys: what the matcher compares.

A parsed address (parser components, see :mod:`gridserver.address.parser`) is reduced to six
normalised parts — road, house number, building, unit, floor, room — and a **match key**
``road|house|building|unit|floor|room``. Two spellings of the same address give the same key:

* numbers are kept as bare digits or a single Latin letter (``十三号`` → ``13``, ``Ａ座`` → ``A``,
  ``3号楼``/``3栋``/``3幢``/``3座`` → ``3``, ``501房``/``501室`` → ``501``);
* the floor is dropped from the key when a room is given (``5楼501室`` and ``501室`` are one room);
* upper levels (province, city, district, street, community) are not in the key: road names are
  unique within the base, and the area codes come from the location.

The road is resolved against the base's own road names and road aliases (:class:`RoadGazetteer`),
which corrects parser slips and old names before the key is built.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

from gridserver.address.normalize import normalize_address

#: Key fields from the top down; the level of an address is its deepest non-empty field.
FIELDS = ("road", "house_no", "building", "unit", "floor", "room")
LEVELS = ("road", "house", "building", "unit", "floor", "room")
LEVEL_OF_FIELD = dict(zip(FIELDS, LEVELS))
FIELD_OF_LEVEL = dict(zip(LEVELS, FIELDS))
#: Written suffix of each level in the standard form.
SUFFIX = {"house_no": "号", "building": "栋", "unit": "单元", "floor": "层", "room": "室"}
#: Parser labels that carry each part.
LABEL_FOR = {"road": "road", "house_no": "roadno", "building": "houseno", "unit": "cellno",
             "floor": "floorno", "room": "roomno"}

_HOUSE = re.compile(r"(\d+(?:-\d+)?)")
_TOKEN = re.compile(r"(\d+|[A-Z])")
_ROOM = re.compile(r"([A-Z]?\d+[A-Z]?)")


def canon_part(fieldname: str, text: str | None) -> str:
    """The canonical value of one part: bare digits (``13``, ``13-1``) or a letter (``A``), else ''."""
    if not text:
        return ""
    t = normalize_address(text)
    if fieldname == "road":
        return t
    if fieldname == "house_no":
        t = t.replace("之", "-")
        m = _HOUSE.search(t)
    elif fieldname == "room":
        m = _ROOM.search(t)
    else:
        m = _TOKEN.search(t)
    return m.group(1) if m else ""


@dataclass
class AddressParts:
    """Normalised parts of one address, plus what the parser said about the areas above the road."""

    road: str = ""
    house_no: str = ""
    building: str = ""
    unit: str = ""
    floor: str = ""
    room: str = ""
    upper: dict[str, str] = field(default_factory=dict)   # prov/city/district/town/community text
    poi: str = ""
    road_how: str = ""          # how the road was resolved: exact / alias / substring / fuzzy / unknown / none
    road_score: float = 100.0
    road_end: int = -1          # where the road's spelling ends in the normalised text (-1: not found)
    #: the spelling a fuzzy road was corrected from: the parser's road, or the longer span it was cut
    #: from (:func:`_span_to`); '' when the parser read no road and it was guessed from the text
    road_written: str = ""

    @property
    def level(self) -> str | None:
        """Deepest level present, or None when there is no road."""
        if not self.road:
            return None
        deepest = "road"
        for f in FIELDS[1:]:
            if getattr(self, f):
                deepest = LEVEL_OF_FIELD[f]
        return deepest

    def key(self) -> str:
        """The match key; the floor is left out when a room is present."""
        return make_key(self.road, self.house_no, self.building, self.unit,
                        "" if self.room else self.floor, self.room)

    def values(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in FIELDS}


def make_key(road: str, house_no: str = "", building: str = "", unit: str = "", floor: str = "",
             room: str = "") -> str:
    return "|".join((road, house_no, building, unit, floor, room))


def key_fields(key: str) -> dict[str, str]:
    return dict(zip(FIELDS, key.split("|")))


def ancestor_keys(key: str) -> list[tuple[str, str]]:
    """``(level, key)`` for the address and every level above it that is present, top down."""
    vals = key.split("|")
    out = []
    for i, f in enumerate(FIELDS):
        if vals[i]:
            out.append((LEVEL_OF_FIELD[f], "|".join(vals[: i + 1] + [""] * (len(FIELDS) - i - 1))))
    return out


def standard_text(upper: str, road: str, house_no: str = "", building: str = "", unit: str = "",
                  floor: str = "", room: str = "") -> str:
    """The standard written form: ``广东省广州市越秀区中山四路13号3栋2单元5层501室``."""
    parts = [upper, road]
    for f, v in (("house_no", house_no), ("building", building), ("unit", unit), ("floor", floor),
                 ("room", room)):
        if v:
            parts.append(v + SUFFIX[f])
    return "".join(parts)


def level_name(levelfield: str, value: str) -> str:
    return value if levelfield == "road" else value + SUFFIX[levelfield]


def parts_from_components(components) -> AddressParts:
    """Reduce parser components (objects with ``label``/``text`` or dicts) to :class:`AddressParts`.

    The first component of each label wins, except that a ``subroad`` stands in for a missing road
    and a ``subroadno`` for a missing road number.
    """
    first: dict[str, str] = {}
    for c in components:
        label, text = (c.label, c.text) if hasattr(c, "label") else (c["label"], c["text"])
        first.setdefault(label.lower(), text)
    road_text = first.get("road") or first.get("subroad") or ""
    roadno = first.get("roadno") or (first.get("subroadno") if not first.get("road") else "") or ""
    p = AddressParts(
        road=canon_part("road", road_text),
        house_no=canon_part("house_no", roadno),
        building=canon_part("building", first.get("houseno")),
        unit=canon_part("unit", first.get("cellno")),
        floor=canon_part("floor", first.get("floorno")),
        room=canon_part("room", first.get("roomno")),
        upper={k: normalize_address(first[k]) for k in ("prov", "city", "district", "town", "community")
               if first.get(k)},
        poi=normalize_address(first.get("poi", "")),
    )
    return p


class RoadGazetteer:
    """The base's road names and road aliases; corrects the parser's road before keys are built.

    ``names`` are the normalised road names of live road-level addresses; ``aliases`` maps a
    normalised alias (old name, variant) to its road's name.
    """

    FUZZY_CUTOFF = 65.0

    def __init__(self, names, aliases: dict[str, str] | None = None):
        self.names = sorted(set(names), key=lambda s: (-len(s), s))
        self.name_set = set(self.names)
        self.aliases = dict(aliases or {})
        # Longest first, so 东风东路 wins over 东风路 when both start at the same place in a text.
        self._spellings = sorted(set(self.names) | set(self.aliases), key=lambda s: (-len(s), s))
        self._anywhere = re.compile("|".join(map(re.escape, self._spellings))) if self._spellings else None

    def canonical(self, spelling: str) -> str:
        return spelling if spelling in self.name_set else self.aliases.get(spelling, spelling)

    def resolve(self, parts: AddressParts, normalised_text: str) -> list[tuple[str, float]]:
        """Resolve ``parts.road`` in place; return other plausible roads (name, score) when fuzzy.

        Order: a known name or alias written in the text that contains the parser's road (the
        parser may cut 北京路商业步行街 to 北京路) → the parser's road as is → as an alias → any known
        spelling in the text → fuzzy (rapidfuzz ratio ≥ 65) on the parser's road. A fuzzy result sets
        ``road_how='fuzzy'`` and returns every candidate above the cutoff, so the matcher can let the
        house number decide between, say, 中山四路 and 中山五路. Also records where the road's
        spelling ends in the text (``road_end``), for :func:`apply_number_tail`.
        """
        road = parts.road
        found = list(self._anywhere.finditer(normalised_text)) if self._anywhere else []
        if road:
            for m in found:
                if road in m.group(0):
                    parts.road = self.canonical(m.group(0))
                    parts.road_how = "exact" if m.group(0) == road and road in self.name_set else (
                        "alias" if m.group(0) in self.aliases and m.group(0) == road else "substring")
                    parts.road_end = m.end()
                    return []
        if road and road in self.name_set:
            parts.road_how = "exact"
            parts.road_end = _end_of(normalised_text, road)
            return []
        if road and road in self.aliases:
            parts.road, parts.road_how = self.aliases[road], "alias"
            parts.road_end = _end_of(normalised_text, road)
            return []
        if found:
            parts.road, parts.road_how = self.canonical(found[0].group(0)), "substring"
            parts.road_end = found[0].end()
            return []
        tagged = bool(road)
        if not road:  # the tagger found no road: try the words between the areas and the first number
            road = _road_guess(normalised_text, parts.upper)
        if road and self.names:
            def closest(spelling: str) -> list:
                return process.extract(spelling, self._spellings, scorer=fuzz.ratio, limit=5,
                                       score_cutoff=self.FUZZY_CUTOFF)

            hits = closest(road)
            # The tagger may have cut the road's first characters off as a place name (广州地一达道 →
            # poi 广州地 + road 一达道): the whole span from the areas to the road's end is corrected
            # too, and the closer of the two spellings is the one used.
            span = _span_to(normalised_text, parts.upper, road) if tagged else road
            if span != road:
                span_hits = closest(span)
                if span_hits and (not hits or span_hits[0][1] > hits[0][1]):
                    road, hits = span, span_hits
            if hits:
                cands: dict[str, float] = {}
                for spelling, score, _ in hits:
                    name = self.canonical(spelling)
                    cands[name] = max(cands.get(name, 0.0), float(score))
                ranked = sorted(cands.items(), key=lambda kv: -kv[1])
                parts.road_end = _end_of(normalised_text, road)
                parts.road, parts.road_score, parts.road_how = ranked[0][0], ranked[0][1], "fuzzy"
                parts.road_written = road if tagged else ""
                return ranked
        parts.road_how = "unknown" if road else "none"
        return []


def _road_guess(text: str, upper: dict[str, str]) -> str:
    for v in sorted(upper.values(), key=len, reverse=True):
        text = text.replace(v, "")
    text = re.sub(r"^(广东省?|广州市?|越秀区?)+", "", text)
    m = re.match(r"^([^\d]{2,12}?)(?=\d)", text)
    return m.group(1) if m else ""


def _span_to(text: str, upper: dict[str, str], road: str) -> str:
    """The text from the end of the last area name written before ``road`` to the end of ``road``
    (``越秀区广州地一达道12号``, road 一达道 → 广州地一达道); ``road`` itself when it is not in the text
    or the span would be longer than a road name."""
    i = text.find(road)
    if i <= 0:
        return road
    start = 0
    for v in upper.values():
        j = text.rfind(v, 0, i)
        if v and j >= 0 and j + len(v) <= i:
            start = max(start, j + len(v))
    span = text[start:i + len(road)]
    return span if len(span) <= 12 and not re.search(r"\d", span) else road


def _end_of(text: str, part: str) -> int:
    i = text.find(part)
    return -1 if i < 0 else i + len(part)


# What follows the road in a plain address: 13号 / 13-1号, 3栋|座|幢|号楼, 2单元, 5层|楼, 501室|房.
_TAIL = re.compile(r"^(?P<house_no>\d+(?:-\d+)?)号(?:(?P<building>[0-9A-Z]{1,3})(?:栋|座|幢|号楼))?"
                   r"(?:(?P<unit>\d{1,2})单元)?(?:(?P<floor>\d{1,2})(?:层|楼))?"
                   r"(?:(?P<room>[A-Z]?\d{1,5}[A-Z]?)(?:室|房|号)?)?$")


def apply_number_tail(parts: AddressParts, normalised_text: str) -> bool:
    """When the text after the road is a plain number sequence (``4号1栋1单元301室``), take the numbers
    from it rather than from the tagger, which was trained on other cities' addresses and may call
    ``4号`` after a short lane name a building. Returns True when the tail was used."""
    if parts.road_end < 0:
        return False
    m = _TAIL.match(normalised_text[parts.road_end:].replace("之", "-"))
    if not m:
        return False
    for f in FIELDS[1:]:
        setattr(parts, f, m.group(f) or "")
    return True
