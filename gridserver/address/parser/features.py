"""Tokenisation and vectorised feature extraction for the address tagger.

Every feature is an integer key per (token, template); ``-1`` means "absent". Keys are computed with
numpy over a whole batch of addresses of the same token count at once, so the cost per address is a
few array operations, not a Python loop per character. Training turns the same keys into crfsuite
attribute strings (``"<template>:<key>"``); inference looks them up in weight tables. One code path
serves both, so the trained weights mean the same thing at run time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import accumulate

import numpy as np

from gridserver.address.normalize import CHAR_TABLE, NUMBERED

TYPES = ("country", "prov", "city", "district", "devzone", "town", "community", "road", "subroad",
         "roadno", "subroadno", "poi", "subpoi", "houseno", "cellno", "floorno", "roomno", "person",
         "assist", "redundant", "otherinfo")
LABELS = ("O",) + tuple(f"{p}-{t}" for t in TYPES for p in ("B", "I"))

PAD, UNK = 0, 1
SHAPES = ("<D1>", "<D2>", "<D3>", "<D4>", "<L1>", "<L2>")
# Token classes: padding, Han, digits, Latin, punctuation, other.
C_PAD, C_HAN, C_DIGIT, C_LATIN, C_PUNCT, C_OTHER = range(6)
N_CLASSES = 6

# Keyword groups: the distance to the next/previous member is a feature (a road ends at 路, a road
# number at 号, a town at 镇/街道 ...). "#" stands for any digit run, "-" for dash-like punctuation.
KEYWORD_GROUPS = ("省", "市", "区县旗", "镇乡", "路街道巷弄大", "村", "社", "号", "栋幢座", "单元",
                  "室房户", "层楼", "园苑院城厦场府", "#", "-_/、", "店司部馆中", "门口旁对面边")
MAX_LEX_LEN = 12  # longest gazetteer entry, in tokens
_WINDOW = 3
_HASH_MUL = np.uint64(1_000_003)
KEY_BITS = 40  # a key of one template fits in 40 bits; the template index goes above

_TOKEN = re.compile(r"[0-9]+|[A-Za-z]+|\s+|.", re.S)
_SPACE = re.compile(r"\s")
_CN_DIGIT = re.compile("[零〇○一二两三四五六七八九十百千]")
_PUNCT = set("-_/\\、，,。.·:：;；()（）[]【】<>《》#*+~!！?？'\"“”‘’|&@")

# Distance buckets: 1..5 exact, then 6-7, 8-10, 11-15, 16+, none.
_BUCKET = np.array([0, 1, 2, 3, 4, 5, 6, 6, 7, 7, 7] + [8] * 5 + [9] * 200, dtype=np.int64)
_NONE_BUCKET = 10


def tokenize(text: str) -> tuple[list[str], list[int], list[int]]:
    """Split ``text`` (after :func:`normalize_chars`) into model tokens with character offsets.

    Digit runs and Latin-letter runs are one token each, every other character is a token, and
    whitespace is skipped. A Chinese numeral run that numbers something (十三号, 二楼) becomes one
    digit-run token of the same length, so the tagger treats it like 13号 / 2楼. Returns ``(tokens,
    starts, ends)``; offsets index the original string.
    """
    norm = text.translate(CHAR_TABLE)
    if _CN_DIGIT.search(norm):
        norm = NUMBERED.sub(_as_digits, norm)
    toks = _TOKEN.findall(norm)
    bounds = list(accumulate(map(len, toks), initial=0))
    if _SPACE.search(norm) is None:
        return toks, bounds[:-1], bounds[1:]
    keep = [i for i, t in enumerate(toks) if not t.isspace()]
    return [toks[i] for i in keep], [bounds[i] for i in keep], [bounds[i + 1] for i in keep]


def _as_digits(m: re.Match) -> str:
    return "0" * len(m.group(1))  # same length: offsets stay valid


def token_shape(tok: str) -> str | None:
    """Shape class of a digit or Latin run (``<D3>`` for 602, ``<L1>`` for B), else None."""
    c = tok[0]
    if c.isascii() and c.isdigit():
        return SHAPES[min(len(tok), 4) - 1]
    if c.isascii() and c.isalpha():
        return SHAPES[4] if len(tok) == 1 else SHAPES[5]
    return None


def char_class(tok: str) -> int:
    """Class of a vocabulary token (one of the ``C_*`` constants)."""
    if tok in SHAPES:
        return C_DIGIT if tok.startswith("<D") else C_LATIN
    if "\u4e00" <= tok[0] <= "\u9fff":
        return C_HAN
    if tok in _PUNCT:
        return C_PUNCT
    return C_OTHER


class Lexicon:
    """Gazetteer of token-id sequences with a bitmask of entity types, matched by rolling hashes."""

    def __init__(self, hashes: np.ndarray, lengths: np.ndarray, masks: np.ndarray):
        # entries sorted by (length, hash) in one array; the entries of length m are a slice of it.
        # Only the sorted arrays are kept (a division gazetteer has ~10^5 entries): the entries as
        # given are read back from them (:attr:`hashes`, :attr:`lengths`, :attr:`masks`).
        order = np.lexsort((hashes, lengths))
        self.sorted_hashes = np.ascontiguousarray(hashes[order], dtype=np.uint64)
        self.sorted_masks = np.ascontiguousarray(masks[order], dtype=np.int32)
        self.offsets = np.searchsorted(np.asarray(lengths)[order], np.arange(MAX_LEX_LEN + 2)).astype(np.int64)
        self._by_len: dict[int, tuple[np.ndarray, np.ndarray]] = {
            m: (self.sorted_hashes[self.offsets[m]:self.offsets[m + 1]], self.sorted_masks[self.offsets[m]:self.offsets[m + 1]])
            for m in range(2, MAX_LEX_LEN + 1)}
        # A bitmap over a few bits of each entry's hash: most n-grams of an address are in no entry,
        # and one lookup in it rules them out before the binary search (a Bloom filter, one hash).
        # Stored packed, 8 slots per byte.
        self._bits = max(16, min(24, int(np.ceil(np.log2(max(len(hashes), 1) * 16)))))
        flags = np.zeros(1 << self._bits, bool)
        flags[self._slot(np.asarray(hashes, np.uint64), np.asarray(lengths, np.uint64))] = True
        self.filter = np.packbits(flags, bitorder="little")

    @property
    def hashes(self) -> np.ndarray:
        return self.sorted_hashes

    @property
    def masks(self) -> np.ndarray:
        return self.sorted_masks

    @property
    def lengths(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets)).astype(np.int8)

    def _hit(self, slots: np.ndarray) -> np.ndarray:
        """Is the filter's bit set for each slot?"""
        return (self.filter[slots >> np.uint64(3)] >> (slots & np.uint64(7)).astype(np.uint8)) & 1 == 1

    def _slot(self, h: np.ndarray, m) -> np.ndarray:
        with np.errstate(over="ignore"):
            return ((h + np.uint64(m)) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - self._bits)

    @staticmethod
    def hash_seq(ids: Sequence[int]) -> int:
        h = np.uint64(0)
        with np.errstate(over="ignore"):
            for i in ids:
                h = h * _HASH_MUL + np.uint64(i)
        return int(h)

    @classmethod
    def build(cls, entries: Iterable[tuple[Sequence[int], int]], base: dict[tuple[int, int], int] | None = None
              ) -> "Lexicon":
        """Gazetteer from ``(token ids, type index)`` pairs; lengths outside 2..MAX_LEX_LEN are dropped.
        ``base`` is entries already hashed by :meth:`accumulate` (a large fixed part, hashed once)."""
        acc = cls.accumulate(entries, dict(base or {}))
        items = sorted(acc.items())
        hashes = np.array([k[0] for k, _ in items], dtype=np.uint64)
        lengths = np.array([k[1] for k, _ in items], dtype=np.int8)
        masks = np.array([v for _, v in items], dtype=np.int32)
        return cls(hashes, lengths, masks)

    @classmethod
    def accumulate(cls, entries: Iterable[tuple[Sequence[int], int]],
                   acc: dict[tuple[int, int], int] | None = None) -> dict[tuple[int, int], int]:
        """``{(hash, length): type bitmask}`` of the entries (added to ``acc`` if given)."""
        acc = {} if acc is None else acc
        for ids, t in entries:
            if 2 <= len(ids) <= MAX_LEX_LEN:
                key = (cls.hash_seq(ids), len(ids))
                acc[key] = acc.get(key, 0) | (1 << t)
        return acc

    def match(self, ids: np.ndarray, bits_only: bool = False) -> tuple[np.ndarray, ...]:
        """Gazetteer matches over ``ids`` (B, n).

        Returns type bitmasks of entries that begin at / end at / run through each token, and a key
        describing the longest entry covering each token (its first type, the token's place in it,
        its length), and keys (first type, length) of the longest entry starting / ending at each
        token; -1 where nothing matches. With ``bits_only`` the three keys are not computed (all -1).
        """
        b, n = ids.shape
        longest = np.full((b, n), -1, np.int64)
        starts_here = np.full((b, n), -1, np.int64)
        ends_here = np.full((b, n), -1, np.int64)
        begin = np.zeros((b, n), np.int32)
        end = np.zeros((b, n), np.int32)
        inside = np.zeros((b, n), np.int32)
        h = ids.astype(np.uint64)
        with np.errstate(over="ignore"):
            for m in range(2, min(n, MAX_LEX_LEN) + 1):
                h = h[:, :-1] * _HASH_MUL + ids[:, m - 1:].astype(np.uint64)
                table, masks = self._by_len[m]
                if not len(table):
                    continue
                cand = np.flatnonzero(self._hit(self._slot(h, m)))
                if not len(cand):
                    continue
                hc = h.reshape(-1)[cand]
                pos = np.searchsorted(table, hc)
                pos[pos == len(table)] = 0
                found = np.zeros(h.size, np.int32)
                found[cand] = np.where(table[pos] == hc, masks[pos], 0)
                found = found.reshape(h.shape)
                if not found.any():
                    continue
                width = n - m + 1
                begin[:, :width] |= found
                end[:, m - 1:] |= found
                for k in range(1, m - 1):
                    inside[:, k:k + width] |= found
                if bits_only:
                    continue
                # lowest set bit = first type in TYPES order; longer matches overwrite shorter ones
                first_type = np.log2(found & -found, where=found > 0, out=np.zeros(found.shape)).astype(np.int64)
                hit = found > 0
                tl = first_type * (MAX_LEX_LEN + 1) + m
                np.copyto(starts_here[:, :width], tl, where=hit)
                np.copyto(ends_here[:, m - 1:], tl, where=hit)
                for k in range(m):
                    place = 0 if k == 0 else (2 if k == m - 1 else 1)
                    key = (first_type * 3 + place) * (MAX_LEX_LEN + 1) + m
                    view = longest[:, k:k + width]
                    np.copyto(view, key, where=hit)
        return begin, end, inside, longest, starts_here, ends_here


