"""``POST /api/v1/imports/{kind}``: upload a block-data table over HTTP; it is imported by a background job.

The same job ``gridserver import KIND FILE --source NAME --detach`` queues (``blockdata.import``):
the upload streams to disk under the body limit (``gridserver/limits.py``, 413 while it streams in),
into ``$GRIDSERVER_HOME/imports/<random>/<file name>``; the file is read and its header checked
first (a malformed, empty or unreadable file, or a missing column → 422 naming the row or column,
nothing queued); then the job is queued in the request's transaction together with the
``Idempotency-Key`` answer, and the answer is **202** with the job id and ``Location:
/api/v1/jobs/{id}``. Bad rows inside a good file are the job's business, as on the command line:
reported by row and column in the job result and queued for review. Admins only (``IMPORT_ROLES``).
"""

from __future__ import annotations

import re
import secrets
import shutil
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from sqlalchemy.orm import Session

from gridserver.auth.deps import require_roles
from gridserver.auth.users import User
from gridserver.db.engine import get_session
from gridserver.db.idempotency import Idempotency, idempotency
from gridserver.errors import InvalidInput
from gridserver.limits import MB, LimitedBodyRoute, max_body

router = APIRouter(prefix="/api/v1", tags=["实有人口房屋法人 block data"], route_class=LimitedBodyRoute)

#: Roles that may load departmental tables (every row is personal data of the whole city).
IMPORT_ROLES = ("admin",)
#: One upload: a 1 M-row people CSV is ~150 MB.
MAX_UPLOAD = 512 * MB
SUFFIXES = (".csv", ".xlsx", ".xlsm", ".parquet", ".geoparquet")
_LINE = re.compile(r"line (\d+)")


def upload_dir() -> Path:
    from gridserver.settings import get_settings

    return get_settings().home / "imports"


def _safe_name(filename: str | None) -> str:
    name = Path(filename or "").name.strip()
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInput(f"上传文件 {name or '(no name)'!r}: the file name must end in {', '.join(SUFFIXES)} "
                           "(CSV UTF-8/GB18030, xlsx or GeoParquet)", code="unsupported_file", extra={"field": "file"})
    stem = re.sub(r"[^\w.\-]+", "_", Path(name).stem)[:100] or "upload"
    return stem + suffix


def _read_header(path: Path) -> tuple[list[str], int]:
    """(header, data rows) of the file; a CSV is read in chunks (memory stays small for big files)."""
    from gridserver.blockdata.importer import read_table

    if path.suffix.lower() != ".csv" or path.stat().st_size == 0:
        df, _ = read_table(path)
        return [str(c) for c in df.columns], len(df)
    import pandas as pd

    from gridserver.address.importer import detect_encoding

    header, rows = None, 0
    try:
        for chunk in pd.read_csv(path, dtype=str, keep_default_na=False, encoding=detect_encoding(path, None),
                                 skip_blank_lines=True, chunksize=100_000):
            header = header or [str(c) for c in chunk.columns]
            rows += len(chunk)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{path.name}: malformed CSV ({str(exc).strip()})") from None
    return header or [], rows


def preflight(path: Path, kind: str, mapping: str | None) -> int:
    """Read the file and check its header as the import will; returns its data rows. InvalidInput
    (422) names the row (``row``, the file's line: the header is row 1) or column (``column``)."""
    from gridserver.blockdata.importer import parse_mapping, resolve_columns

    roles = parse_mapping(mapping)  # InvalidInput names the bad item
    try:
        header, rows = _read_header(path)
    except InvalidInput as exc:
        m = _LINE.search(exc.detail)
        exc.extra = {**exc.extra, **({"row": int(m.group(1))} if m else {})}
        raise
    if rows == 0:
        raise InvalidInput(f"{path.name}: no data rows under the header", extra={"row": 2})
    try:
        resolve_columns(kind, header, roles, path.name)
    except InvalidInput as exc:
        missing = re.search(r"column (?:'([^']+)'|for (\w+))", exc.detail)
        exc.extra = {**exc.extra, "row": 1, "column": (missing.group(1) or missing.group(2)) if missing else None,
                     "columns": header}
        raise
    return rows


@router.post("/imports/{kind}", status_code=202, openapi_extra=max_body(MAX_UPLOAD),
             summary="导入 upload a people/households/buildings/businesses table (background job)",
             responses={202: {"description": "queued: follow the job at Location (GET /api/v1/jobs/{id})"},
                        413: {"description": "the upload is larger than the limit"},
                        422: {"description": "unreadable file or missing column (row/column named); nothing queued"}})
def upload_import(kind: Literal["people", "households", "buildings", "businesses"], response: Response,
                  file: UploadFile = File(..., description="CSV (UTF-8/GB18030), .xlsx or GeoParquet"),
                  source: str = Form(..., min_length=1, max_length=100, description="提供部门 the department the table comes from"),
                  mapping: str | None = Form(None, max_length=2000, description="role=column,… e.g. id_number=证件号,address=住址"),
                  crs: str = Form("wgs84", max_length=50, description="CRS of coordinates/footprints (wgs84, gcj02, …)"),
                  update_rule: Literal["daily", "weekly", "monthly", "quarterly", "yearly", "once"] | None = Form(None),
                  user: User = Depends(require_roles(*IMPORT_ROLES)),
                  session: Session = Depends(get_session, scope="function"),
                  idem: Idempotency = Depends(idempotency)):
    """Streams the file to disk, checks it, queues ``blockdata.import`` and answers 202 with the job
    (``Idempotency-Key``: a retry returns the same job and queues nothing)."""
    from gridserver.geo.crs import normalize_crs
    from gridserver.jobs import enqueue

    if (replay := idem.replay(session, user)) is not None:
        return replay
    name = _safe_name(file.filename)
    if not source.strip():
        raise InvalidInput("source must name the department the table comes from", extra={"field": "source"})
    try:
        normalize_crs(crs)
    except Exception as exc:  # noqa: BLE001 — any refusal of the CRS is the client's input
        raise InvalidInput(f"crs {crs!r}: {getattr(exc, 'detail', exc)}", extra={"field": "crs"}) from None
    folder = upload_dir() / secrets.token_hex(12)
    folder.mkdir(parents=True)
    path = folder / name
    try:
        with open(path, "wb") as out:
            shutil.copyfileobj(file.file, out, 1 << 20)
        rows = preflight(path, kind, mapping)
        job_id = enqueue("blockdata.import", {"path": str(path.resolve()), "kind": kind, "source": source.strip(),
                                              "mapping": mapping, "crs": crs, "encoding": None,
                                              "actor": user.username, "update_rule": update_rule},
                         conn=session, created_by=user.username, total=rows)
        location = f"/api/v1/jobs/{job_id}"
        out = {"job_id": job_id, "state": "queued", "kind": kind, "source": source.strip(), "file": name,
               "rows": rows, "size": path.stat().st_size, "status_url": location}
        idem.save(session, out, 202, {"Location": location})
        session.commit()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # nothing queued: keep no copy of the personal data
        raise
    response.headers["Location"] = location
    return out
