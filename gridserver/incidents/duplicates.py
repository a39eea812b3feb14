"""Duplicate detection (查重): is a new report the same problem as one already filed?

Candidates: reports in the same top-level category within ``RADIUS_M`` metres and ``WINDOW_H`` hours
that are not finished or merged. Each gets a score in [0, 1]:

    score = 0.55 · text + 0.30 · (1 − distance / RADIUS_M) + 0.15 · (1 − hours / WINDOW_H)
            + 0.10 if the same taxonomy item (capped at 1)

where ``text`` is rapidfuzz's ``token_set_ratio`` over character bigrams of the two descriptions
(Chinese has no spaces; bigrams make word order and small insertions matter little). A candidate
with score ≥ ``THRESHOLD`` is a likely duplicate. ``score_pair`` is pure (no database) so it can be
measured on generated data with known duplicates (``evaluate``).
"""

from __future__ import annotations

import math
import re

from rapidfuzz import fuzz
from sqlalchemy import text

RADIUS_M = 150.0
WINDOW_H = 72.0
THRESHOLD = 0.62
_PUNCT = re.compile(r"[\s，。、！？,.!?;；:：（）()\"“”'‘’]+")


def _bigrams(s: str) -> str:
    s = _PUNCT.sub("", s or "")
    if len(s) < 2:
        return s
    return " ".join(s[i:i + 2] for i in range(len(s) - 1))


def text_similarity(a: str, b: str, *, a_bigrams: str | None = None) -> float:
    """0–1 similarity of two Chinese descriptions (``a_bigrams``: ``a``'s bigrams, when already made)."""
    if not (a or "").strip() or not (b or "").strip():
        return 0.0
    return fuzz.token_set_ratio(_bigrams(a) if a_bigrams is None else a_bigrams, _bigrams(b)) / 100.0


def score_pair(desc_a: str, desc_b: str, distance_m: float, hours: float, same_item: bool, *,
               a_bigrams: str | None = None) -> float:
    """Duplicate score of two reports of the same category (see the module formula)."""
    if distance_m > RADIUS_M or abs(hours) > WINDOW_H:
        return 0.0
    s = (0.55 * text_similarity(desc_a, desc_b, a_bigrams=a_bigrams) + 0.30 * (1 - distance_m / RADIUS_M)
         + 0.15 * (1 - abs(hours) / WINDOW_H) + (0.10 if same_item else 0.0))
    return round(min(1.0, s), 4)


#: Candidate rows for a report at (:lon, :lat) of :category at :at (a fragment: intake runs it inside its one
#: context statement, ``incidents/intake.py``); :dup_deg is the bounding distance in degrees (``search_deg``).
CANDIDATES_SQL = f"""
    SELECT i.id, i.description, i.item_code, i.status, i.created_at, i.tracking_code,
           ST_Distance(ST_Transform(i.geom, 4547), ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 4547)) AS d,
           EXTRACT(EPOCH FROM (:at - i.created_at)) / 3600.0 AS hours,
           (SELECT a.id FROM incident_attachments a WHERE a.incident_id = i.id
             AND a.content_type LIKE 'image/%' ORDER BY a.id LIMIT 1) AS photo
    FROM (SELECT * FROM incidents i  -- the open reports around the point first (index incidents_open_geom):
          WHERE ST_DWithin(i.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :dup_deg)
            AND i.status NOT IN ('closed', 'rated', 'merged')
          OFFSET 0) i                -- not every report of the category city-wide in the window
    WHERE i.category = :category AND i.id <> :exclude
      AND i.created_at BETWEEN :at - make_interval(hours => {int(WINDOW_H)}) AND :at + make_interval(hours => 1)
"""
_CANDIDATES = text(CANDIDATES_SQL)


def search_deg(lat: float) -> float:
    """A distance in degrees that surely covers RADIUS_M metres at latitude ``lat`` (index prefilter)."""
    return RADIUS_M / 100000.0 / math.cos(math.radians(lat)) * 1.2


def photo_url(row) -> str | None:
    """URL of the thumbnail of a candidate's first photo (made on first request for older photos)."""
    from gridserver.incidents.attachments import thumbnail_url

    return thumbnail_url(row.id, row.photo) if row.photo else None


def find_candidates(conn, *, lon: float, lat: float, category: str, item_code: str | None, description: str,
                    at, exclude: int = 0, limit: int = 5) -> list[dict]:
    """Scored duplicate candidates for a report (best first), with distance and the URL of its first photo."""
    rows = conn.execute(_CANDIDATES, {"lon": lon, "lat": lat, "category": category, "exclude": exclude,
                                      "at": at, "dup_deg": search_deg(lat)}).all()
    return score_candidates(rows, description, item_code, limit)


def score_candidates(rows, description: str, item_code: str | None, limit: int = 5) -> list[dict]:
    """Score candidate rows (attributes of ``CANDIDATES_SQL``'s columns), best first, at most ``limit``."""
    out, mine = [], _bigrams(description)
    for r in rows:
        s = score_pair(description, r.description, float(r.d), float(r.hours),
                       bool(item_code) and r.item_code == item_code, a_bigrams=mine)
        if s <= 0:
            continue
        out.append({"id": r.id, "score": s, "likely": s >= THRESHOLD, "distance_m": round(float(r.d), 1),
                    "hours_apart": round(float(r.hours), 2), "status": r.status, "description": r.description,
                    "photo": photo_url(r)})
    out.sort(key=lambda c: -c["score"])
    return out[:limit]


