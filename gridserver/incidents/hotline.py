"""12345 hotline work orders (工单) in bulk: CSV (UTF-8/GB18030) or xlsx with address text.

Columns (Chinese or English headers): 工单号/order_no, 诉求内容/description, 地址/address, and
optionally 分类/category (a taxonomy code or a category/item name), 来电时间/called_at, 联系电话/phone.
Each row is geocoded through the standard address base (``address.geocode``) and filed through the
same intake as any report (routing, deadlines, duplicates, event log) with channel ``hotline``;
rows it cannot place go to the manual dispatch queue with the reason. Without a category the item
is guessed from the taxonomy's keywords (else ``other_05``). Re-importing skips work orders already
filed (by 工单号). Bad rows (no description and no address) are rejected with row number and reason.
"""

from __future__ import annotations

import io
import secrets
from pathlib import Path

from sqlalchemy import text

from gridserver.errors import GridserverError, InvalidInput
from gridserver.incidents import taxonomy

HOTLINE_USER = "hotline12345"
HEADERS = {"工单号": "order_no", "诉求内容": "description", "内容": "description", "地址": "address",
           "分类": "category", "来电时间": "called_at", "联系电话": "phone"}
FALLBACK = "other_05"


def read_table(data: bytes, filename: str) -> list[dict]:
    """Rows as dicts with English keys; InvalidInput for unreadable files or missing columns."""
    import pandas as pd

    try:
        if filename.lower().endswith((".xlsx", ".xlsm")):
            df = pd.read_excel(io.BytesIO(data), dtype=str)
        else:
            try:
                raw = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                raw = data.decode("gb18030")
            df = pd.read_csv(io.StringIO(raw), dtype=str)
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"{filename}: cannot read the table: {exc}") from None
    df = df.rename(columns={c: HEADERS.get(str(c).strip(), str(c).strip()) for c in df.columns}).fillna("")
    missing = [c for c in ("order_no", "description", "address") if c not in df.columns]
    if missing:
        raise InvalidInput(f"{filename}: missing columns {', '.join(missing)} (工单号, 诉求内容, 地址)")
    return df.to_dict("records")


def guess_item(tax: taxonomy.Taxonomy, description: str) -> str:
    """The item whose keywords occur most in the description (ties: the first); FALLBACK if none."""
    best, best_n = None, 0
    for item in tax.items():
        n = sum(1 for k in item.keywords.split() if k and k in description)
        if n > best_n:
            best, best_n = item.code, n
    return best or (FALLBACK if FALLBACK in tax.nodes else tax.items()[0].code)


def _category(tax, value: str, description: str) -> str:
    value = (value or "").strip()
    if value in tax.nodes:
        return value
    for n in tax.nodes.values():
        if value and n.name == value:
            return n.code
    return guess_item(tax, description)


def hotline_user(conn):
    from gridserver.auth.users import create_user, get_user

    u = get_user(conn, HOTLINE_USER)
    if u is None:
        u = create_user(conn, HOTLINE_USER, secrets.token_urlsafe(24), "citizen", full_name="12345热线")
    return u


def import_rows(conn, rows: list[dict], source_name: str = "12345") -> dict:
    """File every row (see the module doc); returns {rows, filed, placed, manual, skipped, rejected}. No commit."""
    from gridserver.incidents.service import create_incident

    tax = taxonomy.active(conn)
    user = hotline_user(conn)
    out = {"rows": len(rows), "filed": 0, "placed": 0, "manual": 0, "skipped": 0, "rejected": [], "ids": []}
    known = {r[0] for r in conn.execute(text(
        "SELECT contact->>'order_no' FROM incidents WHERE channel = 'hotline' AND contact ? 'order_no'"))}
    for n, row in enumerate(rows, start=2):
        order = str(row.get("order_no", "")).strip()
        desc, addr = str(row.get("description", "")).strip(), str(row.get("address", "")).strip()
        if not desc and not addr:
            out["rejected"].append({"row": n, "order_no": order, "reason": "诉求内容和地址都为空 no description and no address"})
            continue
        if order and order in known:
            out["skipped"] += 1
            continue
        data = {"category": _category(tax, row.get("category", ""), desc), "description": desc[:2000],
                "address": addr[:500] or "地址不详", "contact": {"order_no": order, "phone": row.get("phone") or None,
                                                             "source": source_name}}
        try:
            with conn.begin_nested():
                inc = create_incident(conn, data, user, source="hotline", channel="hotline", outside="manual")
        except GridserverError as exc:
            out["rejected"].append({"row": n, "order_no": order, "reason": exc.detail})
            continue
        known.add(order)
        out["filed"] += 1
        out["ids"].append(inc["id"])
        out["manual" if inc["manual_reason"] else "placed"] += 1
    return out


def import_file(conn, path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"file {str(p)!r} does not exist")
    return import_rows(conn, read_table(p.read_bytes(), p.name), p.name)
