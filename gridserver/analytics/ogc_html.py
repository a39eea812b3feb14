"""HTML views of the OGC API Features resources: every datum and every link of the JSON, links as <a>."""

from __future__ import annotations

import json
from html import escape


def _links(links: list[dict]) -> str:
    items = "".join(
        f'<li><a href="{escape(link["href"])}" rel="{escape(link["rel"])}" type="{escape(link.get("type", ""))}">'
        f'{escape(link.get("title") or link["rel"])}</a> <small>({escape(link["rel"])}, {escape(link.get("type", ""))})</small></li>'
        for link in links)
    return f"<h2>链接 links</h2><ul>{items}</ul>"


def _value(v) -> str:
    if isinstance(v, (dict, list)):
        return f"<pre>{escape(json.dumps(v, ensure_ascii=False, indent=1))}</pre>"
    return escape("" if v is None else str(v))


def _table(d: dict, skip=("links",)) -> str:
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{_value(v)}</td></tr>" for k, v in d.items() if k not in skip)
    return f"<table>{rows}</table>"


def page(title: str, body: str) -> str:
    return ("<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
            f"<title>{escape(title)}</title><style>body{{font-family:sans-serif;margin:1.5em}}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;"
            "vertical-align:top}pre{margin:0}</style></head>"
            f"<body><h1>{escape(title)}</h1>{body}</body></html>")


def render(kind: str, doc: dict) -> str:
    """HTML for a landing page, conformance, collections, collection, items or feature document."""
    if kind == "collections":
        parts = []
        for c in doc["collections"]:
            parts.append(f"<h3>{escape(c.get('title') or c['id'])} ({escape(c['id'])})</h3>{_table(c)}{_links(c['links'])}")
        return page("数据集合 collections", "".join(parts) + _links(doc["links"]))
    if kind == "items":
        head = {k: v for k, v in doc.items() if k not in ("features", "links", "type")}
        rows = []
        for f in doc["features"]:
            rows.append(f"<h3>{escape(str(f['id']))}</h3>{_table(f['properties'], skip=())}"
                        f"<p>geometry: {_value(f['geometry'])}</p>" + (_links(f["links"]) if f.get("links") else ""))
        return page("要素 features", _table(head) + "".join(rows) + _links(doc["links"]))
    if kind == "feature":
        return page(f"要素 feature {doc['id']}", _table(doc["properties"], skip=())
                    + f"<p>geometry: {_value(doc['geometry'])}</p>" + _links(doc["links"]))
    if kind == "conformance":
        items = "".join(f"<li><a href='{escape(u)}'>{escape(u)}</a></li>" for u in doc["conformsTo"])
        return page("符合性 conformance", f"<ul>{items}</ul>" + _links(doc.get("links", [])))
    title = doc.get("title") or kind
    return page(title, _table(doc) + _links(doc.get("links", [])))
