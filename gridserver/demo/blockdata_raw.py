"""The demo block data as the departments deliver it: import runs, raw rows and confirmation dates.

Every demo record links to a raw row (``bd_raw_rows``) of an import run (``bd_imports``) of its
department, as if ``gridserver import`` had read the department's file:

* one import run per dataset (住建局 buildings, 公安户籍 households and people, 市场监管 businesses),
  dated at the department's last delivery;
* one raw row per record, keyed by the roles the importer reads (``address``, ``id_number``, ``phone``,
  ``name`` …; :data:`gridserver.blockdata.importer.COLUMNS`) with the values as delivered — and, as the
  importer stores them, the ID number and phone **only masked** (:func:`~gridserver.blockdata.privacy.mask_id`,
  :func:`~gridserver.blockdata.privacy.mask_phone`), people also carrying their ``id_hash`` (the HMAC the
  importer keeps in a raw row); ``row_hash`` is the SHA-1 of the row's JSON text (a content hash, unique
  per dataset like the importer's);
* ``confirmed_at`` per record spread over the months before the delivery (about half at the last
  regular check, the rest earlier, some long ago) and the delivery dates drawn so that some datasets
  are overdue for their update rule (the registry, ``GET /api/v1/datasets``, has something to show).

Dates count back from the start of the build day (UTC), so a build is deterministic by seed within a
day. The JSON text and the hash input are built column-wise by Arrow kernels, not row by row.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEMO_ACTOR = "demo"
#: dataset kind → (department, update rule, days from its last delivery to the build day: range drawn by seed)
DATASETS = {
    "buildings": ("住建局", "yearly", (380, 430)),      # the yearly survey is late: overdue
    "households": ("公安户籍", "monthly", (34, 45)),    # overdue
    "people": ("公安户籍", "monthly", (3, 20)),
    "businesses": ("市场监管", "weekly", (1, 5)),
}
_RULE_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "quarterly": 92, "yearly": 366}


def deliveries(rng: np.random.Generator, today: datetime | None = None) -> dict[str, datetime]:
    """The moment of each dataset's last delivery (a working-hours time, ``DATASETS``' day range)."""
    day = (today or datetime.now(timezone.utc)).replace(hour=0, minute=0, second=0, microsecond=0)
    out = {}
    for kind, (_, _, (lo, hi)) in DATASETS.items():
        out[kind] = day - timedelta(days=int(rng.integers(lo, hi + 1))) + timedelta(
            hours=int(rng.integers(9, 18)), minutes=int(rng.integers(0, 60)), seconds=int(rng.integers(0, 60)))
    return out


def confirmed_dates(rng: np.random.Generator, n: int, kind: str, delivered: datetime) -> np.ndarray:
    """When each of ``n`` records was last confirmed (UTC ``datetime64[s]``, never after ``delivered``):
    55 % within the dataset's update period before the delivery, the rest earlier (exponential, mean
    4 months, at most 3 years)."""
    period = _RULE_DAYS[DATASETS[kind][1]]
    age = np.where(rng.random(n) < 0.55, rng.uniform(0, period, n), period + rng.exponential(120, n))
    secs = (np.minimum(age, 3 * 365) * 86_400).astype(np.int64)
    return np.datetime64(delivered.astimezone(timezone.utc).replace(tzinfo=None), "s") - secs.astype("timedelta64[s]")


def timestamps(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype("datetime64[s]"), pa.timestamp("s", tz="UTC"))


def constant(value, n: int, type_=pa.string()) -> pa.Array:
    return pa.array([value], type_).take(pa.array(np.zeros(n, dtype=np.int32)))


def _json_string(v: pa.Array) -> pa.Array:
    """The values escaped for the inside of a JSON string (no control characters expected)."""
    if not pc.any(pc.match_substring_regex(v, '["\\\\\\x00-\\x1f]')).as_py():
        return v  # the usual case: nothing to escape
    if pc.any(pc.match_substring_regex(v, "[\\x00-\\x1f]")).as_py():
        raise ValueError("demo raw row values must not hold control characters")
    return pc.replace_substring(pc.replace_substring(v, "\\", "\\\\"), '"', '\\"')


def raw_rows(kind: str, source: str, import_id: int, first_id: int, fields: dict[str, pa.Array]) -> tuple[pa.Table, str]:
    """The ``bd_raw_rows`` table of one dataset (ids from ``first_id``, ``row_no`` as in a file with a
    header: 2, 3, …) and the import's file hash; ``fields`` maps the importer's roles to string arrays
    (already masked; empty string for an empty cell)."""
    keys = sorted(fields)
    n = len(fields[keys[0]])
    parts: list = ["{"]
    for i, k in enumerate(keys):
        parts += [("" if i == 0 else ", ") + f'"{k}": "', _json_string(fields[k]), '"']
    parts.append("}")
    data = pc.binary_join_element_wise(*parts, "")
    sha1 = hashlib.sha1
    hashes = [sha1(b).hexdigest() for b in data.cast(pa.binary()).to_pylist()]
    table = pa.table({
        "id": pa.array(np.arange(first_id, first_id + n, dtype=np.int64)),
        "import_id": constant(import_id, n, pa.int64()), "kind": constant(kind, n), "source": constant(source, n),
        "row_no": pa.array(np.arange(2, n + 2, dtype=np.int32)), "row_hash": pa.array(hashes, pa.string()), "data": data})
    return table, hashlib.sha256("\n".join(hashes).encode()).hexdigest()
