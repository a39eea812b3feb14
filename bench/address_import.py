"""Benchmark: importing a large departmental address table through the bulk matcher.

Builds a scratch database (``gs_bench_address`` on the embedded PostGIS or DATABASE_URL's server),
loads the whole generated Yuexiu address base (all real OSM road names), writes a departmental CSV of
``--rows`` rows (default 1,000,000; 公安户籍 style, GB18030, with the usual quirks and 2 % garbage) and
imports it with ``import_file``. Prints rows/s and, as the named baseline measured side by side in the
same run, the rate of the naive way — one ``match_rows`` call (parse + queries) per row, on a sample —
and the ratio between them. Then imports the same file again to show the re-import is a no-op.

    .venv/bin/python bench/address_import.py               # 1 M rows
    .venv/bin/python bench/address_import.py --rows 200000
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text


def _database():
    from gridserver.db import embedded, migrate
    from gridserver.settings import get_settings

    s = get_settings()
    if s.database_url:
        base = s.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        admin = base.rsplit("/", 1)[0] + "/postgres"
    else:
        embedded.start(s)
        admin = embedded.url(s, "postgres")
    name = "gs_bench_address"
    embedded.drop_database(admin, name)
    embedded.ensure_database(admin, name)
    url = admin.rsplit("/", 1)[0] + "/" + name
    migrate.upgrade(url)
    return admin, name, url


def _load_district(engine) -> None:
    import json

    from gridserver.settings import get_settings

    path = get_settings().yuexiu_dir / "yuexiu_district_boundary_osm_wgs84.geojson"
    if not path.exists():
        return
    geom = json.loads(path.read_text(encoding="utf-8"))["features"][0]["geometry"]
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO admin_areas (level, code, name, geom) VALUES ('district', '440104', '越秀区', "
                          "ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(:g), 4326)))"), {"g": json.dumps(geom)})


def _write_table(base, path: Path, n_rows: int, seed: int) -> None:
    from gridserver.address.demo_data import DEPARTMENTS, department_rows

    spec = DEPARTMENTS["公安户籍"]
    rng = random.Random(seed)
    with open(path, "w", encoding="gb18030", newline="") as f:
        w = csv.writer(f)
        w.writerow(["编号", "户主姓名", "住址"])
        done, block = 0, 50_000
        while done < n_rows:
            k = min(block, n_rows - done)
            rows = department_rows(base, "公安户籍", k, seed + done, style=spec["style"], levels=spec["levels"])
            for i, r in enumerate(rows):
                w.writerow([f"GA{done + i:08d}", rng.choice("陈李张黄梁何林郭罗"), r["address"]])
            done += k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--baseline-rows", type=int, default=500)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = ap.parse_args()

    from gridserver.address.demo_data import generate_base, load_base
    from gridserver.address.importer import import_file
    from gridserver.address.matcher import AreaNames, RowIn, match_rows
    from gridserver.address.base import road_gazetteer
    from gridserver.address.parsing import parser_name
    from gridserver.db import embedded

    admin, name, url = _database()
    engine = create_engine(url, future=True)
    try:
        _load_district(engine)
        t = time.perf_counter()
        base = generate_base(args.seed)
        with engine.begin() as conn:
            ids = load_base(conn, base)
        print(f"standard base: {len(ids):,} addresses on {len(base.roads)} roads loaded in {time.perf_counter() - t:.1f} s")

        tmp = Path(tempfile.mkdtemp(prefix="bench_address_"))
        table = tmp / "公安户籍_bench.csv"
        t = time.perf_counter()
        _write_table(base, table, args.rows, args.seed)
        print(f"departmental table: {args.rows:,} rows, {table.stat().st_size / 1e6:.0f} MB, written in "
              f"{time.perf_counter() - t:.1f} s")

        # Baseline, same run: the naive importer — one match call per row.
        with open(table, encoding="gb18030", newline="") as f:
            rd = csv.reader(f)
            next(rd)
            sample = [row[2] for _, row in zip(range(args.baseline_rows), rd)]
        with engine.begin() as conn:
            gaz, areas = road_gazetteer(conn), AreaNames(conn)
            t = time.perf_counter()
            for i, q in enumerate(sample):
                match_rows(conn, [RowIn(i, q)], gazetteer=gaz, areas=areas)
            naive = len(sample) / (time.perf_counter() - t)
        print(f"baseline (one match_rows call per row, {len(sample)} rows): {naive:,.0f} rows/s")

        t = time.perf_counter()
        s = import_file(engine, table, source="公安户籍", mapping="address=住址,id=编号", rejected=tmp / "rejected.csv",
                        actor="bench")
        wall = time.perf_counter() - t
        print(f"bulk import: {s.rows:,} rows in {wall:.1f} s = {s.rows / wall:,.0f} rows/s "
              f"(parser {parser_name()}); matched {s.matched:,}, new {s.new:,}, review {s.review:,}, "
              f"rejected {s.rejected:,}, duplicates/unchanged {s.unchanged:,}")
        print(f"ratio bulk / per-row baseline: {s.rows / wall / naive:.1f}x")
        t = time.perf_counter()
        again = import_file(engine, table, source="公安户籍", mapping="address=住址,id=编号", rejected=tmp / "r2.csv")
        re_s = time.perf_counter() - t
        print(f"re-import of the same file: already_imported={again.already_imported} in {re_s:.1f} s")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from common import emit  # bench/common.py

        emit("address_import", rows=s.rows, rows_per_s=round(s.rows / wall), baseline_rows=len(sample),
             baseline_rows_per_s=round(naive, 1), x_vs_baseline=round(s.rows / wall / naive, 1), matched=s.matched,
             new=s.new, review=s.review, rejected=s.rejected, parser=parser_name(), reimport_s=round(re_s, 2),
             already_imported=again.already_imported)
    finally:
        engine.dispose()
        if not args.keep:
            embedded.drop_database(admin, name)


if __name__ == "__main__":
    main()
