"""Bulk address parsing for the matcher: the project's CRF parser, in batches.

The matcher parses with :func:`gridserver.address.parser.parse_batch`. When that parser cannot be
loaded (its package or trained model file is missing from this build) :func:`parse_parts` falls back,
**loudly**, to :func:`_fallback_split`, a small regex splitter that only understands
``<road><n>号<b>栋<u>单元<f>层<r>室`` shapes: a warning is logged, and :func:`parser_name` says which
parser was used so import summaries can show it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gridserver.address.keys import AddressParts, parts_from_components
from gridserver.address.normalize import normalize_address
from gridserver.errors import GridserverError

log = logging.getLogger(__name__)

_state: dict[str, object] = {}


def _parser():
    """The real parser's ``parse_batch``, or None (with one warning) when it cannot be loaded."""
    if "fn" not in _state:
        try:
            from gridserver.address.parser import parse_batch

            parse_batch(["广州市越秀区中山四路13号"])  # loads the model now, so a missing file shows here
            _state["fn"], _state["name"] = parse_batch, "bilstm-crf"
        except (ImportError, OSError) as exc:
            log.warning("address parser unavailable (%s): using the regex fallback splitter", exc)
            _state["fn"], _state["name"] = None, "regex-fallback"
        except GridserverError as exc:  # NotFound(code='model_missing') when the model is not built
            if exc.code != "model_missing":
                raise
            log.warning("address parser model missing (%s): using the regex fallback splitter", exc.detail)
            _state["fn"], _state["name"] = None, "regex-fallback"
    return _state["fn"]


def parser_name() -> str:
    """``bilstm-crf`` when the trained parser is in use, ``regex-fallback`` otherwise."""
    _parser()
    return str(_state["name"])


@dataclass
class _Comp:
    label: str
    text: str


_ROAD_END = "大道|大街|大马路|马路|直街|新街|路|街|巷|里|坊|道|横|围|约|岗"
_FALLBACK = re.compile(
    r"^(?P<prov>[^省市区]{2,7}省)?(?P<city>[^省市区]{2,7}市)?(?P<district>[^省市区县]{1,7}[区县])?"
    rf"(?P<road>.*?(?:{_ROAD_END}))"
    r"(?P<roadno>\d+(?:-\d+)?号)?"
    r"(?P<houseno>[0-9A-Z]+(?:栋|座|幢|号楼))?"
    r"(?P<cellno>\d+单元)?"
    r"(?P<floorno>\d+(?:层|楼))?"
    r"(?P<roomno>[A-Z]?\d+[A-Z]?(?:室|房)?)?$"
)


def _fallback_split(text: str) -> list[_Comp]:
    """Regex splitter used only when the CRF parser is missing (see module docstring)."""
    m = _FALLBACK.match(text)
    if not m:
        return []
    return [_Comp(label, m.group(label)) for label in ("prov", "city", "district", "road", "roadno", "houseno", "cellno", "floorno", "roomno")
            if m.group(label)]


def parse_parts(normalised: Sequence[str]) -> list[AddressParts]:
    """Parse already-normalised texts in one batch and reduce each to :class:`AddressParts`."""
    fn = _parser()
    if fn is None:
        return [parts_from_components(_fallback_split(t)) for t in normalised]
    return [parts_from_components(comps) for comps in fn(list(normalised))]


def normalise_many(texts: Sequence[str]) -> list[str]:
    return [normalize_address(t) if t else "" for t in texts]
