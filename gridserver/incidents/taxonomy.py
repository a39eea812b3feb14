"""Incident taxonomy (事件分类) as configuration: a category → item tree loaded from YAML or CSV.

Every item (leaf) names the department that handles it at each admin level (grid, community,
street, district), the level it is first dispatched to, its handling deadline (``3wd`` = 3 working
days, ``4h`` = 4 hours) and its workflow (``general`` 9-node or ``simple`` 5-node). A category gives
defaults its items inherit. Every load is a new version in ``taxonomy_versions``; exactly one is
active. The shipped default is ``data/taxonomy-yuexiu.yaml``; it is loaded on first use when the
database has no taxonomy yet.

Category codes are valid incident categories too (the first slice's flat codes are the default
taxonomy's category codes): filing with a category routes by the category's own defaults.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sqlalchemy import text

from gridserver.errors import InvalidInput

LEVELS = ("grid", "community", "street", "district")
WORKFLOWS = ("general", "simple")
DEFAULT_FILE = Path(__file__).parent / "data" / "taxonomy-yuexiu.yaml"
_DEADLINE = re.compile(r"^(\d+(?:\.\d+)?)(wd|h)$")
_CODE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
DEFAULT_SETTINGS = {"dispatch_minutes": 30, "verify_working_days": 1, "reopen_days": 7}


@dataclass(frozen=True)
class Node:
    """A category (``parent`` None) or an item of the active taxonomy."""

    code: str
    name: str
    parent: str | None
    start_level: str
    departments: dict  # level → department code
    deadline: str
    workflow: str
    keywords: str = ""
    description: str = ""
    sort: int = 0

    @property
    def is_item(self) -> bool:
        return self.parent is not None


@dataclass
class Taxonomy:
    version: int
    name: str
    settings: dict
    departments: dict[str, dict]  # code → {name, level}
    nodes: dict[str, Node] = field(default_factory=dict)

    def node(self, code: str) -> Node:
        """The category or item ``code``; InvalidInput (422) listing the categories when unknown."""
        n = self.nodes.get(code)
        if n is None:
            cats = ", ".join(f"{c.code} ({c.name})" for c in self.categories())
            raise InvalidInput(f"未知事件分类 unknown category {code!r}; categories: {cats} "
                               f"(items: GET /api/v1/incidents/categories)")
        return n

    def categories(self) -> list[Node]:
        return sorted((n for n in self.nodes.values() if n.parent is None), key=lambda n: n.sort)

    def items(self, category: str | None = None) -> list[Node]:
        return sorted((n for n in self.nodes.values() if n.parent is not None and
                       (category is None or n.parent == category)), key=lambda n: n.sort)

    def category_of(self, code: str) -> str:
        n = self.node(code)
        return n.parent or n.code

    def department_name(self, code: str | None) -> str | None:
        if code is None:
            return None
        return self.departments.get(code, {}).get("name", code)

    def tree(self) -> list[dict]:
        """Categories with their items, for the public category list."""
        out = []
        for c in self.categories():
            out.append({"code": c.code, "label": c.name, "name": c.name,
                        "department": self.department_name(c.departments.get(c.start_level)),
                        "level": c.start_level, "deadline": c.deadline, "workflow": c.workflow,
                        "items": [{"code": i.code, "label": i.name, "level": i.start_level,
                                   "department": self.department_name(i.departments.get(i.start_level)),
                                   "departments": {lv: self.department_name(d) for lv, d in i.departments.items()},
                                   "deadline": i.deadline, "workflow": i.workflow}
                                  for i in self.items(c.code)]})
        return out


def parse_deadline(value: str, where: str) -> tuple[float, str]:
    m = _DEADLINE.match(str(value).strip())
    if not m:
        raise InvalidInput(f"{where}: deadline must look like '3wd' (working days) or '4h' (hours); got {value!r}")
    return float(m.group(1)), m.group(2)


# --- reading files --------------------------------------------------------------------------------
def _check_node(raw: dict, where: str, inherit: dict, departments: dict) -> dict:
    code = str(raw.get("code", "")).strip()
    if not _CODE.match(code):
        raise InvalidInput(f"{where}: code must be 1–64 letters, digits, '_' or '-'; got {code!r}")
    name = str(raw.get("name", "")).strip()
    if not name:
        raise InvalidInput(f"{where} ({code}): name is required")
    deps = dict(inherit.get("departments", {}))
    deps.update({k: v for k, v in (raw.get("departments") or {}).items() if v})
    for lv, dep in deps.items():
        if lv not in LEVELS:
            raise InvalidInput(f"{where} ({code}): unknown level {lv!r} in departments; levels: {', '.join(LEVELS)}")
        if dep not in departments:
            raise InvalidInput(f"{where} ({code}): department {dep!r} is not declared under 'departments'")
    level = raw.get("level", inherit.get("level"))
    if level not in LEVELS:
        raise InvalidInput(f"{where} ({code}): level must be one of {', '.join(LEVELS)}; got {level!r}")
    if level not in deps:
        raise InvalidInput(f"{where} ({code}): no department for its dispatch level {level!r}")
    deadline = str(raw.get("deadline", inherit.get("deadline", "")))
    parse_deadline(deadline, f"{where} ({code})")
    workflow = raw.get("workflow", inherit.get("workflow", "general"))
    if workflow not in WORKFLOWS:
        raise InvalidInput(f"{where} ({code}): workflow must be general or simple; got {workflow!r}")
    return {"code": code, "name": name, "start_level": level, "departments": deps, "deadline": deadline,
            "workflow": workflow, "keywords": str(raw.get("keywords", "") or ""),
            "description": str(raw.get("description", "") or "")}


def parse_yaml(data: dict) -> dict:
    """Validate a taxonomy document; InvalidInput naming the entry at fault."""
    if not isinstance(data, dict):
        raise InvalidInput("taxonomy file must be a mapping with 'departments' and 'categories'")
    departments = {}
    for code, d in (data.get("departments") or {}).items():
        if not isinstance(d, dict) or not d.get("name") or d.get("level") not in LEVELS:
            raise InvalidInput(f"departments.{code}: needs name and level (one of {', '.join(LEVELS)})")
        departments[str(code)] = {"name": str(d["name"]), "level": d["level"]}
    if not departments:
        raise InvalidInput("taxonomy declares no departments")
    nodes, seen = [], set()
    for ci, cat in enumerate(data.get("categories") or []):
        where = f"categories[{ci}]"
        c = _check_node(cat, where, {}, departments)
        c.update(parent=None, sort=len(nodes))
        nodes.append(c)
        for ii, item in enumerate(cat.get("items") or []):
            it = _check_node(item, f"{where}.items[{ii}]", {**c, "level": c["start_level"]}, departments)
            it.update(parent=c["code"], sort=len(nodes))
            nodes.append(it)
    for n in nodes:
        if n["code"] in seen:
            raise InvalidInput(f"duplicate code {n['code']!r} in the taxonomy")
        seen.add(n["code"])
    if not any(n["parent"] is None for n in nodes):
        raise InvalidInput("taxonomy has no categories")
    settings = {k: data.get(k, v) for k, v in DEFAULT_SETTINGS.items()}
    return {"name": str(data.get("name") or "taxonomy"), "settings": settings, "departments": departments,
            "nodes": nodes}


CSV_COLUMNS = ("category_code", "category_name", "code", "name", "level", "deadline", "workflow",
               "grid", "community", "street", "district")


def parse_csv(raw: str, name: str) -> dict:
    """One row per item: category_code, category_name, code, name, level, deadline, workflow and the
    department *names* per level (grid, community, street, district). Categories take the first
    item's level/deadline/workflow/departments as their defaults."""
    reader = csv.DictReader(io.StringIO(raw))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InvalidInput(f"CSV taxonomy is missing columns {', '.join(missing)}; expected {', '.join(CSV_COLUMNS)}")
    departments, cats = {}, {}
    for rownum, row in enumerate(reader, start=2):
        deps = {}
        for lv in LEVELS:
            dname = (row.get(lv) or "").strip()
            if dname:
                departments.setdefault(dname, {"name": dname, "level": lv})
                deps[lv] = dname
        item = {"code": row["code"].strip(), "name": row["name"].strip(), "level": row["level"].strip(),
                "deadline": row["deadline"].strip(), "workflow": (row["workflow"] or "general").strip(),
                "departments": deps, "_row": rownum}
        cc = row["category_code"].strip()
        if cc not in cats:
            cats[cc] = {"code": cc, "name": row["category_name"].strip(), "level": item["level"],
                        "deadline": item["deadline"], "workflow": item["workflow"], "departments": deps, "items": []}
        cats[cc]["items"].append(item)
    try:
        return parse_yaml({"name": name, "departments": departments, "categories": list(cats.values())})
    except InvalidInput as exc:
        raise InvalidInput(f"CSV {name}: {exc.detail}") from None


