"""Bulk loading for the demo generators: COPY from Arrow tables on two loading connections, with the
loaded tables' indexes and constraints set aside during the load and rebuilt after it.

* :func:`copy_arrow` — one COPY (CSV) of an Arrow table; the CSV is written by Arrow's C++ writer,
  which releases the GIL, so a loading thread formats its rows while the main thread generates more.
* :class:`Loader` — two threads, each with its own connection: jobs run in submission order on
  whichever is free, each in its own transaction with ``synchronous_commit = off`` and a larger
  ``maintenance_work_mem`` (index builds). Two PostgreSQL backends work at once while Python
  generates: on two cores nothing waits for one stream.
* :func:`set_aside` / :func:`restore` — the plain indexes, the unique constraints (not primary keys)
  and the foreign keys of the tables to load are dropped before the load (a sorted index build is
  several times faster than a million index insertions; foreign keys would make two streams wait
  for each other, and lock every referenced row) and recreated after it, in parallel. The DDL to
  recreate them is kept in a journal (a JSON list in a row the caller names, committed together
  with the drops, each entry removed in the transaction that recreates it), so a build killed
  mid-load leaves the journal behind and the next build restores the schema first
  (:func:`pending`).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import text

_CSV = pacsv.WriteOptions(include_header=False, quoting_style="needed")  # nulls empty, strings quoted ("" = '')


def copy_arrow(conn, table: str, tab: pa.Table, *, chunk: int = 100_000, progress=None) -> int:
    """COPY ``tab`` (column names = table columns) into ``table``; ``progress(n)`` after each chunk."""
    raw = conn.connection.dbapi_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(tab.column_names)}) FROM STDIN (FORMAT csv)") as cp:
        for lo in range(0, tab.num_rows, chunk):
            part = tab.slice(lo, chunk)
            buf = pa.BufferOutputStream()
            pacsv.write_csv(part, buf, _CSV)
            cp.write(buf.getvalue().to_pybytes())
            if progress:
                progress(part.num_rows)
    return tab.num_rows


def _backend_cpu(conn) -> float | None:
    """CPU seconds (user + system) of the connection's server process so far, when the server runs on
    this machine and /proc shows it; else None (diagnostics only)."""
    import os

    try:
        pid = conn.connection.dbapi_connection.info.backend_pid
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, IndexError, ValueError):
        return None


class Loader:
    """Two loading connections; ``submit(fn, *args, **kw)`` runs ``fn(conn, *args, **kw)`` in a transaction on one."""

    def __init__(self, engine, workers: int = 2):
        self.engine = engine
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="demo-load")
        self.futures: list[Future] = []
        self.t0 = time.perf_counter()
        #: (job, start, end (seconds since the loader started), CPU seconds of its PostgreSQL backend or None)
        self.log: list[tuple] = []

    def _run(self, fn, args, kwargs, after):
        for f in after:
            f.result()
        start = time.perf_counter() - self.t0
        what = getattr(fn, "__name__", "job") + (f" {args[0]}" if args and isinstance(args[0], str) else "")
        with self.engine.begin() as conn:
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            cpu0 = _backend_cpu(conn)
            out = fn(conn, *args, **kwargs)
            cpu = _backend_cpu(conn)
        self.log.append((what[:60], round(start, 1), round(time.perf_counter() - self.t0, 1),
                         round(cpu - cpu0, 1) if cpu is not None and cpu0 is not None else None))
        return out

    def submit(self, fn, *args, after: Future | list[Future] = (), **kwargs) -> Future:
        """Queue ``fn(conn, *args, **kwargs)``; with ``after`` (jobs submitted earlier, so running or
        done by then), it starts once those have finished."""
        f = self.pool.submit(self._run, fn, args, kwargs, [after] if isinstance(after, Future) else list(after))
        self.futures.append(f)
        return f

    def wait(self) -> list:
        """Wait for every job submitted so far; raises the first job's error."""
        futures, self.futures = self.futures, []
        return [f.result() for f in futures]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _defs(conn, tables: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(drop statements, phase-1 DDL: indexes and unique constraints, phase-2 DDL: foreign keys)."""
    drops, first, second = [], [], []
    for name, table, ddl, kind in conn.execute(text(
            "SELECT c.conname, c.conrelid::regclass::text, pg_get_constraintdef(c.oid), c.contype FROM pg_constraint c "
            "WHERE c.conrelid::regclass::text = ANY(:t) AND c.contype IN ('u', 'f') "
            "ORDER BY c.contype = 'f' DESC, c.conname"), {"t": tables}):  # foreign keys go first, come back last
        drops.append(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        (second if kind == "f" else first).append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {ddl}')
    for name, ddl in conn.execute(text(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() "
            "AND i.tablename = ANY(:t) AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname) "
            "ORDER BY i.indexname"), {"t": tables}):
        drops.append(f'DROP INDEX "{name}"')
        first.append(ddl)
    return drops, first, second


def set_aside(conn, tables: list[str], journal_table: str, journal_id: int) -> int:
    """Drop the indexes and constraints of ``tables`` and journal their DDL in
    ``journal_table.report->'set_aside'`` of row ``journal_id`` (same transaction); returns the count."""
    drops, first, second = _defs(conn, tables)
    conn.execute(text(f"UPDATE {journal_table} SET report = jsonb_set(report, '{{set_aside}}', CAST(:j AS jsonb)) "
                      "WHERE id = :i"), {"j": json.dumps([first, second]), "i": journal_id})
    for d in drops:
        conn.execute(text(d))
    return len(first) + len(second)


def pending(conn, journal_table: str) -> list[tuple[int, list[list[str]]]]:
    """Journalled DDL not restored yet: [(row id, [phase-1 DDL, phase-2 DDL])]."""
    return [(i, j) for i, j in conn.execute(text(
        f"SELECT id, report->'set_aside' FROM {journal_table} WHERE jsonb_typeof(report->'set_aside') = 'array' "
        "AND report->'set_aside' <> '[[], []]'::jsonb ORDER BY id"))]


def _recreate(conn, ddl: str, phase: int, journal_table: str, journal_id: int) -> None:
    conn.execute(text(ddl))
    conn.execute(text(f"UPDATE {journal_table} SET report = jsonb_set(report, ARRAY['set_aside', :p], "
                      "(report->'set_aside'->:pi) - CAST(:d AS text)) WHERE id = :i"),
                 {"p": str(phase), "pi": phase, "d": ddl, "i": journal_id})


def restore(loader: Loader | None, engine, journal_table: str, journal_id: int) -> int:
    """Recreate what :func:`set_aside` journalled (indexes and unique constraints, then foreign keys),
    in parallel on ``loader``'s connections (or one by one without one); returns the count."""
    with engine.connect() as conn:
        phases = dict(pending(conn, journal_table)).get(journal_id) or [[], []]
    n = 0
    for phase, ddls in enumerate(phases):
        for ddl in ddls:
            if loader is not None:
                loader.submit(_recreate, ddl, phase, journal_table, journal_id)
            else:
                with engine.begin() as conn:
                    _recreate(conn, ddl, phase, journal_table, journal_id)
            n += 1
        if loader is not None:
            loader.wait()
    return n
