"""Match address texts to the standard base, in bulk: exact → alias → compatible → fuzzy → spatial.

For a batch of rows (text, optional WGS84 point):

1. **normalise and parse** all texts in one parser call; reduce to parts and a match key
   (:mod:`gridserver.address.keys`); resolve the road against the base's road names and aliases.
2. **reject** rows with nothing to match on (empty, no road and no point) or that name another
   district/city, or whose point lies outside every district of the base.
3. **exact**, set-based in SQL on a temp table loaded by COPY: the key equals a live address's key,
   or the normalised text/key equals an alias's → matched, score 100.
4. **compatible**: same road and level, and every part the row gives equals the candidate's (the row
   may lack levels, e.g. no unit). One candidate → matched (score 92); several → review.
5. **spatial** (rows with a point): live addresses within 30 m (EPSG:4547 metres) whose parts are
   compatible. One → matched (score 90 − distance/3); several → review.
6. **fuzzy**: rapidfuzz ``extractOne`` over the keys of same-road, same-number, same-level
   candidates. A close one (≥ 90) goes to review — a digit typo cannot be told from a real
   neighbour — otherwise the row is **new** (a pending standard address is created by the importer)
   when its road is known and it has a house number, else it needs review.

A fuzzy road (typo) keeps every road within rapidfuzz ratio 65 as an alternative; the row matches
only if one alternative gives a hit (or the closest spelling is clearly closest), 12 points lower.
Scores ≥ :data:`MATCH_THRESHOLD` are matches; a row is never matched below it.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process
from sqlalchemy import text

from gridserver.address.base import city_name, copy_rows, road_gazetteer
from gridserver.address.keys import FIELDS, AddressParts, RoadGazetteer, ancestor_keys, apply_number_tail
from gridserver.address.normalize import normalize_address
from gridserver.address.parsing import parse_parts

MATCH_THRESHOLD = 85.0
#: How many candidate roads the gazetteer lists for a misspelt road (``RoadGazetteer.resolve``'s limit).
ROAD_CANDIDATES = 5
#: A misspelt road counts as the closest known road only when it is this much closer than the others.
CLEAR_ROAD_LEAD = 10.0
FUZZY_REVIEW = 90.0
SPATIAL_RADIUS_M = 30.0


@dataclass
class RowIn:
    """One address to match: text and an optional point already converted to WGS84."""

    idx: int
    text: str
    lon: float | None = None
    lat: float | None = None


@dataclass
class Match:
    idx: int
    normalised: str = ""
    parts: AddressParts | None = None
    key: str | None = None
    status: str = ""                 # matched / new / review / rejected ('' while undecided)
    method: str | None = None        # exact / alias / compatible / spatial / fuzzy
    score: float | None = None
    address_id: int | None = None
    candidate_id: int | None = None
    reason: str | None = None
    alternatives: list[tuple[str, float]] = field(default_factory=list)
    #: the same numbers exist on a road whose name has one character more (麓湖路12号 → 麓湖横路12号):
    #: (road, address id) — a missing character is then as likely as a new address
    near: list[tuple[str, int]] = field(default_factory=list)
    all_close_roads: bool = False    # ``alternatives`` holds every road about as close as the best
    written_road: str = ""           # the road as the parser read it, when it had to be guessed from

    def parsed(self) -> dict:
        if self.parts is None:
            return {}
        d = {k: v for k, v in self.parts.values().items() if v}
        d.update({k: v for k, v in self.parts.upper.items()})
        if self.parts.poi:
            d["poi"] = self.parts.poi
        d["road_how"] = self.parts.road_how
        return d


class AreaNames:
    """District and city names of the base, to tell an address in another district."""

    def __init__(self, conn):
        rows = conn.execute(text("SELECT code, name FROM admin_areas WHERE level = 'district' AND valid_to IS NULL")).all()
        self.districts = {_bare(r.name) for r in rows}
        # the cities of those districts (from their codes), without suffix: 广州
        self.cities = {_bare(c) for c in (city_name(r.code) for r in rows) if c}
        self.any_area = conn.execute(text("SELECT EXISTS (SELECT 1 FROM admin_areas WHERE valid_to IS NULL)")).scalar()

    def outside(self, parts: AddressParts) -> str | None:
        """Why the address is in another district or city, or None. A name that starts with one of
        ours counts as ours: written without suffixes (广州越秀寺右二马路) the parser may run the
        district into the road (district 越秀寺右二马路)."""
        d = parts.upper.get("district")
        # 广州 read as a district (广州越秀…, no suffixes: the tagger may mistake the level) names our city
        if d and self.districts and not self._ours(d, self.cities | self.districts):
            return f"outside the district: names {d}"
        c = parts.upper.get("city")
        if c and self.cities and not self._ours(c, self.cities):
            return f"outside the district: names city {c}"
        return None

    @staticmethod
    def _ours(name: str, prefixes: set[str]) -> bool:
        return any(_bare(name).startswith(x) for x in prefixes if x)


def _bare(name: str) -> str:
    return re.sub("(省|市|区|县)$", "", normalize_address(name))


def prepare(rows: Sequence[RowIn], gazetteer: RoadGazetteer, areas: AreaNames | None) -> list[Match]:
    """Normalise, parse (one batch), resolve roads and reject the hopeless; no database access."""
    out = [Match(idx=r.idx, normalised=normalize_address(r.text or "")) for r in rows]
    todo = [m for m in out if m.normalised]
    for m in out:
        if not m.normalised:
            m.status, m.reason = "rejected", "unparseable: empty address"
    # Identical texts are parsed once: departmental tables repeat addresses (one per person).
    distinct = list(dict.fromkeys(m.normalised for m in todo))
    parsed = dict(zip(distinct, parse_parts(distinct)))
    has_point = {r.idx: r.lon is not None for r in rows}
    for m in todo:
        p = parsed[m.normalised]
        m.parts = AddressParts(**{**p.__dict__, "upper": dict(p.upper)})
        why = areas.outside(m.parts) if areas else None
        if why:
            m.status, m.reason = "rejected", why
            continue
        m.alternatives = gazetteer.resolve(m.parts, m.normalised)
        written_road = m.parts.road_written
        if m.parts.road_how == "fuzzy" and written_road:
            m.written_road = written_road
            if len(m.alternatives) >= ROAD_CANDIDATES:  # the gazetteer's list may have been cut short
                m.alternatives = _all_close_roads(gazetteer, written_road, m.alternatives)
                m.all_close_roads = True
        apply_number_tail(m.parts, m.normalised)
        has_numbers = any(getattr(m.parts, f) for f in FIELDS[1:])
        if not has_numbers and re.search(r"\d", m.normalised.replace(m.parts.road, "")):
            # Digits the parser did not place: matching the bare road would be wrong.
            m.status, m.reason = "review", "house number present but not understood"
            continue
        if m.parts.road_how in ("unknown", "none") and not has_point[m.idx]:
            if m.parts.road_how == "none" and not has_numbers:
                m.status, m.reason = "rejected", "unparseable: no road and no house number found"
            elif m.parts.road_how == "none":
                m.status, m.reason = "rejected", "unparseable: no road name found"
            else:
                m.status, m.reason = "review", f"unknown road {m.parts.road}"
            continue
        if m.parts.road_how in ("exact", "alias", "substring", "fuzzy"):
            m.key = m.parts.key()
    return out


def _level_of(parts: AddressParts) -> str:
    lv = parts.level
    if lv:
        return lv
    deepest = "house"
    for f, lvl in zip(FIELDS[1:], ("house", "building", "unit", "floor", "room")):
        if getattr(parts, f):
            deepest = lvl
    return deepest


_TMP = ("idx", "alt", "road_score", "key", "parent_key", "norm", "level", "road", "house_no", "building", "unit",
        "floor", "room", "lon", "lat")


def match_rows(conn, rows: Sequence[RowIn], *, gazetteer: RoadGazetteer | None = None,
               areas: AreaNames | None = None) -> list[Match]:
    """Match rows to live standard addresses; returns one :class:`Match` per row, in input order.

    Reads only. ``status='new'`` means "no such address yet"; creating it is the caller's choice.
    """
    gazetteer = gazetteer or road_gazetteer(conn)
    areas = areas if areas is not None else AreaNames(conn)
    matches = prepare(rows, gazetteer, areas)
    by_idx = {m.idx: m for m in matches}
    points = {r.idx: (r.lon, r.lat) for r in rows if r.lon is not None}
    live = [m for m in matches if not m.status and (m.key or m.idx in points)]
    if not live:
        for m in matches:
            if not m.status:
                m.status, m.reason = "review", m.reason or "nothing to match on"
        return matches

    tmp_rows = []
    for m in live:
        p = m.parts
        lon, lat = points.get(m.idx, (None, None))
        vals = p.values()
        room_floor = "" if p.room else p.floor
        alts = m.alternatives if p.road_how == "fuzzy" else [(p.road, p.road_score)]
        if not m.key:
            alts = [("", 0.0)]
        for a, (road, score) in enumerate(alts):
            key = "|".join((road, vals["house_no"], vals["building"], vals["unit"], room_floor, vals["room"])) if road else ""
            chain = ancestor_keys(key) if key else []
            parent_key = chain[-2][1] if len(chain) > 1 else ""
            tmp_rows.append((m.idx, a, score, key, parent_key, m.normalised, _level_of(p), road, vals["house_no"],
                             vals["building"], vals["unit"], room_floor, vals["room"], lon, lat))
    conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS tmp_match (idx int, alt int, road_score float8, key text, parent_key text, "
                      "norm text, level text, road text, house_no text, building text, unit text, floor text, "
                      "room text, lon float8, lat float8) ON COMMIT DROP"))
    conn.execute(text("TRUNCATE tmp_match"))
    copy_rows(conn, "tmp_match", _TMP, tmp_rows)
    conn.execute(text("CREATE INDEX IF NOT EXISTS tmp_match_idx ON tmp_match (idx)"))
    conn.execute(text("ANALYZE tmp_match"))

    _outside_points(conn, by_idx, areas)
    _exact(conn, by_idx)
    _compatible(conn, by_idx)
    if points:
        _spatial(conn, by_idx)
    _fuzzy_or_new(conn, by_idx)
    _near_miss_roads(conn, by_idx, gazetteer, points)
    conn.execute(text("TRUNCATE tmp_match"))
    for m in matches:
        if not m.status:
            m.status, m.reason = "review", m.reason or "no match"
    return matches


def _all_close_roads(gazetteer: RoadGazetteer, written: str, listed: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Every known road about as close to the written (misspelt) road as the best one: the gazetteer
    lists only a few, and an unlisted equally close road may hold the address too."""
    top = listed[0][1]
    hits = process.extract(written, gazetteer._spellings, scorer=fuzz.ratio, limit=None,
                           score_cutoff=max(gazetteer.FUZZY_CUTOFF, top - CLEAR_ROAD_LEAD))
    best: dict[str, float] = dict(listed)
    for spelling, score, _ in hits:
        name = gazetteer.canonical(spelling)
        best[name] = max(best.get(name, 0.0), float(score))
    return sorted(best.items(), key=lambda kv: -kv[1])


