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


def text_similarity(a: str, b: str) -> float:
    """0–1 similarity of two Chinese descriptions."""
    if not (a or "").strip() or not (b or "").strip():
        return 0.0
    return fuzz.token_set_ratio(_bigrams(a), _bigrams(b)) / 100.0


def score_pair(desc_a: str, desc_b: str, distance_m: float, hours: float, same_item: bool) -> float:
    """Duplicate score of two reports of the same category (see the module formula)."""
    if distance_m > RADIUS_M or abs(hours) > WINDOW_H:
        return 0.0
    s = (0.55 * text_similarity(desc_a, desc_b) + 0.30 * (1 - distance_m / RADIUS_M)
         + 0.15 * (1 - abs(hours) / WINDOW_H) + (0.10 if same_item else 0.0))
    return round(min(1.0, s), 4)


_CANDIDATES = text(f"""
    SELECT i.id, i.description, i.item_code, i.status, i.created_at, i.tracking_code,
           ST_Distance(ST_Transform(i.geom, 4547), ST_Transform(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 4547)) AS d,
           EXTRACT(EPOCH FROM (:at - i.created_at)) / 3600.0 AS hours,
           (SELECT a.id FROM incident_attachments a WHERE a.incident_id = i.id
             AND a.content_type LIKE 'image/%' ORDER BY a.id LIMIT 1) AS photo
    FROM incidents i
    WHERE i.category = :category AND i.id <> :exclude
      AND i.status NOT IN ('closed', 'rated', 'merged')
      AND i.created_at BETWEEN :at - make_interval(hours => {int(WINDOW_H)}) AND :at + make_interval(hours => 1)
      AND ST_DWithin(i.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :deg)
""")


def find_candidates(conn, *, lon: float, lat: float, category: str, item_code: str | None, description: str,
                    at, exclude: int = 0, limit: int = 5) -> list[dict]:
    """Scored duplicate candidates for a report (best first), with distance and a photo thumbnail URL."""
    deg = RADIUS_M / 100000.0 / math.cos(math.radians(lat)) * 1.2
    rows = conn.execute(_CANDIDATES, {"lon": lon, "lat": lat, "category": category, "exclude": exclude,
                                      "at": at, "deg": deg}).all()
    out = []
    for r in rows:
        s = score_pair(description, r.description, float(r.d), float(r.hours), bool(item_code) and r.item_code == item_code)
        if s <= 0:
            continue
        out.append({"id": r.id, "score": s, "likely": s >= THRESHOLD, "distance_m": round(float(r.d), 1),
                    "hours_apart": round(float(r.hours), 2), "status": r.status, "description": r.description,
                    "thumbnail": f"/api/v1/incidents/{r.id}/attachments/{r.photo}?thumb=1" if r.photo else None})
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
