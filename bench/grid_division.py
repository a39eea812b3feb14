"""Bench: automatic grid division of the demo city (pure algorithm, no database).

1. Methods compared on the same communities and unit graphs: ``grow`` (ours) vs PySAL spopt
   region-k-means, SKATER and Max-P (Max-P only on the smallest community: minutes otherwise).
2. The whole city (~222 communities) divided with ``grow`` on ``--workers`` processes with a Rich
   progress bar: time, household CV / compactness / road share of the proposal vs the demo's own
   grids on the same buildings, tiling and code checks.

Buildings: ``gridserver.areas.division.synthetic`` (~100 k generated footprints with households)
until the block-data tables are filled. The last line is JSON.

    nice -n 10 .venv/bin/python bench/grid_division.py [--buildings 100000] [--communities 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import shapely  # noqa: E402

from gridserver.areas.division import divide_community  # noqa: E402
from gridserver.areas.division.core import existing_quality  # noqa: E402
from gridserver.areas.division.quality import combine  # noqa: E402
from gridserver.areas.division.synthetic import synthetic_buildings  # noqa: E402
from gridserver.areas.division.units import _inside_index  # noqa: E402
from gridserver.areas.versions import ROAD_KINDS  # noqa: E402
from gridserver.demo import partition as part  # noqa: E402

TARGET, LO, HI = 300, 200, 500
_STATE: dict = {}


def _init(state):
    _STATE.update(state)


def _one(i: int):
    s = _STATE
    code, name, geom = s["comms"][i]
    b = s["buildings"].subset(np.flatnonzero(s["owner"] == i))
    d = divide_community(code, name, geom, b, s["roads"], target=TARGET, lo=LO, hi=HI, seed=0)
    old = existing_quality(geom, s["grids"][code], b, s["roads"], lo=LO, hi=HI)
    codes = [g.code for g in d.grids]
    return {"code": code, "report": d.report, "existing": old, "seconds": d.seconds, "codes": codes,
            "assigned": len(d.building_grid), "buildings": len(b)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--buildings", type=int, default=100_000)
    ap.add_argument("--communities", type=int, default=0, help="only the first N (0 = all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--compare", type=int, default=3, help="communities in the method comparison")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--maxp", action="store_true", help="also run spopt Max-P on the smallest community (minutes)")
    args = ap.parse_args()

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from gridserver.demo.build import _shared_dir
    from gridserver.demo.city import load_city

    console = Console(stderr=True)
    t0 = time.perf_counter()
    city = load_city(_shared_dir(), args.seed)
    roads = city["roads"]
    lines = shapely.get_parts(np.asarray(roads[roads["highway"].isin(ROAD_KINDS)].geometry.values, dtype=object))
    comm_df = city["community"].sort_values("code")
    comms = [(c, n, part.as_multipolygon(g)) for c, n, g in zip(comm_df["code"], comm_df["name"], comm_df.geometry)]
    if args.communities:
        comms = comms[: args.communities]
    grids: dict[str, list] = {c: [] for c, _, _ in comms}
    for pc, g in zip(city["grid"]["parent_code"], city["grid"].geometry):
        if pc in grids:
            grids[pc].append(g)
    area = shapely.union_all([g for _, _, g in comms], grid_size=part.GRID)
    share = 1.0 if not args.communities else float(part.metric_area([area])[0] / 33.8e6)
    t = time.perf_counter()
    buildings = synthetic_buildings(area, lines, max(100, int(args.buildings * share)), seed=args.seed)
    t_gen = time.perf_counter() - t
    owner = _inside_index(buildings.points, np.asarray([g for _, _, g in comms], dtype=object))
    console.print(f"city: {len(comms)} communities, {sum(len(v) for v in grids.values())} demo grids, "
                  f"{len(buildings)} buildings, {int(buildings.households.sum())} households "
                  f"(generated in {t_gen:.1f} s), {len(lines)} road lines")

    # 1. methods on the same data -----------------------------------------------------------------
    sizes = np.bincount(owner, minlength=len(comms))
    pick = [int(i) for i in np.argsort(sizes)[len(sizes) // 4: len(sizes) // 4 + args.compare]]
    smallest = int(np.argsort(sizes)[0])
    methods = {"grow": pick, "kmeans": pick, "skater": pick}
    if args.maxp:
        methods["maxp"] = [smallest]
    comparison = {}
    for m, idx in methods.items():
        reps, secs = [], 0.0
        for i in idx:
            code, name, geom = comms[i]
            b = buildings.subset(np.flatnonzero(owner == i))
            d = divide_community(code, name, geom, b, lines, target=TARGET, lo=LO, hi=HI, seed=0, method=m)
            reps.append(d.report)
            secs += d.seconds
        c = combine(reps, LO, HI)
        comparison[m] = {"communities": len(idx), "grids": c["grids"], "households_cv": c["households_cv"],
                         "within_bounds": c["within_bounds"], "pp_mean": c["pp_mean"],
                         "boundary_on_roads": c["boundary_on_roads"], "seconds": round(secs, 2),
                         "contiguous_share": round(sum(r["contiguous"] for r in reps) / max(c["grids"], 1), 3)}
        if m == "grow" and args.maxp:  # grow again on maxp's community so the two can be compared directly
            code, name, geom = comms[smallest]
            b = buildings.subset(np.flatnonzero(owner == smallest))
            d = divide_community(code, name, geom, b, lines, target=TARGET, lo=LO, hi=HI, seed=0)
            comparison["grow_on_maxp_community"] = {"grids": d.report["grids"], "households_cv": d.report["households_cv"],
                                                    "pp_mean": d.report["pp_mean"], "seconds": round(d.seconds, 2)}
        console.print(f"method {m}: {comparison[m]}")
    tab = Table(title=f"methods on the same {len(pick)} communities" + (" (Max-P: the smallest one)" if args.maxp else ""))
    for col in ("method", "grids", "household CV", "within bounds", "Polsby-Popper", "on roads", "s"):
        tab.add_column(col)
    for m, c in comparison.items():
        if m in methods:
            tab.add_row(m, str(c["grids"]), str(c["households_cv"]), str(c["within_bounds"]), str(c["pp_mean"]),
                        str(c["boundary_on_roads"]), str(c["seconds"]))
    console.print(tab)

    # 2. the whole city -----------------------------------------------------------------------------
    state = {"comms": comms, "buildings": buildings, "owner": owner, "roads": lines, "grids": grids}
    results = []
    t = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("划分 dividing the city", total=len(comms))
        if args.workers > 1:
            with ProcessPoolExecutor(args.workers, initializer=_init, initargs=(state,)) as pool:
                for r in pool.map(_one, range(len(comms)), chunksize=2):
                    results.append(r)
                    bar.advance(task)
        else:
            _init(state)
            for i in range(len(comms)):
                results.append(_one(i))
                bar.advance(task)
    city_seconds = time.perf_counter() - t
    proposed = combine([r["report"] for r in results], LO, HI)
    existing = combine([r["existing"] for r in results], LO, HI)
    codes = [c for r in results for c in r["codes"]]
    tiling = max(max(r["report"]["tiling"].values()) for r in results)
    code_ok = (len(set(codes)) == len(codes) and all(len(c) == 15 and c.isdigit() for c in codes)
               and all(c.startswith(r["code"]) for r in results for c in r["codes"]))
    assigned_ok = all(r["assigned"] == r["buildings"] for r in results)
    contiguous = sum(r["report"]["contiguous"] for r in results)
    tab = Table(title=f"whole city: {len(results)} communities in {city_seconds:.0f} s ({args.workers} workers)")
    tab.add_column("")
    tab.add_column("demo grids")
    tab.add_column("proposal")
    for k in ("grids", "households_mean", "households_cv", "households_min", "households_max", "within_bounds",
              "pp_mean", "boundary_on_roads", "buildings_per_grid_mean", "buildings_cut"):
        tab.add_row(k, str(existing.get(k)), str(proposed.get(k)))
    console.print(tab)
    console.print(f"max tiling error {tiling:.2e} m²; codes valid: {code_ok}; every building assigned: {assigned_ok}; "
                  f"contiguous grids {contiguous}/{proposed['grids']}")
    out = {"bench": "grid_division", "communities": len(results), "buildings": len(buildings),
           "households": int(buildings.households.sum()), "workers": args.workers,
           "city_seconds": round(city_seconds, 1), "total_seconds": round(time.perf_counter() - t0, 1),
           "proposed": {k: v for k, v in proposed.items()}, "existing": existing,
           "cv_ratio_vs_demo_grids": round(proposed["households_cv"] / existing["households_cv"], 3),
           "max_tiling_error_m2": tiling, "codes_valid": code_ok, "all_buildings_assigned": assigned_ok,
           "contiguous_grids": contiguous, "methods": comparison}
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