def evaluate(reports: list[dict], truth: set[tuple[int, int]], threshold: float = THRESHOLD) -> dict:
    """Precision/recall of the detector on ``reports`` ({id, x, y (metres), t (hours), category, item,
    description}) against the known duplicate pairs ``truth`` ((earlier id, later id)). A report is
    flagged as a duplicate of its best-scoring earlier candidate when that score ≥ threshold."""
    by_cat: dict[str, list[dict]] = {}
    for r in sorted(reports, key=lambda r: r["t"]):
        by_cat.setdefault(r["category"], []).append(r)
    predicted: set[tuple[int, int]] = set()
    for items in by_cat.values():
        for j, b in enumerate(items):
            best, best_id = 0.0, None
            for a in items[:j]:
                if b["t"] - a["t"] > WINDOW_H:
                    continue
                d = math.hypot(a["x"] - b["x"], a["y"] - b["y"])
                s = score_pair(a["description"], b["description"], d, b["t"] - a["t"], a["item"] == b["item"])
                if s > best:
                    best, best_id = s, a["id"]
            if best_id is not None and best >= threshold:
                predicted.add((best_id, b["id"]))
    # a later report counts as found when it is linked to any report of its duplicate group
    group = {}
    for a, b in sorted(truth):
        group[b] = group.get(a, a)
    later_truth = {b for _, b in truth}
    tp = sum(1 for a, b in predicted if b in later_truth and group.get(b) == group.get(a, a))
    fp = len(predicted) - tp
    fn = len(later_truth) - tp
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "tp": tp, "fp": fp, "fn": fn, "pairs": len(truth), "reports": len(reports), "threshold": threshold}


# --- generated data with known duplicates (for measuring the detector) ------------------------------
_ROADS = ["中山四路", "北京路", "东风中路", "解放北路", "环市东路", "农林下路", "越秀南路", "德政北路", "文德路",
          "小北路", "盘福路", "人民北路", "惠福东路", "大南路", "较场西路", "建设六马路", "寺右新马路", "执信南路",
          "法政路", "豪贤路", "广卫路", "越华路", "应元路", "麓景路", "恒福路", "淘金路", "达道路", "西华路"]
_SPOTS = ["号门口", "号附近", "号旁边", "号对面", "号后巷"]
_OPEN = ["", "你好，", "反映一下：", "市民反映", "您好，我要反映", "投诉："]
_CLOSE = ["", "，请尽快处理", "，已经好几天了", "，影响通行", "，希望有关部门处理", "。谢谢"]


def generate_reports(seed: int = 0, n_problems: int = 600, dup_share: float = 0.35,
                     neighbour_share: float = 0.35) -> tuple[list[dict], set[tuple[int, int]]]:
    """Reports of ``n_problems`` distinct problems over two weeks in a 3 km square; a share is
    reported again by other people (same place ±40 m, within 36 h, reworded: the known duplicates),
    and a share has a *different* problem of the same category nearby (50–150 m, same days: the
    hard negatives). Returns (reports, {(first id, duplicate id)})."""
    import random

    from gridserver.incidents.taxonomy import default_taxonomy

    rng = random.Random(seed)
    items = default_taxonomy().items()
    reports: list[dict] = []
    truth: set[tuple[int, int]] = set()

    def add(item, place, x, y, t):
        kws = item.keywords.split() or [item.name]
        what = rng.choice([item.name, item.name, "".join(rng.sample(kws, len(kws))), f"{rng.choice(kws)}问题"])
        where = rng.choice([place, place, place.split("号")[0].rstrip("0123456789"), "我家楼下", "小区门口"])
        desc = f"{rng.choice(_OPEN)}{where}{what}{rng.choice(_CLOSE)}"
        reports.append({"id": len(reports) + 1, "x": x, "y": y, "t": t, "category": item.parent, "item": item.code,
                        "description": desc})
        return reports[-1]["id"]

    for _ in range(n_problems):
        item = rng.choice(items)
        road, num = rng.choice(_ROADS), rng.randint(1, 300)
        x, y, t = rng.uniform(0, 3000), rng.uniform(0, 3000), rng.uniform(0, 14 * 24)
        first = add(item, f"{road}{num}{rng.choice(_SPOTS)}", x, y, t)
        if rng.random() < dup_share:
            for _ in range(rng.choice([1, 1, 2])):
                a = rng.uniform(0, 6.283)
                dist = rng.uniform(0, 60)
                dup = add(item, f"{road}{num}{rng.choice(_SPOTS)}", x + dist * math.cos(a), y + dist * math.sin(a),
                          t + rng.uniform(0.1, 36))
                truth.add((first, dup))
        if rng.random() < neighbour_share:
            siblings = [i for i in items if i.parent == item.parent and i.code != item.code]
            other = rng.choice(siblings) if siblings and rng.random() < 0.6 else item
            road2, num2 = (road, num + rng.randint(8, 40)) if rng.random() < 0.5 else (rng.choice(_ROADS), rng.randint(1, 300))
            a, dist = rng.uniform(0, 6.283), rng.uniform(50, 150)
            add(other, f"{road2}{num2}{rng.choice(_SPOTS)}", x + dist * math.cos(a), y + dist * math.sin(a),
                t + rng.uniform(-24, 24))
    return reports, truth
