"""Reading the CoNLL-style address corpus (one ``TOKEN LABEL`` per line, blank line between addresses)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gridserver.errors import InvalidInput


@dataclass(frozen=True)
class Example:
    """One annotated address: its text and its gold spans ``(label, start, end)`` in character offsets."""

    text: str
    spans: tuple[tuple[str, int, int], ...]


def corpus_dir() -> Path:
    """Where the shared corpus lives (``<shared_dir>/data/address-corpus``)."""
    from gridserver.settings import get_settings

    return get_settings().shared_dir / "data" / "address-corpus"


def chunk(tokens: list[tuple[str, str]]) -> tuple[tuple[str, int, int], ...]:
    """conlleval chunking of ``(token, BIO tag)`` pairs into character spans, labels lower-cased.

    Same rules as the scorer: an I- tag continues a chunk only if the previous tag had the same type.
    """
    spans: list[tuple[str, int, int]] = []
    pos, cur = 0, None
    for tok, tag in tokens:
        if tag == "O":
            if cur:
                spans.append(tuple(cur))
                cur = None
        else:
            bio, label = tag.split("-", 1)
            label = label.lower()
            if bio == "B" or cur is None or cur[0] != label:
                if cur:
                    spans.append(tuple(cur))
                cur = [label, pos, pos + len(tok)]
            else:
                cur[2] = pos + len(tok)
        pos += len(tok)
    if cur:
        spans.append(tuple(cur))
    return tuple(spans)


def read_corpus(path: Path | str) -> list[Example]:
    """Read a corpus file into :class:`Example` objects; raise InvalidInput naming the bad line."""
    path = Path(path)
    examples: list[Example] = []
    tokens: list[tuple[str, str]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\n")
            if not line.strip():
                if tokens:
                    examples.append(Example("".join(t for t, _ in tokens), chunk(tokens)))
                    tokens = []
                continue
            parts = line.rsplit(" ", 1)
            if len(parts) != 2 or not (parts[1] == "O" or parts[1][:2] in ("B-", "I-")):
                raise InvalidInput(f"{path}:{lineno}: expected 'TOKEN LABEL' with a BIO label, got {line!r}")
            tokens.append((parts[0], parts[1]))
    if tokens:
        examples.append(Example("".join(t for t, _ in tokens), chunk(tokens)))
    return examples