def read_file(path: str | Path) -> tuple[dict, str]:
    """Parse a YAML or CSV taxonomy file → (validated document, sha256)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInput(f"taxonomy file {str(p)!r} does not exist")
    raw = p.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        textual = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        textual = raw.decode("gb18030")
    if p.suffix.lower() == ".csv":
        return parse_csv(textual, p.stem), digest
    try:
        data = yaml.safe_load(textual)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{p.name}: not valid YAML: {exc}") from None
    return parse_yaml(data), digest


# --- storing and the active version ----------------------------------------------------------------
def store(conn, doc: dict, *, source: str, sha256: str | None = None, loaded_by: str | None = None) -> int:
    """Insert ``doc`` as a new version and make it the active one; returns the version id. No commit."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('gridserver.taxonomy'))"))
    conn.execute(text("UPDATE taxonomy_versions SET active = false WHERE active"))
    n_items = sum(1 for n in doc["nodes"] if n["parent"])
    vid = conn.execute(text(
        """INSERT INTO taxonomy_versions (name, source, sha256, active, n_categories, n_items, settings, loaded_by)
           VALUES (:name, :source, :sha, true, :nc, :ni, CAST(:settings AS jsonb), :by) RETURNING id"""),
        {"name": doc["name"], "source": source, "sha": sha256, "nc": len(doc["nodes"]) - n_items, "ni": n_items,
         "settings": json.dumps(doc["settings"]), "by": loaded_by}).scalar_one()
    conn.execute(text("INSERT INTO taxonomy_departments (version_id, code, name, level) VALUES (:v, :c, :n, :l)"),
                 [{"v": vid, "c": c, "n": d["name"], "l": d["level"]} for c, d in doc["departments"].items()])
    conn.execute(text(
        """INSERT INTO taxonomy_items (version_id, code, parent_code, name, description, keywords, start_level,
                                       departments, deadline, workflow, sort)
           VALUES (:v, :code, :parent, :name, :description, :keywords, :start_level, CAST(:deps AS jsonb),
                   :deadline, :workflow, :sort)"""),
        [{**{k: n[k] for k in ("code", "parent", "name", "description", "keywords", "start_level", "deadline",
                                "workflow", "sort")}, "v": vid, "deps": json.dumps(n["departments"])}
         for n in doc["nodes"]])
    return vid


