"""Chinese address parsing: split an address into typed components with character offsets.

Public API::

    parse("浙江省杭州市余杭区文一西路969号")
    # [Component(label='prov', text='浙江省', start=0, end=3), ...]
    parse_batch([...])            # same, many at once (much faster per address)
    normalize_address(text)       # width / variants / numerals normalised, for matching
    standardize(text)             # {level: normalised value}, upper levels filled from known roads

The tagger is a character BiLSTM-CRF (two stacked layers, gazetteer and dictionary-word features)
whose label scores are combined with a linear-chain CRF's (see :mod:`.neural`), trained with
PyTorch and crfsuite by ``gridserver address train`` and run in C compiled on first use (:mod:`.native`, numpy as fallback): torch is not needed at
run time.

The 21 labels are those of the NAACL 2019 corpus (Li, Lu, Xie, Li, "Neural Chinese Address
Parsing"): country prov city district devzone town community road subroad roadno subroadno poi
subpoi houseno cellno floorno roomno person assist redundant otherinfo. Offsets are into the input
string as given (end exclusive), spans do not overlap and come in order.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import NamedTuple

from gridserver.address.normalize import default_road_index, fill_upper_levels, normalize_address
from gridserver.address.parser.features import TYPES

__all__ = ["Component", "parse", "parse_batch", "normalize_address", "standardize", "load_model",
           "MODEL_PATH", "LABELS", "MAX_INPUT_CHARS"]

LABELS = TYPES
MODEL_PATH = Path(__file__).parent / "model" / "address_tagger.npz"
#: Longer inputs are cut into pieces of this many characters before tagging (offsets stay global):
#: real addresses are far shorter, and this bounds the work one request can cause.
MAX_INPUT_CHARS = 512


class Component(NamedTuple):
    """One parsed component: ``label`` (lower case), its ``text`` and offsets ``[start, end)``."""

    label: str
    text: str
    start: int
    end: int

    def as_dict(self) -> dict:
        """``{"label", "text", "start", "end"}`` — the JSON shape of the CLI and HTTP API."""
        return {"label": self.label, "text": self.text, "start": self.start, "end": self.end}


_model = None
_lock = threading.Lock()


def load_model(path: Path | str | None = None):
    """The tagger, loaded once from ``path`` (default: the committed model) and cached.

    Raises NotFound with the command that builds it when the model file is missing.
    """
    global _model
    from gridserver.address.parser.model import AddressModel

    if path is not None:
        return AddressModel.load(path)
    if _model is None:
        with _lock:
            if _model is None:
                if not MODEL_PATH.exists():
                    from gridserver.errors import NotFound  # (imported late: it pulls in FastAPI)

                    raise NotFound(f"address model {MODEL_PATH} is missing; build it with `gridserver address train`",
                                   code="model_missing")
                _model = AddressModel.load(MODEL_PATH)
                _release_free_memory()
    return _model


def _release_free_memory() -> None:
    """Give the heap pages freed while the model was assembled back to the OS (glibc only; a no-op
    elsewhere): ~20 MB of resident memory that would otherwise stay with the process."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _pieces(text: str) -> list[tuple[int, str]]:
    if len(text) <= MAX_INPUT_CHARS:
        return [(0, text)]
    return [(i, text[i:i + MAX_INPUT_CHARS]) for i in range(0, len(text), MAX_INPUT_CHARS)]


def parse_batch(texts: list[str], model=None) -> list[list[Component]]:
    """Parse many addresses at once; result ``i`` belongs to ``texts[i]``.

    Empty or blank strings give ``[]``. Raises InvalidInput if an item is not a string.
    """
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            from gridserver.errors import InvalidInput  # (imported late: it pulls in FastAPI)

            raise InvalidInput(f"address #{i} is {type(t).__name__}, expected a string")
    model = model or load_model()
    flat: list[str] = []
    owner: list[tuple[int, int]] = []
    for i, text in enumerate(texts):
        for off, piece in _pieces(text):
            flat.append(piece)
            owner.append((i, off))
    tagged = model.tag_batch(flat)
    out: list[list[Component]] = [[] for _ in texts]
    for (i, off), spans in zip(owner, tagged):
        text = texts[i]
        out[i].extend(Component(label, text[off + s:off + e], off + s, off + e) for label, s, e in spans)
    return out


def parse(text: str, model=None) -> list[Component]:
    """Parse one address into components (see :func:`parse_batch`)."""
    return parse_batch([text], model)[0]


def standardize(text: str, road_index=None) -> dict[str, str]:
    """Parse, normalise each component and fill missing prov/city/district from a known road.

    Returns ``{level: normalised text}`` with the first component of each level; ``redundant``
    components are dropped. ``road_index`` defaults to the Yuexiu roads index.
    """
    levels: dict[str, str] = {}
    for c in parse(text):
        if c.label != "redundant":
            levels.setdefault(c.label, normalize_address(c.text))
    return fill_upper_levels(levels, default_road_index() if road_index is None else road_index)