def one_char_longer(gazetteer: RoadGazetteer, road: str) -> list[str]:
    """Roads of the base whose name is ``road`` with one character added (麓湖路 → 麓湖横路, 中山路 → 中山四路)."""
    if not road:
        return []
    n = len(road)
    return [r for r in gazetteer.names if len(r) == n + 1 and any(r[:i] + r[i + 1:] == road for i in range(n + 1))]


def _near_miss_roads(conn, by_idx, gazetteer: RoadGazetteer, points: dict | None = None) -> None:
    """Rows about to become new addresses (or left unmatched) whose numbers exist on a road one
    character longer: a dropped character is as likely as a new house, so they go to review, and
    :attr:`Match.near` lists the other road's address (the geocoder answers "ambiguous").

    The same holds for a row matched by its text (exact, compatible) when the road one
    character longer has the very same numbers (文德路3号A栋1层 and 文德东路3号A栋1层 both exist): the
    text cannot tell a correctly written 文德路 from a 文德东路 missing a character, so the match is
    not made and the row goes to review — unless its point lies within
    :data:`SPATIAL_RADIUS_M` of the matched address, which confirms it."""
    want: dict[str, list[Match]] = defaultdict(list)
    for m in by_idx.values():
        if not m.key or m.parts is None or m.parts.road_how == "fuzzy":
            continue
        if m.status not in ("new", "review") and not (
                m.status == "matched" and m.method in ("exact", "compatible")):
            continue
        vals = m.key.split("|")
        for road in one_char_longer(gazetteer, vals[0]):
            want["|".join([road] + vals[1:])].append(m)
    if not want:
        return
    rows = conn.execute(text("SELECT match_key, id FROM std_addresses WHERE match_key = ANY(:k) AND status <> 'retired'"),
                        {"k": list(want)}).all()
    confirmed = _confirmed_by_point(conn, [m for ms in want.values() for m in ms if m.status == "matched"],
                                    points or {})
    for key, sid in rows:
        for m in want[key]:
            if m.status == "matched" and m.idx in confirmed:
                continue
            m.near.append((key.split("|")[0], sid))
            if m.status == "matched":
                road = key.split("|")[0]
                m.status, m.method, m.candidate_id, m.address_id = "review", "near-road", m.address_id, None
                m.score = min(m.score or 0.0, MATCH_THRESHOLD - 1)
                m.reason = (f"{m.parts.road} has this address, but so has {road}: "
                            f"a correct {m.parts.road} or a {road} missing a character?")
            elif m.status == "new":
                m.status, m.method, m.candidate_id = "review", "near-road", sid
                m.reason = f"not on {m.parts.road}, but {key.split('|')[0]} has this address: a missing character?"


