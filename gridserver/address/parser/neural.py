"""The neural address tagger at run time: char BiLSTM + CRF, inference in C (:mod:`.native`) or numpy.

Inputs per token: its character embedding, the embeddings of the character bigrams to its left and
right, 3 x 21 gazetteer bits (an entity of type X begins / ends / runs through here; gazetteer =
the training set's entities) and, when the model has a dictionary, 3 x 5 dictionary bits (a word of
jieba's general word list, by class: place / organisation / person / noun / other). Optional per
member (off in the committed model, they did not help on dev): 6 repetition bits and direct n-gram
label scores. A stack of bidirectional LSTM layers reads them, a linear layer gives label scores;
the scores of a separately trained linear-chain CRF over hand-made feature templates (see
:mod:`.features`) can be added with a weight; a BIO-constrained Viterbi picks the best label
sequence. Several members can be stacked in one file; their emissions and transitions are averaged
(the averaged path score is the mean of the members' path scores, so Viterbi on the averages finds
the best path of the ensemble).

Weights are trained with PyTorch (:mod:`.train_nn`), but nothing here needs torch. Speed comes from
not doing work twice: the input projection of characters and bigrams is a table lookup, addresses
are sorted longest first so each LSTM step touches only the rows still inside their address (a
prefix of the batch), every step works in small preallocated buffers, and the innermost loops
(Viterbi, summing looked-up rows) are in :mod:`.kernels`. When a C compiler is available the whole
forward pass runs in :mod:`.native` instead (same tags; this numpy path is its reference and fallback).
"""

from __future__ import annotations

import numpy as np

from gridserver.address.parser import kernels
from gridserver.address.parser.features import LABELS, TYPES, Featurizer, Lexicon, place

N_LEX = 3 * len(TYPES)
N_REP = 6
#: Word classes of the general dictionary (jieba's word list): place, organisation, person, noun, other.
DICT_CLASSES = ("ns", "nt", "nr", "n", "other")
N_DICT = 3 * len(DICT_CLASSES)
_NEG = np.float32(-1e4)
_BATCH = 512  # addresses per padded batch (256-1024 measured about the same; 128 slower)


def bio_masks() -> tuple[np.ndarray, np.ndarray]:
    """Allowed transitions (L, L) and allowed first labels (L,): I-X only after B-X or I-X."""
    n = len(LABELS)
    allowed = np.ones((n, n), bool)
    start = np.ones(n, bool)
    for j, lab in enumerate(LABELS):
        if lab.startswith("I-"):
            start[j] = False
            for i, prev in enumerate(LABELS):
                allowed[i, j] = prev[2:] == lab[2:] and prev != "O"
    return allowed, start


def lexicon_bits(lexicon: Lexicon, ids: np.ndarray, n_classes: int = len(TYPES)) -> np.ndarray:
    """Gazetteer features (B, n, 3 x classes) float32: an entry of class k begins / ends / runs
    through here (classes: the 21 types for the training gazetteer, DICT_CLASSES for the dictionary)."""
    begin, end, inside = lexicon.match(ids, bits_only=True)[:3]
    shifts = np.arange(n_classes, dtype=np.int32)
    out = np.empty(ids.shape + (3 * n_classes,), np.float32)
    for k, m in enumerate((begin, end, inside)):
        out[..., k * n_classes:(k + 1) * n_classes] = (m[..., None] >> shifts) & 1
    return out


def dict_bits(lexicon: Lexicon, ids: np.ndarray) -> np.ndarray:
    """Dictionary-word features (B, n, 15): a word of class k begins / ends / runs through here."""
    return lexicon_bits(lexicon, ids, len(DICT_CLASSES))


def lexicon_patterns(lexicon: Lexicon, ids: np.ndarray, match: tuple | None = None,
                     n_classes: int = len(TYPES)) -> tuple[np.ndarray, np.ndarray]:
    """The distinct gazetteer bit patterns of a batch: ``(pattern index (B, n), bits (P, 3 x classes))``.

    A batch has far fewer distinct patterns than tokens, so the LSTM input projection of the
    gazetteer bits is computed once per pattern and then looked up.
    """
    begin, end, inside = (match or lexicon.match(ids, bits_only=True))[:3]
    key = begin.astype(np.int64) | end.astype(np.int64) << n_classes | inside.astype(np.int64) << (2 * n_classes)
    uniq, inv = np.unique(key, return_inverse=True)
    bits = ((uniq[:, None] >> np.arange(3 * n_classes, dtype=np.int64)) & 1).astype(np.float32)
    return inv.reshape(ids.shape), bits


