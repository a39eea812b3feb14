"""The aggregate as a dask-geopandas job on a local multi-process cluster equals the PostGIS aggregate."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import geopandas as gpd
import pytest

from gridserver.analytics.aggregate import AggregateSpec, parse_by
from gridserver.analytics.distributed import (current_grids, dask_aggregate, export_partitioned, postgis_table,
                                              select_files)

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
END = datetime(2026, 5, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    c = LocalCluster(n_workers=3, processes=True, threads_per_worker=1, dashboard_address=":0")
    client = Client(c)
    yield client
    client.close()
    c.close()


@pytest.fixture(scope="module")
def dataset(engine, analytics_incidents, tmp_path_factory):
    out = tmp_path_factory.mktemp("parquet")
    with engine.connect() as conn:
        manifest = export_partitioned(conn, out, rows_per_file=60, start=START, end=END)
    return out, manifest


def test_dataset_is_partitioned_by_month_and_hilbert(dataset, analytics_incidents):
    out, manifest = dataset
    files = manifest["files"]
    assert sum(f["rows"] for f in files) == len(analytics_incidents)
    months = sorted({f["month"] for f in files})
    assert months == ["2026-03", "2026-04", "2026-05"][: len(months)] and len(months) >= 2
    assert len(files) > len(months)  # several spatial partitions per month
    assert json.loads((out / "_manifest.json").read_text()) == manifest
    for f in files:
        assert f["path"].startswith(f"month={f['month']}/")
        part = gpd.read_parquet(out / f["path"])
        assert part.crs.to_epsg() == 4326 and len(part) == f["rows"]
        assert part["hilbert"].is_monotonic_increasing
        assert "description" not in part.columns
    for month in months:  # consecutive files of a month cover consecutive Hilbert ranges
        ranges = [f["hilbert"] for f in files if f["month"] == month]
        assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))
    april = select_files(out, datetime(2026, 4, 1, tzinfo=timezone.utc), END)
    assert april and all("month=2026-04" in p or "month=2026-05" in p for p in april)


@pytest.mark.parametrize("by,bucket", [("grid", None), ("h3:9", "day")])
def test_dask_job_equals_postgis(engine, cluster, dataset, by, bucket):
    out, _ = dataset
    kind, res = parse_by(by)
    spec = AggregateSpec(by=kind, h3_res=res, start=START, end=END, bucket=bucket)
    with engine.connect() as conn:
        grids = current_grids(conn) if kind != "h3" else None
        want = postgis_table(conn, spec)
    assert len(cluster.scheduler_info()["workers"]) == 3
    got = dask_aggregate(select_files(out, START, END), spec, grids, cluster)
    assert len(want) > 0
    assert got.astype({"count": "int64"}).equals(want)


def test_category_filter_and_cli_compare(engine, cluster, dataset, db_url, analytics_incidents):
    out, _ = dataset
    cat = sorted(analytics_incidents["category"].unique())[1]
    spec = AggregateSpec(by="street", start=START, end=END, categories=[cat])
    with engine.connect() as conn:
        want = postgis_table(conn, spec)
        got = dask_aggregate(select_files(out, START, END), spec, current_grids(conn), cluster)
    assert got.astype({"count": "int64"}).equals(want)
    assert int(want["count"].sum()) == int((analytics_incidents["category"] == cat).sum())
    from typer.testing import CliRunner

    from gridserver.cli import app

    args = ["analyze", "--engine", "dask", "--scheduler", cluster.scheduler.address, "--data", str(out),
            "--by", "community", "--bucket", "week", "--from", "2026-03-01T00:00:00Z", "--to", "2026-05-01T00:00:00Z",
            "--compare"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "same as PostGIS: yes" in r.output
    assert "key,period,count" in r.output
    r = CliRunner().invoke(app, args[:-1] + ["--by", "parish"])
    assert r.exit_code == 2 and "by must be" in r.output
