"""Pre-trained character vectors for training the address tagger: those of Baidu's LAC.

LAC (Baidu's lexical analysis tool, PyPI package ``LAC`` 2.1.2, Apache-2.0) is a character BiGRU-CRF
trained on a large corpus for segmentation, part of speech and named entities; its source
distribution carries the model, including a 128-dimensional embedding of 58,224 entries (7,625 of
them single Chinese characters). Characters that are rare in the address corpus but common in
Chinese (names of people, shops, villages) get a vector that already places them near their kind:
张 next to 蒋/潘/郭, 村 next to 县/山乡/街道, 幢 next to 座.

The vectors are read straight from the archive (LAC itself, and PaddlePaddle which it needs, are
neither installed nor imported): the source distribution is downloaded once from PyPI's file host into
a cache directory (``$GRIDSERVER_CACHE/lac``, default ``~/.cache/gridserver/lac``) and checked against
its SHA-256. Only training reads them; the trained model
stores the vectors of its own vocabulary, so nothing of this is needed at run time.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

LAC_VERSION = "2.1.2"
LAC_SDIST = f"LAC-{LAC_VERSION}.tar.gz"
LAC_URL = ("https://files.pythonhosted.org/packages/c3/88/966e99c95cac93730a7f3cdf92a17e2a0e924bea61b9a86ae7995feaa4fe/"
           + LAC_SDIST)
LAC_SHA256 = "22fcde0d5082d2044205ea6f6a7a9cd1f0d63e7b21b2dd5c9c73f27e7c0a3ef1"
DIM = 128


def cache_dir(sub: str) -> Path:
    """Where downloads of pre-trained material are kept: ``$GRIDSERVER_CACHE/<sub>`` (default
    ``~/.cache/gridserver/<sub>``)."""
    return Path(os.environ.get("GRIDSERVER_CACHE", Path.home() / ".cache" / "gridserver")) / sub


def fetch(url: str, name: str, sha256: str, what: str, cache: Path) -> Path:
    """``cache/name``, downloaded from ``url`` once and checked against ``sha256``; ``what`` names it in errors."""
    path = cache / name
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        part = path.with_suffix(".part")
        try:
            urllib.request.urlretrieve(url, part)
        except OSError as exc:
            raise SystemExit(f"could not download {url} ({what}): {exc}") from exc
        part.replace(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{path}: SHA-256 {digest} is not that of {name} ({sha256}); delete it and retry")
    return path


def lac_archive(cache: Path | None = None) -> Path:
    """The LAC source archive (64 MB), downloaded once into ``cache`` and checked against its hash."""
    return fetch(LAC_URL, LAC_SDIST, LAC_SHA256, "the pre-trained character vectors", cache or cache_dir("lac"))


def _paddle_tensor(raw: bytes, rows: int, dim: int) -> np.ndarray:
    """A float32 (rows, dim) tensor from a PaddlePaddle parameter file: a small header (version, LoD,
    tensor description) followed by the raw little-endian data, which is what is read here."""
    n = rows * dim * 4
    if len(raw) < n:
        raise ValueError(f"parameter file of {len(raw)} bytes is too small for {rows} x {dim} floats")
    return np.frombuffer(raw[len(raw) - n:], dtype="<f4").reshape(rows, dim).astype(np.float32)


def lac_char_vectors(cache: Path | None = None) -> dict[str, np.ndarray]:
    """``{character: vector (128,) float32}`` for every single character in LAC's vocabulary."""
    with tarfile.open(lac_archive(cache)) as tf:
        base = f"LAC-{LAC_VERSION}/LAC/lac_model/"
        words = tf.extractfile(base + "conf/word.dic").read().decode("utf-8").split("\n")
        raw = tf.extractfile(base + "model/word_emb").read()
    entries = [w.split("\t") for w in words if "\t" in w]
    table = _paddle_tensor(raw, len(entries), DIM)
    out = {}
    for idx, word in entries:
        if len(word) == 1:
            out[word] = table[int(idx)]
    return out


def char_matrix(vocab: list[str], vectors: dict[str, np.ndarray]) -> np.ndarray:
    """(len(vocab), 128) float32: each vocabulary entry's vector scaled to unit spread, zero for
    padding, unknown, shape classes and characters LAC does not know."""
    P = np.zeros((len(vocab), DIM), np.float32)
    for i, tok in enumerate(vocab):
        v = vectors.get(tok)
        if v is not None:
            P[i] = v
    nz = P[np.any(P != 0, axis=1)]
    if len(nz):
        P /= nz.std()
    return P


def char_frequency() -> dict[str, int]:
    """How common each character is in Chinese: the summed frequencies of the words of jieba's general
    word list (349k words, train extra) that contain it."""
    from gridserver.address.parser.train_nn import jieba_words

    freq: dict[str, int] = {}
    for word, count, _ in jieba_words("ranking the pre-trained characters"):
        for ch in set(word):
            freq[ch] = freq.get(ch, 0) + count
    return freq


def extra_chars(vocab: list[str], vectors: dict[str, np.ndarray], limit: int | None = None,
                frequency: dict[str, int] | None = None) -> list[str]:
    """Chinese characters LAC knows that ``vocab`` lacks, sorted: added to the tagger's vocabulary so
    that at run time they are read by their vector instead of as unknown.

    With ``limit``, only that many: the most common by ``frequency`` (default :func:`char_frequency`).
    Each added character costs 1 KB of lookup table per LSTM direction at run time; on 3-fold splits of
    train, the 2,000 / 3,000 most common cover 78-84 % / 87-93 % of the unseen characters of the held-out
    third (all ~5,500: 98-99 %).
    """
    have = set(vocab)
    out = [c for c in vectors if "\u4e00" <= c <= "\u9fff" and c not in have]
    if limit is not None and len(out) > limit:
        freq = frequency if frequency is not None else char_frequency()
        out = sorted(out, key=lambda c: (-freq.get(c, 0), c))[:limit]
    return sorted(out)


if __name__ == "__main__":  # pragma: no cover - a quick look at the vectors
    vec = lac_char_vectors()
    print(len(vec), "characters;", sum("\u4e00" <= c <= "\u9fff" for c in vec), "Chinese")