def dict_patterns(lexicon: Lexicon, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct dictionary-word bit patterns: ``(pattern index (B, n), bits (P, 15))``."""
    return lexicon_patterns(lexicon, ids, None, len(DICT_CLASSES))


def repeat_codes(ids: np.ndarray, V: int) -> np.ndarray:
    """Repetition bits (B, n) in 0..63: does the right bigram / left bigram / trigram around each token
    also occur earlier (bit 0) or later (bit 1) in the same address (2 bits each, in that order).

    A repeated 杭州市 is what marks ``redundant``; an LSTM cannot easily compare strings itself.
    """
    b, n = ids.shape
    P = np.zeros((b, n + 2), np.int64)
    P[:, 1:n + 1] = ids
    prev, cur, nxt = P[:, :n], P[:, 1:n + 1], P[:, 2:]
    out = np.zeros((b, n), np.int64)
    for k, gram in enumerate((cur * V + nxt, prev * V + cur, (prev * V + cur) * V + nxt)):
        out |= np.maximum(Featurizer._repeats(gram, n), 0) << (2 * k)
    return out


def bigram_ids(ids: np.ndarray, bigram_keys: np.ndarray, V: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (B, n) of the left bigram (prev, cur) and right bigram (cur, next); 0 = unknown.

    ``bigram_keys`` is the sorted array of known ``a * V + b`` keys; key j has index j + 1.
    """
    b, n = ids.shape
    P = np.zeros((b, n + 2), np.int64)
    P[:, 1:n + 1] = ids
    idx = place(P[:, :-1] * V + P[:, 1:], bigram_keys)  # (B, n+1): key i is the bigram (token i-1, token i)
    return idx[:, :n], idx[:, 1:]


def trigram_ids(ids: np.ndarray, trigram_keys: np.ndarray, V: int) -> np.ndarray:
    """Indices (B, n) of the trigram (prev, cur, next) around each token in ``trigram_keys``; 0 = unknown."""
    b, n = ids.shape
    P = np.zeros((b, n + 2), np.int64)
    P[:, 1:n + 1] = ids
    return place((P[:, :n] * V + P[:, 1:n + 1]) * V + P[:, 2:], trigram_keys)


class Member:
    """One trained BiLSTM-CRF: embeddings, LSTM weights (stored in PyTorch's gate order i, f, g, o), output layer."""

    def __init__(self, a: dict[str, np.ndarray], bigram_keys: np.ndarray, V: int):
        H = a["w_hh_f"].shape[1]
        # gate rows reordered from PyTorch's (i, f, g, o) to (i, f, o, g): the three sigmoid gates
        # then sit side by side and each step squashes them in one slice
        perm = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]
        gated = {k for k in a if k[:4] in ("w_ih", "w_hh", "b_ih", "b_hh")}
        f32 = lambda k: np.ascontiguousarray(a[k][perm] if k in gated else a[k], dtype=np.float32)  # noqa: E731
        emb_c, emb_b = f32("emb_c"), f32("emb_b")  # only their projections below are kept
        self.H = H
        dc = emb_c.shape[1]
        # Input weights of both directions side by side: (in, 8H).
        W = np.concatenate([f32("w_ih_f"), f32("w_ih_b")], axis=0).T
        bias = np.concatenate([f32("b_ih_f") + f32("b_hh_f"), f32("b_ih_b") + f32("b_hh_b")])
        # sigmoid(x) = 0.5 + 0.5 * tanh(x / 2): halving the i, f, o gate columns up front lets one
        # tanh over all four gates do the work of three sigmoids and a tanh in each step.
        half = np.ones(4 * self.H, np.float32)
        half[:3 * self.H] = 0.5  # i, f, o
        W = W * np.tile(half, 2)
        bias = bias * np.tile(half, 2)
        # The input projection of characters and bigrams is a table lookup: the left bigram (prev,
        # cur) knows its character, so one table (NB + 1 + V, 8H) holds char + left bigram (rows
        # past NB: a character whose left bigram is unknown), a second (NB + 1, 8H) the right
        # bigram; the bias rides along. A lookup costs far less than the matmul it replaces
        # (~35 MB per table for 11k bigrams and H = 96). Each direction gets its own contiguous half.
        proj_c = emb_c @ W[:dc] + bias
        db = emb_b.shape[1]
        proj_bl = emb_b @ W[dc:dc + db]
        proj_br = emb_b @ W[dc + db:dc + 2 * db]
        if len(bigram_keys) + 1 != len(emb_b):
            raise ValueError(f"{len(emb_b)} bigram embeddings for {len(bigram_keys)} bigram keys (+1 unknown)")
        cur = np.asarray(bigram_keys, np.int64) % V
        left = np.concatenate([proj_bl[:1], proj_bl[1:] + proj_c[cur], proj_c + proj_bl[0]])
        self.tables = [(np.ascontiguousarray(left[:, d * 4 * self.H:(d + 1) * 4 * self.H]),
                        np.ascontiguousarray(proj_br[:, d * 4 * self.H:(d + 1) * 4 * self.H])) for d in (0, 1)]
        self.n_bigrams = len(bigram_keys)
        self.W_lex = np.ascontiguousarray(W[dc + 2 * db:dc + 2 * db + N_LEX])  # gazetteer bits
        k = dc + 2 * db + N_LEX
        # dictionary-word bits (members trained with a general word list): rows after the gazetteer's
        self.W_dict = None
        if bool(a.get("has_dict", np.zeros(1))[0]):
            self.W_dict = np.ascontiguousarray(W[k:k + N_DICT])
            k += N_DICT
        # repetition bits (members trained without them have no such rows): a (64, 8H) table
        self.proj_rep = None
        if W.shape[0] == k + N_REP:
            codes = np.arange(1 << N_REP)
            bits = ((codes[:, None] >> np.arange(N_REP)) & 1).astype(np.float32)
            self.proj_rep = bits @ W[k:]
        self.w_hh_f = (f32("w_hh_f") * half[:, None]).T.copy()
        self.w_hh_b = (f32("w_hh_b") * half[:, None]).T.copy()
        # stacked layers 2, 3, ... (arrays "w_ih_f2" ...): input = the previous layer's (n, B, 2H)
        self.upper = []
        n = 2
        while f"w_ih_f{n}" in a:
            Wn = np.concatenate([f32(f"w_ih_f{n}"), f32(f"w_ih_b{n}")], axis=0).T * np.tile(half, 2)
            bn = np.concatenate([f32(f"b_ih_f{n}") + f32(f"b_hh_f{n}"), f32(f"b_ih_b{n}") + f32(f"b_hh_b{n}")])
            bn = bn * np.tile(half, 2)
            # per direction one matrix for [input, h, 1] -> gates: one matmul per step
            self.upper.append(tuple(
                np.ascontiguousarray(np.vstack([Wn[:, d * 4 * self.H:(d + 1) * 4 * self.H],
                                                (f32(f"w_hh_{x}{n}") * half[:, None]).T,
                                                bn[None, d * 4 * self.H:(d + 1) * 4 * self.H]]))
                for d, x in ((0, "f"), (1, "b"))))
            n += 1
        self.out_w, self.out_b = f32("out_w").T.copy(), f32("out_b")
        # direct n-gram label scores (members trained without them have none): a CRF-like sparse
        # part that memorises frequent local patterns next to the LSTM's generalisation
        self.direct = None
        if "d_tri" in a:
            self.direct = (f32("d_bl"), f32("d_br"), f32("d_tri"))
        self.trans, self.start, self.end = f32("trans"), f32("start"), f32("end")

    def emissions(self, ids, bl, br, lex, rep, tri, lengths, dic=None) -> np.ndarray:
        """Label scores (B, n, L) for a padded batch whose ``lengths`` are in descending order;
        positions past ``lengths`` are garbage.

        ``lex`` is ``(pattern index (B, n), pattern bits (P, 63))`` from :func:`lexicon_patterns`,
        ``dic`` the same for the dictionary, ``rep`` the codes of :func:`repeat_codes`.
        """
        b, n = ids.shape
        H = self.H
        m = b * n
        lex_inv, lex_bits = lex
        # the first layer's input gates are gathered step by step (time-major indices): small
        # buffers that stay in cache instead of one (n, B, 8H) array written and read back
        left = np.where(bl > 0, bl, self.n_bigrams + 1 + ids).T.copy()
        sources = [(0, left), (1, br.T.copy())]
        if self.proj_rep is None:
            batch_tables = [(lex_bits @ self.W_lex, lex_inv.T.copy())]
        else:  # one row per distinct (gazetteer pattern, repetition code) pair
            uniq, inv = np.unique(lex_inv.T.reshape(m) << N_REP | rep.T.reshape(m), return_inverse=True)
            tab = (lex_bits @ self.W_lex)[uniq >> N_REP] + self.proj_rep[uniq & ((1 << N_REP) - 1)]
            batch_tables = [(tab, inv.reshape(n, b))]
        if self.W_dict is not None:
            dic_inv, dic_bits = dic
            batch_tables.append((dic_bits @ self.W_dict, dic_inv.T.copy()))
        if len(batch_tables) > 2:
            raise ValueError("a member reads at most two per-batch tables (gazetteer, dictionary)")
        # per direction four (table, time-major index) pairs, padded with a zero table
        zero = (np.zeros((1, 8 * H), np.float32), np.zeros((n, b), np.int64))
        inputs = [[(self.tables[d][k], idx) for k, idx in sources] +
                  [(np.ascontiguousarray(tab[:, d * 4 * H:(d + 1) * 4 * H]), idx)
                   for tab, idx in batch_tables + [zero] * (2 - len(batch_tables))] for d in (0, 1)]

        def first_layer(z, t, d, a):
            (t0, i0), (t1, i1), (t2, i2), (t3, i3) = inputs[d]
            kernels.add_gathered(z, t0, i0[t, :a], t1, i1[t, :a], t2, i2[t, :a], t3, i3[t, :a])

        active = active_rows(lengths, n)
        out = self._bilstm(n, b, active, self.w_hh_f, self.w_hh_b, first_layer)
        for w_f, w_b in self.upper:  # an upper layer reads the layer below step by step too
            out = self._bilstm(n, b, active, w_f, w_b, below=out)
        E = out.reshape(m, 2 * H) @ self.out_w + self.out_b
        if self.direct is not None:
            d_bl, d_br, d_tri = self.direct
            E += d_bl[bl.T.reshape(m)] + d_br[br.T.reshape(m)] + d_tri[tri.T.reshape(m)]
        return E.reshape(n, b, -1).transpose(1, 0, 2)

    def _bilstm(self, n, b, active, w_f, w_b, add_input=None, below=None) -> np.ndarray:
        """Both directions of one LSTM layer: outputs (n, B, 2H), zero past each row's length.

        Rows are sorted by length, longest first, so at step ``t`` the rows still inside their
        address are the first ``active[t]``: each step works on that prefix only. Going backwards, a
        row joins at its own last token with the zero state it still has.

        First layer: ``w_f`` / ``w_b`` are the recurrent weights (H, 4H) and ``add_input(z, t, d, a)``
        adds the input gates of step ``t``, direction ``d`` (0 forward, 1 backward) for the first
        ``a`` rows to ``z``. Upper layers: ``below`` is the layer below's output and ``w_f`` / ``w_b``
        map ``[below, h, 1]`` to the gates in one matmul. Gates are pre-halved (see ``__init__``).
        Every step works in the same few buffers: fresh arrays per step would cost page faults.
        """
        H = self.H
        d_in = below.shape[2] if below is not None else 0
        out = np.zeros((n, b, 2 * H), np.float32)
        x_buf = np.zeros((b, d_in + H + (1 if d_in else 0)), np.float32)  # [below, h, 1] or h
        if d_in:
            x_buf[:, -1] = 1
        z_buf = np.empty((b, 4 * H), np.float32)
        u_buf = np.empty((b, 3 * H), np.float32)  # i, f, o gates, as sigmoids
        tmp_buf = np.empty((b, H), np.float32)
        c_buf = np.empty((b, H), np.float32)
        for direction, w, steps in ((0, w_f, range(n)), (1, w_b, range(n - 1, -1, -1))):
            x_buf[:, d_in:d_in + H] = 0
            c_buf[:] = 0
            for t in steps:
                a = int(active[t])
                x, z, u, tmp, c = x_buf[:a], z_buf[:a], u_buf[:a], tmp_buf[:a], c_buf[:a]
                if d_in:
                    x[:, :d_in] = below[t, :a]
                np.matmul(x, w, out=z)
                if add_input is not None:
                    add_input(z, t, direction, a)
                np.tanh(z, out=z)
                np.multiply(z[:, :3 * H], 0.5, out=u)
                u += 0.5  # i, f, o = sigmoid of the original pre-activations; g = z[:, 3H:]
                c *= u[:, H:2 * H]  # c = f * c + i * g
                np.multiply(u[:, :H], z[:, 3 * H:], out=tmp)
                c += tmp
                np.tanh(c, out=tmp)
                h = x[:, d_in:d_in + H]
                np.multiply(u[:, 2 * H:], tmp, out=h)  # h = o * tanh(c)
                out[t, :a, H * direction:H * (direction + 1)] = h
        return out