def load_file(conn, path: str | Path, loaded_by: str | None = None) -> dict:
    """Validate and store a taxonomy file as the new active version; returns a summary."""
    doc, digest = read_file(path)
    vid = store(conn, doc, source=Path(path).name, sha256=digest, loaded_by=loaded_by)
    n_items = sum(1 for n in doc["nodes"] if n["parent"])
    return {"version": vid, "name": doc["name"], "categories": len(doc["nodes"]) - n_items, "items": n_items,
            "departments": len(doc["departments"])}


_cache: dict[tuple[str, int], Taxonomy] = {}
#: database → the active version this process saw last (intake's first guess; it checks it in the same
#: statement it runs anyway and reloads when another process or a CLI load changed it).
_last_active: dict[str, int] = {}
_lock = threading.Lock()


def _db_key(conn) -> str:
    """host:port/dbname of a psycopg connection or of a SQLAlchemy connection/session's bind."""
    info = getattr(conn, "info", None)
    if hasattr(info, "dbname"):  # psycopg (SQLAlchemy's .info is a dict)
        return f"{info.host}:{info.port}/{info.dbname}"
    try:
        u = (conn.get_bind() if hasattr(conn, "get_bind") else conn.engine).url
        return f"{u.host}:{u.port or 5432}/{u.database}"
    except Exception:  # pragma: no cover
        return "?"