def place(keys: np.ndarray, table: np.ndarray) -> np.ndarray:
    """1-based index of each key in the sorted ``table``, 0 where it is not there."""
    if not len(table):
        return np.zeros(keys.shape, np.int64)
    pos = np.searchsorted(table, keys)
    pos[pos == len(table)] = 0
    return np.where(table[pos] == keys, pos + 1, 0)


#: Templates whose keys are character bigrams (``a * V + b``) or trigrams, in :meth:`Featurizer.keys`.
BIGRAM_TEMPLATES = tuple(f"b{k}" for k in range(-_WINDOW, _WINDOW)) + ("skip",)
TRIGRAM_TEMPLATES = tuple(f"t{k}" for k in range(-2, 1))


class Featurizer:
    """Maps tokens to ids and id matrices to feature keys. Holds the vocabulary and the gazetteer."""

    def __init__(self, vocab: Sequence[str], lexicon: Lexicon):
        self.vocab_list = list(vocab)
        self.vocab = {w: i for i, w in enumerate(self.vocab_list)}
        self.lexicon = lexicon
        self.V = len(self.vocab_list)
        if self.V ** 3 >= 1 << KEY_BITS:
            raise ValueError(f"vocabulary of {self.V} tokens too large for {KEY_BITS}-bit trigram keys")
        self.class_of = np.array([C_PAD, C_OTHER] + [char_class(w) for w in self.vocab_list[2:]], np.int64)
        groups = []
        for g in KEYWORD_GROUPS:
            member = np.zeros(self.V, bool)
            for ch in g:
                if ch == "#":
                    member[[self.vocab[s] for s in SHAPES[:4]]] = True
                elif ch in self.vocab:
                    member[self.vocab[ch]] = True
            groups.append(member)
        self.groups = groups
        self.group_matrix = np.stack(groups, axis=1) if groups else np.zeros((self.V, 0), bool)  # (V, groups)
        self.template_names = self._template_names()

    @staticmethod
    def build_vocab(token_lists: Iterable[Sequence[str]]) -> list[str]:
        """Vocabulary: padding, unknown, the shape classes, then every other token by frequency."""
        counts = Counter(t for toks in token_lists for t in toks if token_shape(t) is None)
        words = sorted(counts, key=lambda w: (-counts[w], w))
        return ["<PAD>", "<UNK>", *SHAPES, *words]

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Token strings → ids (digit/Latin runs → their shape, unseen tokens → UNK)."""
        get = self.vocab.get
        return [get(t) or get(token_shape(t) or "", UNK) for t in tokens]

    @staticmethod
    def _template_names() -> list[str]:
        names = ["bias"]
        names += [f"u{k}" for k in range(-_WINDOW, _WINDOW + 1)]
        names += [f"b{k}" for k in range(-_WINDOW, _WINDOW)]
        names += [f"t{k}" for k in range(-2, 1)]
        names += ["skip", "cls5", "pos", "rpos"]
        names += [f"lex_{t}" for t in TYPES]
        names += ["lexcount", "lexlong", "lexprev", "lexnext"]
        names += [f"next{i}" for i in range(len(KEYWORD_GROUPS))]
        names += [f"prev{i}" for i in range(len(KEYWORD_GROUPS))]
        names += ["rep2", "rep3", "u0_cls_next"]
        return names

    def keys(self, ids: np.ndarray, lengths: np.ndarray | None = None, match: tuple | None = None,
             ngrams: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Feature keys (B, n, T) for an id matrix (B, n); rows are padded with PAD past ``lengths``
        (default: all rows are n tokens long). ``match`` is ``self.lexicon.match(ids)`` if the caller
        has it already. Keys at padded positions are meaningless.

        With ``ngrams = (bigram keys, trigram keys)`` (sorted) the bigram / skip-gram / trigram
        templates give the 1-based place of their key in those lists (0: not listed) instead of
        the key itself: one search per kind of n-gram serves all its shifted templates (see
        :meth:`.LinearCRF.compact`).
        """
        b, n = ids.shape
        V = self.V
        P = np.zeros((b, n + 2 * _WINDOW), np.int64)
        P[:, _WINDOW:_WINDOW + n] = ids
        w = {k: P[:, _WINDOW + k:_WINDOW + k + n] for k in range(-_WINDOW, _WINDOW + 1)}
        cols: list[np.ndarray] = [np.zeros((b, n), np.int64)]
        cols += [w[k] for k in range(-_WINDOW, _WINDOW + 1)]
        if ngrams is None:
            cols += [w[k] * V + w[k + 1] for k in range(-_WINDOW, _WINDOW)]
            cols += [(w[k] * V + w[k + 1]) * V + w[k + 2] for k in range(-2, 1)]
            cols.append(w[-1] * V + w[1])
        else:
            bi, tri = ngrams
            two = place(P[:, :-1] * V + P[:, 1:], bi)  # bigram starting at each padded position
            cols += [two[:, _WINDOW + k:_WINDOW + k + n] for k in range(-_WINDOW, _WINDOW)]
            three = place((P[:, :-2] * V + P[:, 1:-1]) * V + P[:, 2:], tri)
            cols += [three[:, _WINDOW + k:_WINDOW + k + n] for k in range(-2, 1)]
            cols.append(place(w[-1] * V + w[1], bi))
        cls = self.class_of[P]
        c5 = np.zeros((b, n), np.int64)
        for k in range(-2, 3):
            c5 = c5 * N_CLASSES + cls[:, _WINDOW + k:_WINDOW + k + n]
        cols.append(c5)
        pos = np.broadcast_to(np.arange(n), (b, n))
        cols.append(np.minimum(pos, 10))
        last = n - 1 if lengths is None else (np.asarray(lengths) - 1)[:, None]
        cols.append(np.clip(last - pos, 0, 10))

        begin, end, inside, longest, starts_here, ends_here = match or self.lexicon.match(ids)
        any_lex = begin | end | inside
        shifts = np.arange(len(TYPES), dtype=np.int32)
        code = ((begin[..., None] >> shifts) & 1) + ((end[..., None] >> shifts) & 1) * 2 + \
            ((inside[..., None] >> shifts) & 1) * 4  # (B, n, types): 1 begins, 2 ends, 4 inside
        code = np.where(code > 0, code, -1).astype(np.int64)
        cols += [code[:, :, t] for t in range(len(TYPES))]
        # How many types the gazetteer offers here: 0 means "unknown territory".
        lexcount = np.zeros((b, n), np.int64)
        x = any_lex.copy()
        while x.any():
            lexcount += x & 1
            x >>= 1
        cols.append(np.minimum(lexcount, 4))
        cols.append(longest)
        # what the gazetteer sees just before and just after this token
        none = np.full((b, 1), -1, np.int64)
        cols.append(np.concatenate([none, ends_here[:, :-1]], axis=1))
        cols.append(np.concatenate([starts_here[:, 1:], none], axis=1))

        # distance buckets to the next / previous member of each keyword group, all groups at once
        idx = np.arange(n)[None, :, None]
        big = n + 100
        hit = self.group_matrix[ids]  # (B, n, groups)
        nxt = np.full((b, n, hit.shape[2]), big, np.int64)  # strictly after i
        nxt[:, :-1] = np.minimum.accumulate(np.where(hit, idx, big)[:, ::-1], axis=1)[:, ::-1][:, 1:]
        d = np.minimum(nxt - idx, len(_BUCKET) - 1)
        nxt_b = np.where(nxt >= big, _NONE_BUCKET, _BUCKET[d])
        prv = np.full((b, n, hit.shape[2]), -big, np.int64)  # strictly before i
        prv[:, 1:] = np.maximum.accumulate(np.where(hit, idx, -big), axis=1)[:, :-1]
        d = np.minimum(idx - prv, len(_BUCKET) - 1)
        prv_b = np.where(prv < 0, _NONE_BUCKET, _BUCKET[d])
        cols += [nxt_b[:, :, g] for g in range(hit.shape[2])]
        cols += [prv_b[:, :, g] for g in range(hit.shape[2])]

        cols.append(self._repeats(w[0] * V + w[1], n))
        cols.append(self._repeats((w[0] * V + w[1]) * V + w[2], n))
        # The current token combined with the class of the next one (号 before a digit vs before Han).
        cols.append(w[0] * N_CLASSES + cls[:, _WINDOW + 1:_WINDOW + 1 + n])
        return np.stack(cols, axis=-1)

    @staticmethod
    def _repeats(gram: np.ndarray, n: int) -> np.ndarray:
        """1 if the n-gram starting here also occurs earlier in the same address, 2 if later, 3 both, else -1."""
        b = gram.shape[0]
        # One key per (address, n-gram): n-gram keys are < 2**KEY_BITS, so the row goes above them.
        flat = (np.arange(b, dtype=np.int64)[:, None] << KEY_BITS | gram).reshape(-1)
        order = np.argsort(flat, kind="stable")
        ks = flat[order]
        new = np.empty(len(ks), bool)
        new[0] = True
        new[1:] = ks[1:] != ks[:-1]
        gid = np.cumsum(new) - 1
        starts = np.flatnonzero(new)
        ends = np.append(starts[1:], len(ks)) - 1
        first = np.empty_like(order)
        last = np.empty_like(order)
        first[order] = order[starts][gid]
        last[order] = order[ends][gid]
        pos = np.arange(len(flat))
        code = (first < pos) * 1 + (last > pos) * 2
        return np.where(code > 0, code, -1).reshape(b, n).astype(np.int64)