def active_rows(lengths: np.ndarray, n: int) -> np.ndarray:
    """For lengths in descending order: how many rows are still inside their address at each step."""
    return (np.asarray(lengths)[:, None] > np.arange(n)).sum(axis=0)


def _descending(lengths: np.ndarray) -> np.ndarray | None:
    """None if ``lengths`` are in descending order, else the (stable) order that sorts them so."""
    lengths = np.asarray(lengths)
    if len(lengths) < 2 or (lengths[:-1] >= lengths[1:]).all():
        return None
    return np.argsort(-lengths, kind="stable")


def _longest_first(fn, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``fn(x, lengths)`` computed with the rows sorted longest first, returned in the callers' order."""
    order = _descending(lengths)
    out = fn(x[order], np.asarray(lengths)[order])
    out[order] = out.copy()
    return out


class NeuralTagger:
    """An ensemble of :class:`Member` taggers sharing the vocabulary, bigrams and gazetteer."""

    def __init__(self, V: int, bigram_keys: np.ndarray, lexicon: Lexicon, members: list[dict],
                 trigram_keys: np.ndarray | None = None, dictionary: Lexicon | None = None,
                 crf=None, crf_weight: float = 0.0, featurizer=None):
        self.V = V
        self.dictionary = dictionary
        # a linear-chain CRF over the hand-made feature templates (a different kind of model: its
        # scores, weighted, are added to the members' average; ``featurizer`` computes its keys)
        self.crf, self.crf_weight, self.featurizer = (crf, float(crf_weight), featurizer) if crf_weight else \
            (None, 0.0, None)
        # as saved: kept as its few sparse arrays (``crf_file`` rebuilds it); ``self.crf`` is the fast compact form
        self._crf_arrays = self.crf.arrays("crf_") if self.crf is not None else None
        if self.crf is not None:
            self.crf, self.ngrams = self.crf.compact(featurizer.template_names)
            self.crf.drop_build_arrays()
        self.bigram_keys = np.asarray(bigram_keys, np.int64)
        self.trigram_keys = np.asarray(trigram_keys if trigram_keys is not None else [], np.int64)
        self.lexicon = lexicon
        self.members = [Member(m, self.bigram_keys, V) for m in members]
        allowed, start = bio_masks()
        k = len(self.members)
        self.trans = np.where(allowed, sum(m.trans for m in self.members) / k, _NEG).astype(np.float32)
        self.start = np.where(start, sum(m.start for m in self.members) / k, _NEG).astype(np.float32)
        self.end = (sum(m.end for m in self.members) / k).astype(np.float32)
        if self.crf is not None:
            self.trans = (self.trans + self.crf_weight * self.crf.trans).astype(np.float32)
            self.start = (self.start + self.crf_weight * self.crf.start).astype(np.float32)
        self._b_cols = np.array([i for i, lab in enumerate(LABELS) if not lab.startswith("I-")])
        self._i_cols = np.array([i for i, lab in enumerate(LABELS) if lab.startswith("I-")])
        self._i_from_b = self._i_cols - 1  # B-X sits right before I-X in LABELS
        # the compiled path (C via ctypes, see :mod:`.native`); None: numpy only (no compiler, or
        # a model shape it does not cover)
        from gridserver.address.parser.native import NativeTagger

        self.native = NativeTagger.create(self)

    @property
    def crf_file(self):
        """The CRF as saved (plain n-gram keys), rebuilt from its arrays; None without a CRF."""
        if self._crf_arrays is None:
            return None
        from gridserver.address.parser.model import LinearCRF

        return LinearCRF.from_arrays(len(self.featurizer.template_names), self._crf_arrays, "crf_")

    def inputs(self, ids: np.ndarray, match: tuple | None = None):
        bl, br = bigram_ids(ids, self.bigram_keys, self.V)
        # repetition codes only if some member reads them
        rep = repeat_codes(ids, self.V) if any(m.proj_rep is not None for m in self.members) else None
        dic = dict_patterns(self.dictionary, ids) if self.dictionary is not None else None
        return (bl, br, lexicon_patterns(self.lexicon, ids, match), rep, trigram_ids(ids, self.trigram_keys, self.V),
                dic)

    def emissions(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Label scores (B, n, L): the members' average, plus the weighted CRF scores if there is a CRF."""
        if _descending(lengths) is not None:
            return _longest_first(self.emissions, ids, lengths)
        match = self.lexicon.match(ids)  # the gazetteer serves the members and the CRF
        bl, br, lex, rep, tri, dic = self.inputs(ids, match)
        E = self.members[0].emissions(ids, bl, br, lex, rep, tri, lengths, dic)
        for m in self.members[1:]:
            E += m.emissions(ids, bl, br, lex, rep, tri, lengths, dic)
        if len(self.members) > 1:
            E /= len(self.members)
        if self.crf is not None:
            C = self.crf.emissions(self.featurizer.keys(ids, lengths, match, self.ngrams))
            C *= self.crf_weight
            E += C
        return E

    def viterbi(self, E: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Best label paths (B, n) of a padded batch (entries past each length are meaningless).

        Uses the BIO structure: O and B-X may follow anything (a max over all labels), I-X only
        B-X or I-X (a max of two). The forward pass keeps the scores per step; the backward pass
        recomputes the one argmax it needs, which is cheaper than back-pointers for every label.
        Compiled (:mod:`.native`) when available, else :meth:`viterbi_numpy`; rows may come in any order.
        """
        if self.native is not None:
            return self.native.viterbi(E, lengths)
        return self.viterbi_numpy(E, lengths)

    def viterbi_numpy(self, E: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """:meth:`viterbi` in plain numpy (the reference the compiled kernel is tested against).

        With rows sorted longest first, step ``t`` only touches the rows still inside their
        address (a prefix), so a row's scores stop changing after its last token.
        """
        if _descending(lengths) is not None:
            return _longest_first(self.viterbi_numpy, E, lengths)
        b, n, L = E.shape
        b_cols, i_cols, i_from_b = self._b_cols, self._i_cols, self._i_from_b
        trans = self.trans
        trans_b = np.ascontiguousarray(trans[:, b_cols].T)  # (to, from): the max runs along the last axis
        ti = trans[i_cols, i_cols]
        tb = trans[i_from_b, i_cols]
        active = active_rows(lengths, n)
        scores = np.empty((n, b, L), np.float32)
        score = E[:, 0] + self.start
        scores[0] = score
        new = np.empty_like(score)
        cand = np.empty((b, len(b_cols), L), np.float32)  # reused: no fresh (B, 22, L) array per step
        new_b = np.empty((b, len(b_cols)), np.float32)
        for t in range(1, n):
            a = int(active[t])
            s, nw = score[:a], new[:a]
            np.add(s[:, None, :], trans_b, out=cand[:a])
            np.max(cand[:a], axis=2, out=new_b[:a])
            nw[:, b_cols] = new_b[:a]
            nw[:, i_cols] = np.maximum(s[:, i_cols] + ti, s[:, i_from_b] + tb)
            nw += E[:a, t]
            s[:] = nw
            scores[t, :a] = s
        path = np.zeros((b, n), np.int64)
        cur = (score + self.end).argmax(axis=1)  # each row's score stopped at its own last token
        path[np.arange(b), np.asarray(lengths) - 1] = cur
        for t in range(n - 1, 0, -1):
            a = int(active[t])
            cur[:a] = (scores[t - 1, :a] + trans[:, cur[:a]].T).argmax(axis=1)
            path[:a, t - 1] = cur[:a]
        return path

    def tag_ids(self, seqs: list[list[int]]) -> list[list[int]]:
        """Label index sequences for token-id sequences (any lengths, none empty)."""
        if len(seqs) == 1 and self.native is not None:  # one address (parse()): no sorting or padding
            return [self.native.tag(np.array(seqs, np.int64), np.array([len(seqs[0])], np.int64))[0].tolist()]
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))  # longest first (see Member._bilstm)
        out: list[list[int]] = [[] for _ in seqs]
        # one set of scratch buffers for every chunk (the first chunk holds the longest rows)
        work = self.native._work(min(len(seqs), _BATCH) * len(seqs[order[0]])) if self.native and seqs else None
        for s in range(0, len(order), _BATCH):
            chunk = order[s:s + _BATCH]
            lengths = np.array([len(seqs[i]) for i in chunk], np.int64)
            n = int(lengths.max())
            ids = np.zeros((len(chunk), n), np.int64)
            for r, i in enumerate(chunk):
                ids[r, :lengths[r]] = seqs[i]
            if self.native is not None:
                paths = self.native.tag(ids, lengths, work).tolist()
            else:
                paths = self.viterbi_numpy(self.emissions(ids, lengths), lengths).tolist()
            for r, i in enumerate(chunk):
                out[i] = paths[r][:lengths[r]]
        return out
