"""CQL2 text (OGC 21-065) → a parameterised SQL condition over one layer.

Supported: AND/OR/NOT and parentheses; ``= <> < > <= >=``; ``[NOT] LIKE``; ``[NOT] IN (...)``;
``[NOT] BETWEEN a AND b``; ``IS [NOT] NULL``; strings, numbers, booleans, ``TIMESTAMP('…')`` and
``DATE('…')``; spatial ``S_INTERSECTS/S_WITHIN/S_CONTAINS/S_DISJOINT`` between the geometry and a
WKT literal or ``BBOX(x1,y1,x2,y2)`` in ``filter-crs`` axis order. Properties are the layer's
queryables (plus ``geometry`` and its time property); anything else is a 400 naming the position.
Values never enter the SQL text: they are bound parameters.
"""

from __future__ import annotations

import re

from gridserver.analytics.layers import Layer
from gridserver.analytics.params import BadParameter, OutputCRS, parse_instant

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^']|'')*')
  | (?P<num>[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<op><>|<=|>=|=|<|>)
  | (?P<punct>[(),])
  | (?P<ident>"[^"]+"|[A-Za-z_][A-Za-z0-9_.:]*)
""", re.X)
_WKT = {"POINT", "LINESTRING", "POLYGON", "MULTIPOINT", "MULTILINESTRING", "MULTIPOLYGON", "GEOMETRYCOLLECTION"}
_SPATIAL = {"S_INTERSECTS": "ST_Intersects({a}, {b})", "S_WITHIN": "ST_Within({a}, {b})",
            "S_CONTAINS": "ST_Contains({a}, {b})", "S_DISJOINT": "NOT ST_Intersects({a}, {b})"}
_KEYWORDS = {"AND", "OR", "NOT", "LIKE", "IN", "BETWEEN", "IS", "NULL", "TRUE", "FALSE", "TIMESTAMP", "DATE", "BBOX"}


def _tokenize(src: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if not m:
            raise BadParameter(f"filter: unexpected character {src[pos]!r} at position {pos + 1} in {src!r}")
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "ident" and val.upper() in _WKT:
            # a WKT literal: take everything up to the matching parenthesis as one token
            depth, j = 0, m.end()
            while j < len(src) and src[j].isspace():
                j += 1
            if j >= len(src) or src[j] != "(":
                raise BadParameter(f"filter: {val} at position {pos + 1} needs coordinates in parentheses")
            while j < len(src):
                depth += src[j] == "("
                depth -= src[j] == ")"
                j += 1
                if depth == 0:
                    break
            if depth:
                raise BadParameter(f"filter: unbalanced parentheses in {val} literal at position {pos + 1}")
            out.append(("wkt", src[pos:j], pos))
            pos = j
            continue
        if kind != "ws":
            out.append((kind, val, pos))
        pos = m.end()
    return out


class _Compiler:
    def __init__(self, src: str, layer: Layer, crs: OutputCRS):
        self.src, self.layer, self.crs = src, layer, crs
        self.tokens = _tokenize(src)
        self.i = 0
        self.params: dict = {}

    # --- token helpers
    def peek(self, k: int = 0):
        j = self.i + k
        return self.tokens[j] if j < len(self.tokens) else ("eof", "", len(self.src))

    def is_kw(self, word: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t[0] == "ident" and t[1].upper() == word

    def expect(self, value: str):
        t = self.peek()
        if t[1].upper() != value:
            self.fail(f"expected {value!r}", t)
        self.i += 1

    def fail(self, what: str, tok=None):
        tok = tok or self.peek()
        got = "end of text" if tok[0] == "eof" else repr(tok[1])
        raise BadParameter(f"filter: {what} at position {tok[2] + 1}, got {got}, in {self.src!r}")

    def bind(self, value) -> str:
        name = f"cql_{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    # --- grammar
    def parse(self) -> str:
        sql = self.or_()
        if self.peek()[0] != "eof":
            self.fail("unexpected text after the expression")
        return sql

    def or_(self) -> str:
        parts = [self.and_()]
        while self.is_kw("OR"):
            self.i += 1
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def and_(self) -> str:
        parts = [self.not_()]
        while self.is_kw("AND"):
            self.i += 1
            parts.append(self.not_())
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def not_(self) -> str:
        if self.is_kw("NOT"):
            self.i += 1
            return f"NOT ({self.not_()})"
        if self.peek()[1] == "(":
            self.i += 1
            inner = self.or_()
            self.expect(")")
            return f"({inner})"
        return self.predicate()

    def predicate(self) -> str:
        t = self.peek()
        if t[0] == "ident" and t[1].upper() in _SPATIAL:
            self.i += 1
            self.expect("(")
            a = self.geom_arg()
            self.expect(",")
            b = self.geom_arg()
            self.expect(")")
            return _SPATIAL[t[1].upper()].format(a=a, b=b)
        left = self.scalar()
        negate = False
        if self.is_kw("NOT") and (self.is_kw("LIKE", 1) or self.is_kw("IN", 1) or self.is_kw("BETWEEN", 1)):
            self.i += 1
            negate = True
        t = self.peek()
        if t[0] == "op":
            self.i += 1
            return f"{left} {t[1]} {self.scalar()}"
        if self.is_kw("LIKE"):
            self.i += 1
            return f"{left}::text {'NOT ' if negate else ''}LIKE {self.scalar()}"
        if self.is_kw("IN"):
            self.i += 1
            self.expect("(")
            items = [self.scalar()]
            while self.peek()[1] == ",":
                self.i += 1
                items.append(self.scalar())
            self.expect(")")
            return f"{left} {'NOT ' if negate else ''}IN ({', '.join(items)})"
        if self.is_kw("BETWEEN"):
            self.i += 1
            lo = self.scalar()
            self.expect("AND")
            hi = self.scalar()
            return f"{left} {'NOT ' if negate else ''}BETWEEN {lo} AND {hi}"
        if self.is_kw("IS"):
            self.i += 1
            neg = False
            if self.is_kw("NOT"):
                self.i += 1
                neg = True
            self.expect("NULL")
            return f"{left} IS {'NOT ' if neg else ''}NULL"
        self.fail("expected a comparison (=, <>, <, >, <=, >=, LIKE, IN, BETWEEN, IS NULL)")

    def property(self, name: str, tok) -> str:
        name = name.strip('"')
        lay = self.layer
        if name in ("datetime",) + ((lay.time_start.split(".")[-1],) if lay.time_start else ()):
            if lay.time_start:
                return lay.time_start
        if name == "id":
            return "t.id" if lay.id_type == "integer" else lay.id_sql
        if name in lay.queryables:
            return lay.props.get(name, f"t.{name}")
        self.fail(f"unknown property {name!r} (queryables: {', '.join(lay.queryables)}, datetime, geometry)", tok)

    def scalar(self) -> str:
        t = self.peek()
        kind, val = t[0], t[1]
        if kind == "str":
            self.i += 1
            return self.bind(val[1:-1].replace("''", "'"))
        if kind == "num":
            self.i += 1
            return self.bind(float(val) if any(c in val for c in ".eE") else int(val))
        if kind == "ident":
            up = val.upper()
            if up in ("TRUE", "FALSE"):
                self.i += 1
                return self.bind(up == "TRUE")
            if up in ("TIMESTAMP", "DATE"):
                self.i += 1
                self.expect("(")
                s = self.peek()
                if s[0] != "str":
                    self.fail(f"{up} needs a quoted date-time")
                self.i += 1
                self.expect(")")
                return self.bind(parse_instant(s[1][1:-1], "filter"))
            if up in _KEYWORDS:
                self.fail("expected a property or a value")
            self.i += 1
            return self.property(val, t)
        self.fail("expected a property or a value")

    def geom_arg(self) -> str:
        t = self.peek()
        if t[0] == "wkt":
            self.i += 1
            return self._literal(f"ST_GeomFromText({self.bind(t[1])}, {self.crs.srid})")
        if self.is_kw("BBOX"):
            self.i += 1
            self.expect("(")
            nums = []
            while True:
                n = self.peek()
                if n[0] != "num":
                    self.fail("BBOX needs 4 numbers")
                nums.append(float(n[1]))
                self.i += 1
                if self.peek()[1] != ",":
                    break
                self.i += 1
            self.expect(")")
            if len(nums) not in (4, 6):
                self.fail(f"BBOX needs 4 or 6 numbers, got {len(nums)}", t)
            if len(nums) == 6:
                nums = [nums[0], nums[1], nums[3], nums[4]]
            a, b, c, d = nums
            env = f"ST_MakeEnvelope({self.bind(a)}, {self.bind(b)}, {self.bind(c)}, {self.bind(d)}, {self.crs.srid})"
            return self._literal(env)
        if t[0] == "ident" and t[1].strip('"').lower() in ("geometry", "geom", "the_geom"):
            self.i += 1
            return self.layer.geom_sql
        self.fail("expected the geometry property, a WKT literal or BBOX(...)")

    def _literal(self, expr: str) -> str:
        if self.crs.lat_first:
            expr = f"ST_FlipCoordinates({expr})"
        if self.crs.srid != 4326:
            expr = f"ST_Transform({expr}, 4326)"
        return f"ST_SetSRID({expr}, 4326)" if self.crs.srid == 4326 else expr


def compile_cql2(src: str, layer: Layer, crs: OutputCRS) -> tuple[str, dict]:
    """CQL2 text → (SQL condition over alias ``t``, bound parameters). 400 with the position when invalid."""
    c = _Compiler(src, layer, crs)
    sql = c.parse()
    # parameter names must not clash with other filters' names
    return sql, c.params
