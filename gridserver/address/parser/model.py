"""The trained address tagger and its model files; inference is numpy plus compiled C (:mod:`.native`).

Two taggers share the tokenizer, vocabulary and gazetteer of :mod:`.features`:

* the neural BiLSTM-CRF of :mod:`.neural` (trained with PyTorch, :mod:`.train_nn`), stored as an
  ``.npz`` (a zip of ``.npy`` arrays plus a JSON header) written with fixed zip timestamps;
* the older linear-chain CRF (trained with crfsuite): feature keys → weight rows → emission scores,
  stored as a gzip stream of a JSON header and raw little-endian arrays.

:meth:`AddressModel.load` tells the two apart by the file's first bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np

from gridserver.address.parser import kernels
from gridserver.address.parser.features import LABELS, TYPES, Featurizer, Lexicon, tokenize
from gridserver.address.parser.neural import NeuralTagger, bio_masks

FORMAT = "gridserver-address-crf/2"
NN_FORMAT = "gridserver-address-bilstm-crf/1"
_DENSE_LIMIT = 1 << 20  # templates whose keys are all below this get a direct lookup table
_NEG = np.float32(-1e9)


def _invalid(detail: str):
    """An InvalidInput error. Imported when needed: :mod:`gridserver.errors` pulls in FastAPI (~30 MB,
    ~0.3 s), which a process that only parses addresses does not otherwise need."""
    from gridserver.errors import InvalidInput

    return InvalidInput(detail)


class LinearCRF:
    """A linear-chain CRF: feature (template, key) → weight row, transitions, Viterbi decoding."""

    def __init__(self, n_templates: int, feat_template: np.ndarray, feat_key: np.ndarray,
                 weights: np.ndarray, transitions: np.ndarray, build: bool = True):
        self.n_templates = n_templates
        self.feat_template, self.feat_key = feat_template.astype(np.int64), feat_key.astype(np.int64)
        self.weights = weights.astype(np.float32)  # (F, L); row r belongs to feature r
        self.W = np.vstack([np.zeros((1, len(LABELS)), np.float32), self.weights])  # row 0 = absent
        self.transitions = transitions.astype(np.float32)
        allowed, start = bio_masks()
        self.trans = np.where(allowed, self.transitions, _NEG).astype(np.float32)
        self.start = np.where(start, 0, _NEG).astype(np.float32)
        if build:  # (not for a CRF that is only read to be made :meth:`compact`)
            self._lookups = self._build_lookups()
            self._groups, self._single = self._group_small_templates()
        self._b_cols = np.array([i for i, lab in enumerate(LABELS) if not lab.startswith("I-")])
        self._i_cols = np.array([i for i, lab in enumerate(LABELS) if lab.startswith("I-")])
        self._i_from_b = self._i_cols - 1  # B-X sits right before I-X in LABELS

    @classmethod
    def from_crfsuite(cls, n_templates: int, info) -> "LinearCRF":
        """Build from a crfsuite ``Tagger.info()`` whose attributes are ``"<template>:<key>"``."""
        label_index = {lab: i for i, lab in enumerate(LABELS)}
        attrs = sorted({a for a, _ in info.state_features},
                       key=lambda a: (int(a.split(":", 1)[0]), int(a.split(":", 1)[1])))
        attr_row = {a: r for r, a in enumerate(attrs)}
        weights = np.zeros((len(attrs), len(LABELS)), np.float32)
        for (a, lab), w in info.state_features.items():
            weights[attr_row[a], label_index[lab]] = w
        keep = np.abs(weights).max(axis=1) > 0 if len(attrs) else np.zeros(0, bool)
        attrs = [a for a, k in zip(attrs, keep) if k]
        weights = weights[keep]
        transitions = np.zeros((len(LABELS), len(LABELS)), np.float32)
        for (a, b), w in info.transitions.items():
            transitions[label_index[a], label_index[b]] = w
        return cls(n_templates, np.array([int(a.split(":", 1)[0]) for a in attrs], np.int64),
                   np.array([int(a.split(":", 1)[1]) for a in attrs], np.int64), weights, transitions)

    def _build_lookups(self):
        lookups = []
        by_t = defaultdict(list)
        for row, (t, k) in enumerate(zip(self.feat_template.tolist(), self.feat_key.tolist())):
            by_t[t].append((k, row + 1))
        for t in range(self.n_templates):
            items = sorted(by_t.get(t, []))
            keys = np.array([k for k, _ in items], np.int64)
            rows = np.array([r for _, r in items], np.int64)
            if len(keys) and keys.max() < _DENSE_LIMIT:
                table = np.zeros(int(keys.max()) + 2, np.int32 if len(self.feat_key) < 1 << 31 else np.int64)
                table[keys + 1] = rows
                lookups.append(("dense", table))
            else:
                lookups.append(("sparse", (keys, rows)))
        return lookups

    def compact(self, template_names: list[str]) -> tuple["LinearCRF", tuple[np.ndarray, np.ndarray]]:
        """The same CRF with n-gram keys replaced by their 1-based place in the sorted list of all
        bigram (trigram) keys it has weights for, and those two lists: pass them to
        :meth:`.Featurizer.keys` as ``ngrams``. Every template then has a direct lookup table."""
        from gridserver.address.parser.features import BIGRAM_TEMPLATES, TRIGRAM_TEMPLATES

        key = self.feat_key.copy()
        lists = []
        for family in (BIGRAM_TEMPLATES, TRIGRAM_TEMPLATES):
            sel = np.isin(self.feat_template, [template_names.index(t) for t in family])
            table = np.unique(self.feat_key[sel])
            key[sel] = np.searchsorted(table, self.feat_key[sel]) + 1
            lists.append(table)
        return LinearCRF(self.n_templates, self.feat_template, key, self.weights, self.transitions), tuple(lists)

    def _group_small_templates(self, max_size: int = 16, max_rows: int = 4096):
        """Templates with few keys (positions, distance buckets, gazetteer codes ...) are summed in
        groups: one table row per combination of their keys holds the sum of their weight rows, so a
        group costs one lookup instead of one per template. Returns ``(groups, other templates)``."""
        groups, single, cur, rows = [], [], [], 1
        for t, (kind, data) in enumerate(self._lookups):
            if kind != "dense" or len(data) > max_size:
                single.append(t)
                continue
            if rows * len(data) > max_rows:
                groups.append(cur)
                cur, rows = [], 1
            cur.append(t)
            rows *= len(data)
        if cur:
            groups.append(cur)
        out = []
        for g in groups:
            sizes = [len(self._lookups[t][1]) for t in g]
            C = np.zeros((1, len(LABELS)), np.float32)
            for t, size in zip(g, sizes):  # row index = mixed-radix number of the members' key indices
                C = (C[:, None, :] + self.W[self._lookups[t][1]][None, :, :]).reshape(-1, len(LABELS))
            out.append((g, sizes, np.ascontiguousarray(C)))
        # all grouped templates' row indices at once: index = keys (made 1-based, 0 = absent or out
        # of table) @ mixed-radix strides, as one float64 matmul (exact for these small integers)
        cols = [t for g, _, _ in out for t in g]
        limits = np.array([len(self._lookups[t][1]) - 1 for t in cols], np.int64)
        strides = np.zeros((len(cols), len(out)), np.float64)
        k = 0
        for j, (g, sizes, _) in enumerate(out):
            for i in range(len(g)):
                strides[k, j] = float(np.prod(sizes[i + 1:], dtype=np.int64))
                k += 1
        self._group_cols, self._group_limits, self._group_strides = np.array(cols, np.int64), limits, strides
        # every row any lookup can return, in one table: the groups' tables, then W (row 0 of W = absent)
        self._table = np.ascontiguousarray(np.vstack([C for _, _, C in out] + [self.W]), dtype=np.float32)
        self._group_offsets = np.cumsum([0] + [len(C) for _, _, C in out])[:-1].astype(np.int64)
        self._w_offset = int(sum(len(C) for _, _, C in out))
        return out, single

    def drop_build_arrays(self) -> None:
        """Free the per-feature weight arrays once the lookup tables are built (scoring reads only
        ``_table``); :meth:`arrays` and :meth:`compact` need them, so call this on a compact CRF."""
        self.weights = self.W = None

    def _rows(self, t: int, keys: np.ndarray) -> np.ndarray:
        kind, data = self._lookups[t]
        if kind == "dense":
            table = data
            k = np.where(keys >= len(table) - 1, -1, keys)
            return table[k + 1]
        sorted_keys, rows = data
        if not len(sorted_keys):
            return np.zeros(len(keys), np.int64)
        pos = np.searchsorted(sorted_keys, keys)
        pos[pos == len(sorted_keys)] = 0
        return np.where(sorted_keys[pos] == keys, rows[pos], 0)

    def emissions(self, keys: np.ndarray) -> np.ndarray:
        """Per-token label scores (B, n, L) for feature keys (B, n, T)."""
        b, n, T = keys.shape
        keys = keys.reshape(b * n, T)
        # one row index per lookup (grouped templates, then the others), summed in one compiled pass
        idx = np.empty((b * n, len(self._groups) + len(self._single)), np.int64)
        if self._groups:
            K = keys[:, self._group_cols] + 1
            K[K > self._group_limits] = 0
            g = len(self._groups)
            idx[:, :g] = (K.astype(np.float64) @ self._group_strides).astype(np.int64) + self._group_offsets
        for c, t in enumerate(self._single, start=len(self._groups)):
            idx[:, c] = self._rows(t, keys[:, t]) + self._w_offset
        E = np.zeros((b * n, len(LABELS)), np.float32)
        kernels.sum_rows(E, self._table, idx)
        return E.reshape(b, n, -1)

    def viterbi(self, E: np.ndarray) -> np.ndarray:
        """Best label index sequences (B, n) under the BIO-constrained transitions.

        The forward pass keeps only the best scores per step; the backward pass recomputes the one
        argmax it needs per step, which is cheaper than storing back-pointers for every label.
        """
        b, n, L = E.shape
        scores = np.empty((n, b, L), np.float32)
        score = E[:, 0] + self.start
        scores[0] = score
        trans_b = self.trans[:, self._b_cols]  # any label may precede B-X / O
        ti = self.trans[self._i_cols, self._i_cols]  # I-X → I-X
        tb = self.trans[self._i_from_b, self._i_cols]  # B-X → I-X
        b_cols, i_cols, i_from_b = self._b_cols, self._i_cols, self._i_from_b
        for t in range(1, n):
            new = np.empty_like(score)
            new[:, b_cols] = (score[:, :, None] + trans_b).max(axis=1)
            new[:, i_cols] = np.maximum(score[:, i_cols] + ti, score[:, i_from_b] + tb)
            score = new + E[:, t]
            scores[t] = score
        path = np.empty((b, n), np.int64)
        cur = score.argmax(axis=1)
        path[:, -1] = cur
        trans = self.trans
        for t in range(n - 1, 0, -1):
            cur = (scores[t - 1] + trans[:, cur].T).argmax(axis=1)
            path[:, t - 1] = cur
        return path

    def decode(self, keys: np.ndarray) -> np.ndarray:
        return self.viterbi(self.emissions(keys))

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        nz = np.nonzero(self.weights)
        return {f"{prefix}feat_template": self.feat_template.astype("<i2"),
                f"{prefix}feat_key": self.feat_key.astype("<i8"),
                f"{prefix}w_row": nz[0].astype("<i4"), f"{prefix}w_label": nz[1].astype("<i1"),
                f"{prefix}w_value": self.weights[nz].astype("<f4"),
                f"{prefix}transitions": self.transitions.astype("<f4")}

    @classmethod
    def from_arrays(cls, n_templates: int, arrays: dict, prefix: str, build: bool = True) -> "LinearCRF":
        n_feat = len(arrays[f"{prefix}feat_key"])
        weights = np.zeros((n_feat, len(LABELS)), np.float32)
        weights[arrays[f"{prefix}w_row"], arrays[f"{prefix}w_label"]] = arrays[f"{prefix}w_value"]
        return cls(n_templates, arrays[f"{prefix}feat_template"], arrays[f"{prefix}feat_key"], weights,
                   arrays[f"{prefix}transitions"], build)


class AddressModel:
    """Featurizer (vocabulary, gazetteer) + a tagger: the neural one if given, else the CRF."""

    def __init__(self, featurizer: Featurizer, crf: LinearCRF | None = None, meta: dict | None = None,
                 neural: NeuralTagger | None = None, members: list[dict] | None = None):
        if crf is None and neural is None:
            raise ValueError("AddressModel needs a CRF or a neural tagger")
        self.featurizer, self.crf, self.neural = featurizer, crf, neural
        # the neural members' raw arrays, for saving a freshly trained model; a loaded model lets them go
        # (the tagger keeps what it computes from them: ~5 MB less resident)
        self.members = members or []
        self.meta = meta or {}

    # --- public ------------------------------------------------------------------------------------
    def tag_batch(self, texts: Sequence[str]) -> list[list[tuple[str, int, int]]]:
        """Spans ``(label, start, end)`` for each text; offsets index the original strings."""
        out: list[list[tuple[str, int, int]]] = [[] for _ in texts]
        encode = self.featurizer.encode
        toks_of: list = [None] * len(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise _invalid(f"address #{i} is {type(text).__name__}, expected a string")
            toks, starts, ends = tokenize(text)
            if toks:
                toks_of[i] = (encode(toks), starts, ends)
        if self.neural is not None:
            todo = [i for i in range(len(texts)) if toks_of[i] is not None]
            paths = self.neural.tag_ids([toks_of[i][0] for i in todo])
            for i, path in zip(todo, paths):
                out[i] = _spans(path, toks_of[i][1], toks_of[i][2])
            return out
        groups: dict[int, list[int]] = defaultdict(list)
        for i, t in enumerate(toks_of):
            if t is not None:
                groups[len(t[0])].append(i)
        for n, members in groups.items():
            ids = np.array([toks_of[i][0] for i in members], np.int64)
            paths = self.crf.decode(self.featurizer.keys(ids)).tolist()
            for i, path in zip(members, paths):
                out[i] = _spans(path, toks_of[i][1], toks_of[i][2])
        return out

    # --- persistence -------------------------------------------------------------------------------
    def save(self, path: Path | str) -> int:
        """Write the model (deterministic bytes); returns the file size."""
        if self.neural is not None:
            return self._save_neural(path)
        f = self.featurizer
        arrays = {
            "lex_hashes": f.lexicon.hashes.astype("<u8"),
            "lex_lengths": f.lexicon.lengths.astype("<i1"),
            "lex_masks": f.lexicon.masks.astype("<i4"),
            **self.crf.arrays(""),
        }
        header = {"format": FORMAT, "labels": list(LABELS), "types": list(TYPES),
                  "templates": f.template_names,
                  "vocab": f.vocab_list, "meta": self.meta,
                  "arrays": {k: [str(a.dtype.str), list(a.shape)] for k, a in arrays.items()}}
        raw = io.BytesIO()
        hb = json.dumps(header, ensure_ascii=False, sort_keys=True).encode()
        raw.write(len(hb).to_bytes(8, "little"))
        raw.write(hb)
        for name in sorted(arrays):  # the header's keys are sorted too: the reader walks them in order
            raw.write(np.ascontiguousarray(arrays[name]).tobytes())
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz:
            gz.write(raw.getvalue())
        return path.stat().st_size

    def _save_neural(self, path: Path | str) -> int:
        if not self.members:
            raise ValueError("a loaded neural model keeps no raw weights and cannot be saved again; "
                             "copy its file, or save the model that training returned")
        nn = self.neural
        lex = self.featurizer.lexicon
        arrays = {"lex_hashes": lex.hashes.astype("<u8"), "lex_lengths": lex.lengths.astype("<i1"),
                  "lex_masks": lex.masks.astype("<i4"), "bigram_keys": nn.bigram_keys.astype("<i8"),
                  "trigram_keys": nn.trigram_keys.astype("<i8")}
        if nn.dictionary is not None:
            d = nn.dictionary
            arrays.update({"dict_hashes": d.hashes.astype("<u8"), "dict_lengths": d.lengths.astype("<i1"),
                           "dict_masks": d.masks.astype("<i1")})
        for k, m in enumerate(self.members):
            for name, a in m.items():
                # float16 halves the file; inference computes in float32 from these values
                arrays[f"m{k}_{name}"] = np.asarray(a).astype("<f2")
        header = {"format": NN_FORMAT, "labels": list(LABELS), "types": list(TYPES), "vocab": self.featurizer.vocab_list,
                  "members": len(self.members), "meta": self.meta}
        if nn.crf is not None:
            arrays.update(nn.crf_file.arrays("crf_"))
            header.update(crf_weight=nn.crf_weight, templates=self.featurizer.template_names)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            # fixed timestamps: the same training run gives the same bytes
            entries = {"header.json": json.dumps(header, ensure_ascii=False, sort_keys=True).encode()}
            for name in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
                entries[f"{name}.npy"] = buf.getvalue()
            for name, data in entries.items():
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data, compresslevel=9)
        return path.stat().st_size

    @classmethod
    def _load_neural(cls, path: Path) -> "AddressModel":
        try:
            with zipfile.ZipFile(path) as zf:
                header = json.loads(zf.read("header.json"))
                arrays = {n[:-4]: np.lib.format.read_array(io.BytesIO(zf.read(n)), allow_pickle=False)
                          for n in zf.namelist() if n.endswith(".npy")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise _invalid(f"{path}: not an address model file ({exc})") from exc
        if header.get("format") != NN_FORMAT or header.get("labels") != list(LABELS):
            raise _invalid(f"{path}: model format {header.get('format')!r} does not match {NN_FORMAT!r}")
        lexicon = Lexicon(arrays["lex_hashes"].astype(np.uint64), arrays["lex_lengths"].astype(np.int8),
                          arrays["lex_masks"].astype(np.int32))
        feat = Featurizer(header["vocab"], lexicon)
        members = []
        for k in range(header["members"]):
            pre = f"m{k}_"
            members.append({n[len(pre):]: a for n, a in arrays.items() if n.startswith(pre)})
        dictionary = None
        if "dict_hashes" in arrays:
            dictionary = Lexicon(arrays["dict_hashes"].astype(np.uint64), arrays["dict_lengths"].astype(np.int8),
                                 arrays["dict_masks"].astype(np.int32))
        crf = None
        if "crf_feat_key" in arrays:
            if feat.template_names != header.get("templates"):
                raise _invalid(f"{path}: CRF feature templates differ from this code's; retrain the model")
            crf = LinearCRF.from_arrays(len(feat.template_names), arrays, "crf_", build=False)  # compacted next
        tagger = NeuralTagger(feat.V, arrays["bigram_keys"], lexicon, members, arrays["trigram_keys"], dictionary,
                              crf, header.get("crf_weight", 0.0), feat)
        return cls(feat, None, header.get("meta"), neural=tagger)

    @classmethod
    def load(cls, path: Path | str) -> "AddressModel":
        """Read a model written by :meth:`save`; raise InvalidInput if the file is not one."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise _invalid(f"{path}: not an address model file ({exc})") from exc
        if raw[:2] == b"PK":
            return cls._load_neural(path)
        try:
            data = gzip.decompress(raw)
            hlen = int.from_bytes(data[:8], "little")
            header = json.loads(data[8:8 + hlen])
        except (OSError, ValueError, EOFError) as exc:
            raise _invalid(f"{path}: not an address model file ({exc})") from exc
        if header.get("format") != FORMAT or header.get("labels") != list(LABELS):
            raise _invalid(f"{path}: model format {header.get('format')!r} does not match {FORMAT!r}")
        arrays, off = {}, 8 + hlen
        for name, (dtype, shape) in sorted(header["arrays"].items()):
            dt = np.dtype(dtype)
            count = int(np.prod(shape)) if shape else 1
            arrays[name] = np.frombuffer(data, dt, count, off).reshape(shape)
            off += count * dt.itemsize
        lexicon = Lexicon(arrays["lex_hashes"].astype(np.uint64), arrays["lex_lengths"].astype(np.int8),
                          arrays["lex_masks"].astype(np.int32))
        feat = Featurizer(header["vocab"], lexicon)
        if feat.template_names != header["templates"]:
            raise _invalid(f"{path}: feature templates differ from this code's; retrain the model")
        return cls(feat, LinearCRF.from_arrays(len(feat.template_names), arrays, ""), header.get("meta"))


def _spans(path: list[int], starts: list[int], ends: list[int]) -> list[tuple[str, int, int]]:
    spans: list[tuple[str, int, int]] = []
    cur = None
    for j, li in enumerate(path):
        if li == 0:
            if cur:
                spans.append(tuple(cur))
                cur = None
            continue
        lab = LABELS[li]
        typ = lab[2:]
        if lab[0] == "B" or cur is None or cur[0] != typ:
            if cur:
                spans.append(tuple(cur))
            cur = [typ, starts[j], ends[j]]
        else:
            cur[2] = ends[j]
    if cur:
        spans.append(tuple(cur))
    return spans