def _confirmed_by_point(conn, matched: list[Match], points: dict) -> set[int]:
    """Indexes of the matched rows whose point lies within :data:`SPATIAL_RADIUS_M` of the matched address."""
    todo = [(m.idx, m.address_id, *points[m.idx]) for m in matched if m.idx in points and m.address_id]
    if not todo:
        return set()
    return set(conn.execute(text(
        """SELECT t.idx FROM unnest(CAST(:i AS int[]), CAST(:a AS bigint[]), CAST(:x AS float8[]), CAST(:y AS float8[]))
                  AS t(idx, aid, lon, lat)
           JOIN std_addresses s ON s.id = t.aid
           WHERE ST_Distance(ST_Transform(s.geom, 4547),
                             ST_Transform(ST_SetSRID(ST_MakePoint(t.lon, t.lat), 4326), 4547)) <= :r"""),
        {"i": [t[0] for t in todo], "a": [t[1] for t in todo], "x": [t[2] for t in todo],
         "y": [t[3] for t in todo], "r": SPATIAL_RADIUS_M}).scalars())


def _outside_points(conn, by_idx, areas) -> None:
    if not areas or not areas.any_area:
        return
    rows = conn.execute(text(
        """SELECT DISTINCT m.idx FROM tmp_match m
           WHERE m.lon IS NOT NULL AND NOT EXISTS (
               SELECT 1 FROM admin_areas a WHERE a.level = 'district' AND a.valid_to IS NULL
               AND ST_Covers(a.geom, ST_SetSRID(ST_MakePoint(m.lon, m.lat), 4326)))""")).scalars()
    for i in rows:
        m = by_idx[i]
        m.status, m.reason = "rejected", "outside the district: the point is not in any district of the base"