def active(conn) -> Taxonomy:
    """The active taxonomy (cached per version); loads the shipped default when there is none."""
    vid = conn.execute(text("SELECT id FROM taxonomy_versions WHERE active")).scalar()
    if vid is None:
        with _lock:
            doc, digest = read_file(DEFAULT_FILE)
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('gridserver.taxonomy'))"))
            vid = conn.execute(text("SELECT id FROM taxonomy_versions WHERE active")).scalar()
            if vid is None:
                vid = store(conn, doc, source=DEFAULT_FILE.name, sha256=digest, loaded_by="default")
    return version(conn, vid)


def version(conn, vid: int) -> Taxonomy:
    """Version ``vid`` of the taxonomy (SQLAlchemy connection/session), cached: versions never change."""
    key = _db_key(conn)
    tax = _cache.get((key, vid))
    if tax is None:
        tax = _load_version(conn, vid)
        _cache[(key, vid)] = tax
    _last_active[key] = vid
    return tax


def cached(db: str, vid: int | None = None) -> Taxonomy | None:
    """The cached version ``vid`` (default: the active one this process saw last) of database ``db``."""
    vid = _last_active.get(db) if vid is None else vid
    return _cache.get((db, vid)) if vid is not None else None


def _load_version(conn, vid: int) -> Taxonomy:
    v = conn.execute(text("SELECT name, settings FROM taxonomy_versions WHERE id = :v"), {"v": vid}).one()
    deps = {r.code: {"name": r.name, "level": r.level} for r in conn.execute(
        text("SELECT code, name, level FROM taxonomy_departments WHERE version_id = :v"), {"v": vid})}
    tax = Taxonomy(version=vid, name=v.name, settings={**DEFAULT_SETTINGS, **(v.settings or {})}, departments=deps)
    for r in conn.execute(text("SELECT * FROM taxonomy_items WHERE version_id = :v ORDER BY sort"), {"v": vid}):
        tax.nodes[r.code] = Node(code=r.code, name=r.name, parent=r.parent_code, start_level=r.start_level,
                                 departments=dict(r.departments), deadline=r.deadline, workflow=r.workflow,
                                 keywords=r.keywords, description=r.description, sort=r.sort)
    return tax


def default_taxonomy() -> Taxonomy:
    """The shipped default, without a database (demo generation, labels)."""
    doc, _ = read_file(DEFAULT_FILE)
    tax = Taxonomy(version=0, name=doc["name"], settings=doc["settings"], departments=doc["departments"])
    for n in doc["nodes"]:
        tax.nodes[n["code"]] = Node(code=n["code"], name=n["name"], parent=n["parent"], start_level=n["start_level"],
                                    departments=n["departments"], deadline=n["deadline"], workflow=n["workflow"],
                                    keywords=n["keywords"], description=n["description"], sort=n["sort"])
    return tax


def versions(conn) -> list[dict]:
    return [dict(r._mapping) for r in conn.execute(text(
        "SELECT id, name, source, active, n_categories, n_items, loaded_by, loaded_at FROM taxonomy_versions ORDER BY id"))]
