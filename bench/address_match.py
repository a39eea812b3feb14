"""Matching benchmark: departmental-style variants of real addresses of the demo base, with known truth.

For a sample of addresses of the generated Yuexiu base (real OSM road names, ``demo_data.generate_base``)
it writes the kinds of variants departments send (:data:`KINDS`), then asks

* the geocoder (``geocode()``, what ``GET /api/v1/address/geocode`` answers — the test
  ``tests/address/test_match_variants.py`` goes through real HTTP), and
* the import matcher (``match_rows``, what ``gridserver import addresses`` runs; rows may carry a point),

and scores every answer against the truth:

* geocode: **exact** (the true address), **coarser** (an ancestor of it, e.g. its house or road),
  **none** (404 / ambiguous), **wrong** (any other address). precision = (exact + coarser) / answered,
  recall = exact / queries.
* import: **matched** to the truth (right) or to another address (**wrong** — an auto-merge of two
  different houses), or left for **review** / proposed as **new** / rejected. precision = right / matched,
  recall = right / rows. For variants whose address is not in the base (``near_number``) the right
  outcome is new or review, and any match is wrong.

Prints one table per consumer and a final JSON line. Run (builds a scratch database ``gs_bench_match``
on DATABASE_URL's server or the embedded one)::

    .venv/bin/python bench/address_match.py [--addresses 300] [--seed 7] [--show-wrong]

``--show-wrong`` prints every wrong answer (``GEOCODE WRONG`` / ``IMPORT WRONG``: kind, text, point, answer,
truth) and every geocoder answer that is not the exact address (``geocode miss``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

#: Variant kinds, in report order.
KINDS = ("standard", "hao_traditional", "no_district", "bare_admin", "building_alias", "zhi_number",
         "floor_room", "near_number", "typo_char", "missing_char", "missing_char_collides", "gcj02_point",
         "gcj02_as_wgs84")
#: Kinds whose rows carry a point (import matcher only; the geocoder takes text).
POINT_KINDS = ("gcj02_point", "gcj02_as_wgs84")

_TRAD = str.maketrans("号楼广东区门层单园华龙凤宝云场厂馆", "號樓廣東區門層單園華龍鳳寶雲場廠館")
_CN = "零一二三四五六七八九"


@dataclass
class Variant:
    kind: str
    text: str
    truth: str                  # match key of the address the text means
    in_base: bool = True        # False: the address is not in the base (only its road / house is)
    lon: float | None = None    # WGS84 point the matcher gets (already converted), if any
    lat: float | None = None


def _written(a, *, building_suffix: str = "栋", floor_suffix: str = "层", room: str | None = None,
             house: str | None = None) -> str:
    s = a.road
    if a.house_no:
        s += (house if house is not None else a.house_no + "号")
    if a.building:
        s += a.building + building_suffix
    if a.unit:
        s += a.unit + "单元"
    if a.floor:
        s += a.floor + floor_suffix
    if a.room:
        s += room if room is not None else a.room + "室"
    return s


def _cn_small(n: int) -> str:
    return _CN[n] if n < 10 else ("十" + (_CN[n % 10] if n % 10 else "") if n < 20 else str(n))


def make_variants(base, n_addresses: int = 300, seed: int = 7) -> list[Variant]:
    """Variants of ``n_addresses`` sampled addresses of ``base`` (a ``demo_data.DemoBase``); deterministic."""
    from gridserver.address.demo_data import _TYPO
    from gridserver.geo.crs import wgs84_to_gcj02

    rng = random.Random(seed)
    keys = {a.key() for a in base.addresses}
    roads = sorted({a.road for a in base.addresses})
    road_set = set(roads)
    houses = [a for a in base.addresses if a.house_no]
    sample = rng.sample(houses, min(n_addresses, len(houses)))
    by_road_house: dict[str, set[str]] = defaultdict(set)
    for a in base.addresses:
        if a.house_no:
            by_road_house[a.road].add(a.house_no)
    out: list[Variant] = []
    for a in sample:
        k = a.key()
        full = "广东省广州市越秀区" + _written(a)
        out.append(Variant("standard", full, k))
        out.append(Variant("hao_traditional", ("越秀区" + _written(a)).translate(_TRAD), k))
        out.append(Variant("no_district", _written(a), k))
        out.append(Variant("bare_admin", rng.choice(("广州越秀", "广州越秀区", "广州市越秀")) + _written(a), k))
        if a.building:
            alt = rng.choice(("座", "幢", "号楼")) if a.building.isdigit() else "座"
            out.append(Variant("building_alias", "越秀区" + _written(a, building_suffix=alt), k))
        if "-" in a.house_no:
            n, sub = a.house_no.split("-", 1)
            form = rng.choice((f"{n}之{sub}号", f"{n}号之{_cn_small(int(sub))}"))
            out.append(Variant("zhi_number", "越秀区" + _written(a, house=form), k))
        if a.room and len(a.room) >= 3:
            fl = a.room[:-2]
            form = rng.choice((f"{fl}楼{a.room}室", f"{a.room}房", f"{fl}层{a.room}室"))
            out.append(Variant("floor_room", "越秀区" + _written(a, room=form), k))
        elif a.floor:
            out.append(Variant("floor_room", "越秀区" + _written(a, floor_suffix="楼"), k))
        # a house number the base does not have, near the real one (same side of the road)
        if a.house_no.isdigit():
            have = by_road_house[a.road]
            n = int(a.house_no)
            for step in (2, 4, 6, 8, -2, -4):
                cand = str(n + step)
                if n + step > 0 and cand not in have:
                    from gridserver.address.keys import make_key

                    truth = make_key(a.key().split("|")[0], cand)
                    out.append(Variant("near_number", f"越秀区{a.road}{cand}号", truth, in_base=False))
                    break
        # one character replaced by a look-alike / homophone, when that is not another real road
        spots = [i for i, c in enumerate(a.road[:-1]) if c in _TYPO]
        rng.shuffle(spots)
        for i in spots:
            t = a.road[:i] + _TYPO[a.road[i]] + a.road[i + 1:]
            if t not in road_set:
                out.append(Variant("typo_char", "越秀区" + _written(a).replace(a.road, t, 1), k))
                break
        # one character missing from the road name: when that spells another real road, its own kind
        if len(a.road) >= 3:
            drops = [a.road[:i] + a.road[i + 1:] for i in range(len(a.road) - 1)]
            collide = [d for d in drops if d in road_set]
            if collide:
                out.append(Variant("missing_char_collides", "越秀区" + _written(a).replace(a.road, collide[0], 1), k))
            else:
                d = rng.choice(drops)
                out.append(Variant("missing_char", "越秀区" + _written(a).replace(a.road, d, 1), k))
        # rows with a point: a GCJ-02 point converted properly (the import's crs=gcj02 path), and one
        # read as WGS84 by mistake (~500 m off); the text carries a road typo so the point matters
        if a.lon is not None:
            wrong = a.road[:-2] + a.road[-1] if len(a.road) >= 3 else a.road
            text = "越秀区" + _written(a).replace(a.road, wrong, 1)
            out.append(Variant("gcj02_point", text, k, lon=a.lon, lat=a.lat))
            glon, glat = wgs84_to_gcj02(a.lon, a.lat)
            out.append(Variant("gcj02_as_wgs84", text, k, lon=float(glon), lat=float(glat)))
    assert all(v.truth in keys or not v.in_base for v in out)
    return out


def _ancestors(key: str) -> set[str]:
    from gridserver.address.keys import ancestor_keys

    return {k for _, k in ancestor_keys(key)[:-1]}


def score_geocode(answers: list[tuple[Variant, str | None]]) -> dict:
    """``answers``: (variant, match key of the answer or None for no answer) → per-kind counts."""
    per: dict[str, Counter] = defaultdict(Counter)
    for v, key in answers:
        c = per[v.kind]
        c["n"] += 1
        if key is None:
            c["none"] += 1
        elif v.in_base and key == v.truth:
            c["exact"] += 1
        elif key in _ancestors(v.truth):
            c["coarser"] += 1
        else:
            c["wrong"] += 1
    return _finish(per, lambda c: ((c["exact"] + c["coarser"]) / max(1, c["n"] - c["none"]), c["exact"] / c["n"]))


def score_import(results: list[tuple[Variant, str, str | None]]) -> dict:
    """``results``: (variant, status, match key of the matched address or None) → per-kind counts."""
    per: dict[str, Counter] = defaultdict(Counter)
    for v, status, key in results:
        c = per[v.kind]
        c["n"] += 1
        if status == "matched":
            c["right" if v.in_base and key == v.truth else "wrong"] += 1
        else:
            c[status] += 1
            if not v.in_base and status in ("new", "review"):
                c["right_unmatched"] += 1
    return _finish(per, lambda c: (c["right"] / c["matched_total"] if c["matched_total"] else 1.0,
                                   (c["right"] + c["right_unmatched"]) / c["n"]), import_=True)


def _finish(per: dict[str, Counter], pr, import_: bool = False) -> dict:
    out = {}
    total = Counter()
    for kind in [k for k in KINDS if k in per]:
        c = per[kind]
        if import_:
            c["matched_total"] = c["right"] + c["wrong"]
        total.update(c)
        p, r = pr(c)
        out[kind] = {**dict(c), "precision": round(p, 4), "recall": round(r, 4)}
    if import_:
        total["matched_total"] = total["right"] + total["wrong"]
    p, r = pr(total)
    out["all"] = {**dict(total), "precision": round(p, 4), "recall": round(r, 4)}
    return out


def run_geocode(conn, variants: list[Variant]) -> list[tuple[Variant, str | None]]:
    from sqlalchemy import text

    from gridserver.address.geocode import geocode
    from gridserver.errors import GridserverError

    out = []
    for v in variants:
        if v.kind in POINT_KINDS:
            continue
        try:
            g = geocode(conn, v.text)
            key = conn.execute(text("SELECT match_key FROM std_addresses WHERE code = :c"), {"c": g["code"]}).scalar()
        except GridserverError:
            key = None
        out.append((v, key))
    return out


def run_import(conn, variants: list[Variant]) -> list[tuple[Variant, str, str | None]]:
    from sqlalchemy import text

    from gridserver.address.matcher import RowIn, match_rows

    rows = [RowIn(idx=i, text=v.text, lon=v.lon, lat=v.lat) for i, v in enumerate(variants)]
    ms = match_rows(conn, rows)
    ids = [m.address_id for m in ms if m.address_id]
    key_of = dict(conn.execute(text("SELECT id, match_key FROM std_addresses WHERE id = ANY(:i)"), {"i": ids}).all())
    return [(v, m.status, key_of.get(m.address_id)) for v, m in zip(variants, ms)]


def format_table(title: str, scores: dict, cols: tuple[str, ...]) -> str:
    lines = [title, f"  {'kind':24s}" + "".join(f"{c:>9s}" for c in cols) + f"{'prec':>8s}{'recall':>8s}"]
    for kind, c in scores.items():
        lines.append(f"  {kind:24s}" + "".join(f"{c.get(x, 0):9d}" for x in cols)
                     + f"{c['precision']:8.3f}{c['recall']:8.3f}")
    return "\n".join(lines)


def _database(reuse: bool = False):
    from gridserver.db import embedded, migrate
    from gridserver.settings import get_settings

    s = get_settings()
    if s.database_url:
        admin = s.database_url.replace("postgresql://", "postgresql+psycopg://", 1).rsplit("/", 1)[0] + "/postgres"
    else:
        embedded.start(s)
        admin = embedded.url(s, "postgres")
    name = "gs_bench_match"
    if not reuse:
        embedded.drop_database(admin, name)
    embedded.ensure_database(admin, name)
    url = admin.rsplit("/", 1)[0] + "/" + name
    migrate.upgrade(url)
    return admin, name, url


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--addresses", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    ap.add_argument("--reuse", action="store_true", help="reuse a scratch database kept by --keep")
    ap.add_argument("--show-wrong", action="store_true", help="list the wrong answers")
    args = ap.parse_args()

    from sqlalchemy import create_engine, text

    from gridserver.address.demo_data import generate_base, load_base
    from gridserver.db import embedded

    admin, name, url = _database(args.reuse)
    engine = create_engine(url)
    try:
        t0 = time.perf_counter()
        base = generate_base(20261123)
        with engine.begin() as conn:
            if not conn.execute(text("SELECT EXISTS (SELECT 1 FROM std_addresses)")).scalar():
                _load_district(conn)
                load_base(conn, base)
        variants = make_variants(base, args.addresses, args.seed)
        print(f"base: {len(base.addresses)} addresses on {len(base.roads)} roads ({time.perf_counter() - t0:.0f} s); "
              f"{len(variants)} variants of {args.addresses} addresses")
        with engine.begin() as conn:
            t0 = time.perf_counter()
            geo_raw = run_geocode(conn, variants)
            geo = score_geocode(geo_raw)
            t_geo = time.perf_counter() - t0
            t0 = time.perf_counter()
            imp_raw = run_import(conn, variants)
            imp = score_import(imp_raw)
            t_imp = time.perf_counter() - t0
        if args.show_wrong:
            for v, key in geo_raw:
                if key is not None and key != v.truth and key not in _ancestors(v.truth):
                    print("GEOCODE WRONG", v.kind, v.text, "->", key, "truth", v.truth)
                elif key is None or key != v.truth:
                    print("geocode miss", v.kind, v.text, "->", key, "truth", v.truth)
            for v, status, key in imp_raw:
                if status == "matched" and (key != v.truth or not v.in_base):
                    print("IMPORT WRONG", v.kind, v.text, v.lon, v.lat, "->", key, "truth", v.truth)
        print(format_table(f"geocode ({t_geo:.1f} s)", geo, ("n", "exact", "coarser", "none", "wrong")))
        print(format_table(f"import matcher ({t_imp:.1f} s)", imp,
                           ("n", "right", "wrong", "review", "new", "rejected")))
        print(json.dumps({"bench": "address_match", "geocode": {k: {"precision": v["precision"], "recall": v["recall"], "wrong": v.get("wrong", 0)}
                                      for k, v in geo.items()},
                          "import": {k: {"precision": v["precision"], "recall": v["recall"], "wrong": v.get("wrong", 0)}
                                     for k, v in imp.items()}}, ensure_ascii=False))
    finally:
        engine.dispose()
        if not args.keep:
            embedded.drop_database(admin, name)
    return 0


def _load_district(conn) -> None:
    from sqlalchemy import text

    from gridserver.settings import get_settings

    path = get_settings().yuexiu_dir / "yuexiu_district_boundary_osm_wgs84.geojson"
    if not path.exists():
        return
    geom = json.loads(path.read_text(encoding="utf-8"))["features"][0]["geometry"]
    conn.execute(text("INSERT INTO admin_areas (level, code, name, geom) VALUES ('district', '440104', '越秀区', "
                      "ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(:g), 4326)))"), {"g": json.dumps(geom)})


if __name__ == "__main__":
    sys.exit(main())