def _settle(m: Match, hits: dict[int, list[tuple]], method: str, base_score: float) -> None:
    """Decide from per-alternative hits: exactly one address → matched, more → review.

    With a misspelt road, hits on several alternative roads are resolved in favour of the closest
    spelling only when it is clearly closer (rapidfuzz ratio at least 10 above the next).
    """
    fuzzy_road = m.parts is not None and m.parts.road_how == "fuzzy"
    if fuzzy_road and len(m.alternatives) == ROAD_CANDIDATES and not m.all_close_roads and \
            m.alternatives[0][1] - m.alternatives[-1][1] < CLEAR_ROAD_LEAD:
        # as many equally close roads as the gazetteer lists (中山路 → 中山一路 … 中山八路): the ones
        # not listed may hold the address as well, so a single hit proves nothing
        best = max((h for hs in hits.values() for h in hs), key=lambda h: h[1])
        m.status, m.method, m.candidate_id = "review", method, best[0]
        m.score = min(best[1], MATCH_THRESHOLD - 1)
        m.reason = f"ambiguous road: {len(m.alternatives)}+ roads as close as {m.alternatives[0][0]}"
        return
    if fuzzy_road and 0 < len(m.written_road) < 3 and (m.parts.poi or {"town", "community"} & set(m.parts.upper)):
        # a two-character "road" after a place name (中街 of 邮电新村中街: 邮电新村 read as a community)
        # is a fragment: the real road may not be among the candidates at all, so a hit on one of
        # them proves nothing
        best = max((h for hs in hits.values() for h in hs), key=lambda h: h[1])
        m.status, m.method, m.candidate_id = "review", method, best[0]
        m.score = min(best[1], MATCH_THRESHOLD - 1)
        m.reason = f"road {m.written_road!r} is too short to be corrected with confidence"
        return
    if fuzzy_road and len(hits) > 1:
        alt_score = {a: s for a, (_, s) in enumerate(m.alternatives)}
        ranked = sorted(hits, key=lambda a: -alt_score.get(a, 0.0))
        if alt_score.get(ranked[0], 0.0) - alt_score.get(ranked[1], 0.0) >= CLEAR_ROAD_LEAD:
            hits = {ranked[0]: hits[ranked[0]]}
    ids = {h[0] for hs in hits.values() for h in hs}
    if len(ids) == 1:
        score = base_score - (12.0 if fuzzy_road else 0.0)
        m.address_id = next(iter(ids))
        m.method, m.score = method, score
        m.status = "matched" if score >= MATCH_THRESHOLD else "review"
        if m.status == "review":
            m.candidate_id, m.address_id = m.address_id, None
            m.reason = f"{method} match on a corrected road name, score {score:.0f}"
    else:
        best = max((h for hs in hits.values() for h in hs), key=lambda h: h[1])
        m.status, m.method, m.candidate_id = "review", method, best[0]
        m.score = min(best[1], MATCH_THRESHOLD - 1)
        m.reason = f"ambiguous: {len(ids)} candidate addresses"


