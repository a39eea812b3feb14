"""Import departmental address tables (CSV or xlsx) through the matcher into the standard base.

``import_file(path, source=...)`` checks the whole file before writing anything (encoding, header,
column mapping, at least one data row), then streams it in chunks: each chunk is normalised and
parsed in one batch, matched set-based (:mod:`gridserver.address.matcher`), unmatched addresses are
created as *pending* standard addresses, and every row is stored in ``dept_records`` with its verdict.
The whole import is one transaction: it lands completely or not at all.

Idempotent: a file already imported under the same source (same SHA-256) is skipped, and rows whose
hash (source + mapped values) is already stored are counted as ``unchanged``, so re-importing the same
rows — even from another file — changes nothing.

Column mapping (``--map``): ``address=地址,lon=经度,lat=纬度,id=编号,crs=坐标系``. ``address`` may join
several columns with ``+`` (``address=街路巷+门牌号+楼栋+房号``). Without a mapping the usual Chinese and
English column names are recognised.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import math
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import text

from gridserver.address.base import bulk_create, copy_rows, road_gazetteer, set_actor, NewAddress
from gridserver.address.matcher import AreaNames, Match, RowIn, match_rows
from gridserver.address.parsing import parser_name
from gridserver.errors import InvalidInput, UnknownCRS
from gridserver.geo.crs import normalize_crs, to_wgs84

#: Column names recognised without a mapping, per role.
DEFAULT_COLUMNS = {
    "address": ("地址", "详细地址", "标准地址", "住址", "登记地址", "经营场所", "房屋地址", "address", "addr"),
    "lon": ("经度", "lon", "lng", "longitude", "x"),
    "lat": ("纬度", "lat", "latitude", "y"),
    "id": ("编号", "记录编号", "id", "序号", "code"),
    "crs": ("坐标系", "crs"),
}
ENCODINGS = ("utf-8-sig", "gb18030")
CHUNK_ROWS = 20_000


@dataclass
class ImportSummary:
    source: str
    file: str
    import_id: int | None = None
    rows: int = 0
    matched: int = 0
    new: int = 0
    review: int = 0
    rejected: int = 0
    unchanged: int = 0
    already_imported: bool = False
    seconds: float = 0.0
    encoding: str | None = None
    parser: str = ""
    rejected_file: str | None = None
    reasons: Counter = field(default_factory=Counter)
    methods: Counter = field(default_factory=Counter)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("source", "file", "import_id", "rows", "matched", "new", "review",
                                           "rejected", "unchanged", "already_imported", "seconds", "encoding",
                                           "parser", "rejected_file")}
        d["rows_per_second"] = round(self.rows_per_second, 1)
        d["reasons"] = dict(self.reasons)
        d["methods"] = dict(self.methods)
        return d


# --- reading -------------------------------------------------------------------------------------
def parse_mapping(spec: str | None) -> dict[str, list[str]]:
    """``address=地址,lon=经度`` → {"address": ["地址"], "lon": ["经度"]}; ``+`` joins address columns."""
    if not spec:
        return {}
    out: dict[str, list[str]] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise InvalidInput(f"--map item {item!r} must look like role=column, e.g. address=地址")
        role, col = (s.strip() for s in item.split("=", 1))
        if role not in DEFAULT_COLUMNS:
            raise InvalidInput(f"--map role {role!r} unknown: use {', '.join(DEFAULT_COLUMNS)}")
        if not col:
            raise InvalidInput(f"--map {role}= names no column")
        out[role] = [c.strip() for c in col.split("+")] if role == "address" else [col]
    return out


def detect_encoding(path: Path, encoding: str | None = None) -> str:
    """The file's text encoding: ``encoding`` if given and valid, else UTF-8 (with or without BOM) or
    GB18030, checked over the whole file. InvalidInput names the byte offset where decoding failed."""
    tried = [encoding] if encoding else list(ENCODINGS)
    errors = []
    for enc in tried:
        try:
            codecs.lookup(enc)
        except LookupError:
            raise InvalidInput(f"unknown encoding {enc!r}") from None
        dec = codecs.getincrementaldecoder(enc)()
        offset = 0
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    dec.decode(chunk)
                    offset += len(chunk)
                dec.decode(b"", final=True)
            return enc
        except UnicodeDecodeError as exc:
            errors.append(f"{enc}: invalid byte at offset {offset + exc.start}")
    raise InvalidInput(f"{path.name}: cannot read the text encoding ({'; '.join(errors)}); "
                       "save the table as UTF-8 or GB18030 (GBK), or give --encoding")


class Table:
    """Header + row iterator over a CSV or xlsx file, with roles resolved to column positions."""

    def __init__(self, path: Path, mapping: dict[str, list[str]], encoding: str | None = None,
                 sheet: str | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise InvalidInput(f"file not found: {path}")
        if self.path.stat().st_size == 0:
            raise InvalidInput(f"{self.path.name}: the file is empty (no header, no rows)")
        self.kind = "xlsx" if self.path.suffix.lower() in (".xlsx", ".xlsm") else "csv"
        self.encoding = None
        self.sheet = sheet
        if self.kind == "csv":
            self.encoding = detect_encoding(self.path, encoding)
        header = self._header()
        if not header or not any(h for h in header):
            raise InvalidInput(f"{self.path.name}: the first row is empty; it must hold the column names")
        self.header = header
        self.columns = self._resolve(mapping)
        self.total = self._count_rows()
        if self.total == 0:
            raise InvalidInput(f"{self.path.name}: no data rows under the header")

    # header / rows ------------------------------------------------------------------------------
    def _open_xlsx(self):
        import openpyxl

        try:
            wb = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
            raise InvalidInput(f"{self.path.name}: not a readable .xlsx workbook ({exc.__class__.__name__}: {exc})") from None
        if self.sheet:
            if self.sheet not in wb.sheetnames:
                raise InvalidInput(f"{self.path.name}: no sheet {self.sheet!r}; sheets: {', '.join(wb.sheetnames)}")
            return wb, wb[self.sheet]
        return wb, wb.worksheets[0]

    def _raw_rows(self) -> Iterator[list[str]]:
        if self.kind == "csv":
            with open(self.path, encoding=self.encoding, newline="") as f:
                try:
                    for row in csv.reader(f):
                        yield row
                except csv.Error as exc:
                    raise InvalidInput(f"{self.path.name}: malformed CSV ({exc})") from None
        else:
            wb, ws = self._open_xlsx()
            try:
                for row in ws.iter_rows(values_only=True):
                    yield ["" if v is None else str(v) for v in row]
            finally:
                wb.close()

    def _header(self) -> list[str]:
        for row in self._raw_rows():
            return [h.strip().lstrip("\ufeff") for h in row]
        return []

    def _count_rows(self) -> int:
        n = 0
        it = self._raw_rows()
        next(it, None)
        for row in it:
            if any(c.strip() for c in row):
                n += 1
        return n

    def _resolve(self, mapping: dict[str, list[str]]) -> dict[str, list[int]]:
        lower = {h.lower(): i for i, h in enumerate(self.header)}
        cols: dict[str, list[int]] = {}
        for role, names in mapping.items():
            idx = []
            for name in names:
                if name.lower() not in lower:
                    raise InvalidInput(f"{self.path.name}: column {name!r} (for {role}) not found; "
                                       f"columns are: {', '.join(self.header)}")
                idx.append(lower[name.lower()])
            cols[role] = idx
        for role, names in DEFAULT_COLUMNS.items():
            if role in cols:
                continue
            for name in names:
                if name.lower() in lower:
                    cols[role] = [lower[name.lower()]]
                    break
        if "address" not in cols:
            hint = " (the header looks garbled: is the encoding right?)" if self.encoding and not any(
                "\u4e00" <= ch <= "\u9fff" or ch.isascii() for h in self.header for ch in h) else ""
            raise InvalidInput(f"{self.path.name}: missing the address column: none of "
                               f"{', '.join(DEFAULT_COLUMNS['address'])} found among columns "
                               f"{', '.join(self.header)}{hint}; name it with --map address=<column>")
        if ("lon" in cols) != ("lat" in cols):
            raise InvalidInput(f"{self.path.name}: give both a longitude and a latitude column, or neither")
        return cols

    def rows(self) -> Iterator[tuple[int, dict]]:
        """(row number in the file, {role: value}) for every non-empty data row; row 1 is the header."""
        it = self._raw_rows()
        next(it, None)
        width = len(self.header)
        for n, row in enumerate(it, start=2):
            if not any(c.strip() for c in row):
                continue
            row = row + [""] * (width - len(row))
            vals = {role: "".join(row[i].strip() for i in idx) for role, idx in self.columns.items()}
            yield n, vals


# --- import --------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _row_hash(source: str, vals: dict) -> str:
    blob = "\x1f".join([source] + [f"{k}={vals[k]}" for k in sorted(vals)])
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()


def _points(chunk: list[tuple[int, dict]], default_crs: str) -> tuple[dict[int, tuple[float, float]], dict[int, str]]:
    """WGS84 points per row number (vectorised per CRS); bad coordinates become a rejection reason."""
    bad: dict[int, str] = {}
    by_crs: dict[str, list[tuple[int, float, float]]] = {}
    for n, v in chunk:
        x, y = v.get("lon", ""), v.get("lat", "")
        if not x and not y:
            continue
        try:
            fx, fy = float(x), float(y)
            if not (math.isfinite(fx) and math.isfinite(fy)):
                raise ValueError
        except ValueError:
            bad[n] = f"bad coordinates: lon={x!r} lat={y!r}"
            continue
        try:
            crs = normalize_crs(v.get("crs") or default_crs)
        except UnknownCRS as exc:
            bad[n] = exc.detail
            continue
        by_crs.setdefault(crs, []).append((n, fx, fy))
    out: dict[int, tuple[float, float]] = {}
    for crs, items in by_crs.items():
        ns = [i[0] for i in items]
        xs = np.array([i[1] for i in items])
        ys = np.array([i[2] for i in items])
        if crs in ("wgs84", "cgcs2000", "gcj02", "bd09"):
            ok = (np.abs(xs) <= 180) & (np.abs(ys) <= 90)
            for n, good in zip(ns, ok):
                if not good:
                    bad[n] = "bad coordinates: lon/lat out of range"
        lon, lat = to_wgs84(xs, ys, crs)
        for n, a, b in zip(ns, np.atleast_1d(lon), np.atleast_1d(lat)):
            if n not in bad:
                out[n] = (float(a), float(b))
    return out, bad


_DEPT_COLS = ("import_id", "source", "source_key", "row_no", "row_hash", "raw_text", "normalised", "parsed",
              "match_key", "geom", "status", "method", "score", "address_id", "candidate_id", "reason")


def import_file(engine, path: Path, *, source: str, mapping: str | dict | None = None, rejected: Path | None = None,
                encoding: str | None = None, sheet: str | None = None, crs: str = "wgs84", actor: str = "import",
                chunk_rows: int = CHUNK_ROWS, progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """Import one departmental table; returns the summary. Raises InvalidInput before writing anything
    when the file cannot be read as a table with an address column."""
    t0 = time.perf_counter()
    path = Path(path)
    source = (source or "").strip()
    if not source:
        raise InvalidInput("--source must name the department the table comes from")
    default_crs = normalize_crs(crs)
    table = Table(path, mapping if isinstance(mapping, dict) else parse_mapping(mapping), encoding, sheet)
    digest = file_sha256(path)
    summary = ImportSummary(source=source, file=str(path), encoding=table.encoding, parser=parser_name())
    with engine.begin() as conn:
        done = conn.execute(text("SELECT id, rows_total FROM address_imports WHERE source = :s AND file_hash = :h "
                                 "AND status = 'done'"), {"s": source, "h": digest}).first()
        if done:
            summary.already_imported, summary.import_id = True, done.id
            summary.rows = summary.unchanged = done.rows_total
            summary.seconds = time.perf_counter() - t0
            return summary
    rejected_path = Path(rejected) if rejected else path.with_name(path.stem + ".rejected.csv")
    try:
        with engine.begin() as conn, open(rejected_path, "w", encoding="utf-8-sig", newline="") as rej:
            writer = csv.writer(rej)
            writer.writerow(["行号 row", "编号 id", "地址 address", "原因 reason"])
            import_id = conn.execute(text("INSERT INTO address_imports (source, file_name, file_hash, actor) "
                                          "VALUES (:s, :f, :h, :a) RETURNING id"),
                                     {"s": source, "f": path.name, "h": digest, "a": actor}).scalar()
            summary.import_id = import_id
            set_actor(conn, actor, "import", f"import {path.name} from {source}")
            gaz = road_gazetteer(conn)
            areas = AreaNames(conn)
            chunk: list[tuple[int, dict]] = []
            for item in table.rows():
                chunk.append(item)
                if len(chunk) >= chunk_rows:
                    _import_chunk(conn, chunk, source, import_id, default_crs, gaz, areas, writer, summary)
                    if progress:
                        progress(len(chunk), table.total)
                    chunk = []
            if chunk:
                _import_chunk(conn, chunk, source, import_id, default_crs, gaz, areas, writer, summary)
                if progress:
                    progress(len(chunk), table.total)
            conn.execute(text(
                """UPDATE address_imports SET status = 'done', finished_at = now(), rows_total = :rows,
                       matched = :matched, new = :new, review = :review, rejected = :rejected, unchanged = :unchanged
                   WHERE id = :id"""),
                {"rows": summary.rows, "matched": summary.matched, "new": summary.new, "review": summary.review,
                 "rejected": summary.rejected, "unchanged": summary.unchanged, "id": import_id})
    except BaseException:
        rejected_path.unlink(missing_ok=True)
        try:  # leave a trace of the failed run; the rows themselves were rolled back
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO address_imports (source, file_name, file_hash, actor, status, "
                                  "finished_at) VALUES (:s, :f, :h, :a, 'failed', now())"),
                             {"s": source, "f": path.name, "h": digest, "a": actor})
        except Exception:
            pass
        raise
    summary.rejected_file = str(rejected_path) if summary.rejected else None
    if not summary.rejected:
        rejected_path.unlink(missing_ok=True)
    summary.seconds = time.perf_counter() - t0
    return summary


def _import_chunk(conn, chunk, source, import_id, default_crs, gaz, areas, writer, summary: ImportSummary) -> None:
    summary.rows += len(chunk)
    hashes = {n: _row_hash(source, v) for n, v in chunk}
    known = set(conn.execute(text("SELECT row_hash FROM dept_records WHERE source = :s AND row_hash = ANY(:h)"),
                             {"s": source, "h": list(set(hashes.values()))}).scalars())
    fresh, seen = [], set()
    for n, v in chunk:
        h = hashes[n]
        if h in known or h in seen:
            summary.unchanged += 1
            continue
        seen.add(h)
        fresh.append((n, v))
    if not fresh:
        return
    points, bad = _points(fresh, default_crs)
    rows = [RowIn(idx=n, text=v["address"], lon=points.get(n, (None, None))[0], lat=points.get(n, (None, None))[1])
            for n, v in fresh if n not in bad]
    results = {m.idx: m for m in match_rows(conn, rows, gazetteer=gaz, areas=areas)}
    for n, why in bad.items():
        results[n] = Match(idx=n, status="rejected", reason=why)

    # Hits on still-pending addresses stay in the queue with that address.
    hit_ids = list({m.address_id for m in results.values() if m.status == "matched" and m.address_id})
    if hit_ids:
        pending = set(conn.execute(text("SELECT id FROM std_addresses WHERE id = ANY(:i) AND status = 'pending'"),
                                   {"i": hit_ids}).scalars())
        for m in results.values():
            if m.status == "matched" and m.address_id in pending:
                m.status, m.reason = "new", "same as an address still pending review"

    fresh_new = [m for m in results.values() if m.status == "new" and m.address_id is None]
    if fresh_new:
        created = bulk_create(conn, [NewAddress(*m.key.split("|"), lon=points.get(m.idx, (None, None))[0],
                                                lat=points.get(m.idx, (None, None))[1], geom_source="department")
                                     for m in fresh_new],
                              status="pending", source=source)
        for m in fresh_new:
            m.address_id = created.get(m.key)
            if m.address_id is None:  # its parent vanished or was retired meanwhile
                m.status, m.reason = "review", "could not create the new address (parent missing)"

    def records():
        for n, v in fresh:
            m = results[n]
            pt = points.get(n)
            geom = f"SRID=4326;POINT({pt[0]} {pt[1]})" if pt else None
            yield (import_id, source, v.get("id") or None, n, hashes[n], v["address"], m.normalised,
                   json.dumps(m.parsed(), ensure_ascii=False), m.key, geom, m.status, m.method, m.score,
                   m.address_id, m.candidate_id, m.reason)

    copy_rows(conn, "dept_records", _DEPT_COLS, records())
    for n, v in fresh:
        m = results[n]
        setattr(summary, m.status, getattr(summary, m.status) + 1)
        summary.methods[m.method or m.status] += 1
        if m.status == "rejected":
            summary.reasons[(m.reason or "").split(":")[0]] += 1
            writer.writerow([n, v.get("id", ""), v["address"], m.reason])
