"""China's administrative divisions as gazetteer entries for training the address tagger.

The table is the one shipped in the ``jionlp`` PyPI package (Apache-2.0; ``pip install
'gridserver[train]'``): ``jionlp/dictionary/china_location.zip`` lists province → city → county/district
→ town/street → village/community, with short names (aliases) for the upper three levels, and
``china_location_change.txt`` the renamed or merged divisions since 2002 (addresses keep using old
names such as 江干区). The file is read straight from the installed package (jionlp itself is not
imported: it is only a data carrier here), and only at training time: the entries the tagger can
use end up in the saved model's gazetteer, so nothing of this is needed at run time.

Levels map to the corpus types: prov, city, district (county level), town (镇 / 乡 / 街道, also without
that suffix: 九堡镇 → 九堡), community (村 / 社区 level) and devzone (a town-level unit named as a
development zone: 经济开发区, 工业园区, 高新区 ...).
"""

from __future__ import annotations

import importlib.util
import io
import re
import zipfile
from pathlib import Path

LEVELS = ("prov", "city", "district", "town", "community")
_DEVZONE = re.compile(r"(开发区|工业区|工业园区?|产业园区?|园区|新区|高新区|科技园|保税区|试验区|示范区)$")
_TOWN_SUFFIX = re.compile(r"(街道办事处|街道|镇|乡)$")


def _data_dir() -> Path:
    spec = importlib.util.find_spec("jionlp")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the division gazetteer needs the jionlp package's data: `pip install 'gridserver[train]'`")
    return Path(list(spec.submodule_search_locations)[0]) / "dictionary"


def admin_divisions(levels: tuple[str, ...] = LEVELS) -> list[tuple[str, str]]:
    """Sorted, distinct ``(name, type)`` pairs of the division table (types: those of :data:`LEVELS`
    plus devzone), full names and short names, current and former."""
    d = _data_dir()
    with zipfile.ZipFile(d / "china_location.zip") as zf:
        text = io.TextIOWrapper(zf.open("china_location.txt"), encoding="utf-8").read()
    out: set[tuple[str, str]] = set()

    def add(name: str, level: str) -> None:
        name = name.strip()
        if len(name) < 2:
            return
        if level == "town" and _DEVZONE.search(name):
            level = "devzone"
        if level not in levels and not (level == "devzone" and "town" in levels):
            return
        out.add((name, level))
        if level == "town":
            short = _TOWN_SUFFIX.sub("", name)
            if len(short) >= 2 and short != name:
                out.add((short, level))

    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip("\t"))
        parts = line.strip().split("\t")
        if not parts[0] or depth >= len(LEVELS):
            continue
        level = LEVELS[depth]
        add(parts[0], level)
        if len(parts) >= 3:
            for alias in parts[2].split("/"):
                add(alias, level)
    change = d / "china_location_change.txt"
    if change.exists():
        # date, approval, then (full name, short name) pairs of the old prov / city / county, "=>" new names
        for line in change.read_text(encoding="utf-8").split("\n"):
            old = line.split("=>", 1)[0].split("\t")[2:]
            for k in range(0, len(old) - 1, 2):
                add(old[k], LEVELS[k // 2])
                add(old[k + 1], LEVELS[k // 2])
    return sorted(out)