def _exact(conn, by_idx) -> None:
    rows = conn.execute(text(
        """SELECT m.idx, m.alt, s.id, 'exact' AS how FROM tmp_match m
           JOIN std_addresses s ON s.match_key = m.key AND s.status <> 'retired' WHERE m.key <> ''
           UNION
           SELECT m.idx, m.alt, s.id, 'alias' FROM tmp_match m
           JOIN address_aliases al ON al.match_key = m.key JOIN std_addresses s ON s.id = al.address_id
           WHERE m.key <> '' AND s.status <> 'retired'
           UNION
           SELECT m.idx, m.alt, s.id, 'alias' FROM tmp_match m
           JOIN address_aliases al ON al.normalised = m.norm JOIN std_addresses s ON s.id = al.address_id
           WHERE m.alt = 0 AND s.status <> 'retired'""")).all()
    hits: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    how: dict[int, str] = {}
    for idx, alt, sid, h in rows:
        hits[idx][alt].append((sid, 100.0))
        how[idx] = "exact" if h == "exact" or how.get(idx) == "exact" else "alias"
    for idx, per_alt in hits.items():
        if by_idx[idx].status != "rejected":  # e.g. its point is outside the district
            _settle(by_idx[idx], per_alt, how[idx], 100.0)


def _compatible(conn, by_idx) -> None:
    todo = [i for i, m in by_idx.items() if m.status not in ("matched", "rejected") and m.method is None and m.key]
    if not todo:
        return
    rows = conn.execute(text(
        """SELECT m.idx, m.alt, s.id, s.match_key, m.key FROM tmp_match m
           JOIN std_addresses s ON s.road_key = m.road AND s.level = m.level AND s.status <> 'retired'
                AND (m.house_no = '' OR s.house_no = m.house_no)
                AND (m.building = '' OR s.building = m.building)
                AND (m.unit = '' OR s.unit = m.unit)
                AND (m.room = '' OR s.room = m.room)
                AND (m.floor = '' OR s.floor = m.floor)
           WHERE m.idx = ANY(:todo) AND m.road <> ''"""), {"todo": todo}).all()
    hits: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for idx, alt, sid, skey, mkey in rows:
        hits[idx][alt].append((sid, fuzz.ratio(skey, mkey)))
    for idx, per_alt in hits.items():
        _settle(by_idx[idx], per_alt, "compatible", 92.0)


