"""Background-job tasks of block data (run by ``gridserver jobs worker``)."""

from __future__ import annotations

from gridserver.jobs import task


@task("blockdata.import", max_attempts=5)
def import_task(ctx, path: str, kind: str, source: str, mapping: str | None = None, crs: str = "wgs84",
                encoding: str | None = None, actor: str = "import", update_rule: str | None = None,
                chunk_rows: int | None = None) -> dict:
    """Import a block-data file; progress = rows done. Resumes at the last committed chunk (the
    import row in ``bd_imports`` is the checkpoint, so even a crash between chunks loses nothing)."""
    from gridserver.blockdata.importer import CHUNK_ROWS, import_file

    def progress(done: int, total: int) -> None:
        ctx.progress(done, total, checkpoint={"rows_done": done}, message=f"{kind}: {done}/{total} rows")

    report = import_file(ctx.engine, path, kind=kind, source=source, mapping=mapping, crs=crs, encoding=encoding,
                         actor=actor, update_rule=update_rule, chunk_rows=chunk_rows or CHUNK_ROWS,
                         progress=progress, job_id=ctx.job_id)
    report["errors"] = report.get("errors", [])[:50]
    report["straddling"] = report.get("straddling", [])[:50]
    return report


@task("blockdata.relink")
def relink_task(ctx) -> dict:
    """Re-link every block-data record to the current grids (after a redraw)."""
    from gridserver.blockdata.service import relink_all

    with ctx.engine.begin() as conn:
        return relink_all(conn)