def _spatial(conn, by_idx) -> None:
    todo = [i for i, m in by_idx.items() if m.status not in ("matched", "rejected") and m.method is None]
    if not todo:
        return
    # the road must agree too when the row names one (any of its spellings' candidates): the same
    # number 30 m away on the next street is another house
    rows = conn.execute(text(
        """SELECT DISTINCT m.idx, s.id, s.match_key, d.dist FROM (SELECT * FROM tmp_match
                                                                  WHERE idx = ANY(:todo) AND lon IS NOT NULL) m
           CROSS JOIN LATERAL (SELECT ST_SetSRID(ST_MakePoint(m.lon, m.lat), 4326) AS pt) p
           JOIN std_addresses s ON ST_DWithin(s.geom, p.pt, 0.0006) AND s.status <> 'retired' AND s.level = m.level
                AND (m.road = '' OR s.road_key = m.road)
                AND (m.house_no = '' OR s.house_no = m.house_no)
                AND (m.building = '' OR s.building = m.building)
                AND (m.unit = '' OR s.unit = m.unit)
                AND (m.room = '' OR s.room = m.room)
           CROSS JOIN LATERAL (SELECT ST_Distance(ST_Transform(s.geom, 4547), ST_Transform(p.pt, 4547)) AS dist) d
           WHERE d.dist <= :r AND (m.house_no <> '' OR m.building <> '')"""),
        {"todo": todo, "r": SPATIAL_RADIUS_M}).all()
    hits: dict[int, list] = defaultdict(list)
    for idx, sid, skey, dist in rows:
        hits[idx].append((sid, 90.0 - dist / 3.0))
    for idx, hs in hits.items():
        m = by_idx[idx]
        if len(hs) == 1 and m.parts is not None and m.parts.road_how == "unknown":
            # a road is written but none of ours is like it: the address near the point is on some
            # road of ours, so it may be another house with the same numbers
            m.status, m.method, m.candidate_id = "review", "spatial", hs[0][0]
            m.score = min(hs[0][1], MATCH_THRESHOLD - 1)
            m.reason = f"an address with these numbers lies near the point, but road {m.parts.road!r} is unknown"
        elif len(hs) == 1:
            m.status, m.method, m.address_id, m.score = "matched", "spatial", hs[0][0], hs[0][1]
        else:
            best = max(hs, key=lambda h: h[1])
            m.status, m.method, m.candidate_id, m.score = "review", "spatial", best[0], min(best[1], MATCH_THRESHOLD - 1)
            m.reason = f"ambiguous: {len(hs)} addresses within {SPATIAL_RADIUS_M:.0f} m"


def _fuzzy_or_new(conn, by_idx) -> None:
    todo = [i for i, m in by_idx.items() if m.status not in ("matched", "rejected") and m.method is None]
    if not todo:
        return
    rows = conn.execute(text(
        """SELECT m.idx, m.alt, s.id, s.match_key FROM tmp_match m
           JOIN std_addresses s ON s.road_key = m.road AND s.house_no = m.house_no AND s.level = m.level
                AND s.status <> 'retired'
           WHERE m.idx = ANY(:todo) AND m.house_no <> '' AND m.road <> ''"""), {"todo": todo}).all()
    cands: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for idx, alt, sid, skey in rows:
        cands[idx].append((sid, skey))
    # Rows whose parent address exists exactly: only their last part is new (a new room in a known unit).
    parent_known = set(conn.execute(text(
        """SELECT m.idx FROM tmp_match m JOIN std_addresses s ON s.match_key = m.parent_key AND s.status <> 'retired'
           WHERE m.idx = ANY(:todo) AND m.alt = 0"""), {"todo": todo}).scalars())
    for idx in todo:
        m = by_idx[idx]
        p = m.parts
        best = None
        if cands.get(idx):
            keys = [k for _, k in cands[idx]]
            best = process.extractOne(m.key or "", keys, scorer=fuzz.ratio)
        known_road = p is not None and m.key and p.road_how in ("exact", "alias", "substring") and p.house_no
        if best and best[1] >= FUZZY_REVIEW and not (known_road and idx in parent_known):
            m.status, m.method, m.score = "review", "fuzzy", float(best[1]) * 0.9
            m.candidate_id = cands[idx][best[2]][0]
            m.reason = f"close to an existing address (similarity {best[1]:.0f})"
        elif known_road:
            m.status, m.method, m.score = "new", "new", None
            m.reason = "no such address in the base"
            if best:
                m.candidate_id = cands[idx][best[2]][0]
        else:
            m.status = "review"
            if p is not None and p.road_how == "fuzzy":
                m.reason = f"road {p.road!r} guessed from a misspelling, no address on it matches"
            elif p is not None and not p.house_no:
                m.reason = "no house number: cannot place the address"
            else:
                m.reason = m.reason or "no match"
            if best:
                m.candidate_id = cands[idx][best[2]][0]
                m.score = float(best[1]) * 0.9
