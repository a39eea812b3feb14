"""The neural address tagger at run time: char BiLSTM + CRF, inference in plain numpy.

Inputs per token: its character embedding, the embeddings of the character bigrams to its left and
right, and 3 x 21 gazetteer bits (an entity of type X begins / ends / runs through here).
Optional per member (off in the committed model, they did not help on dev): 6 repetition bits (the
n-grams around a token occur earlier / later in the same address) and direct n-gram label scores. A
bidirectional LSTM reads them, a linear layer gives label scores, and a BIO-constrained Viterbi
picks the best label sequence. Several independently trained members can be stacked in one file;
their emissions and transitions are averaged (the averaged path score is the mean of the members'
path scores, so Viterbi on the averages finds the best path of the ensemble).

Weights are trained with PyTorch (:mod:`.train_nn`), but nothing here needs torch: addresses are
sorted by length and cut into padded batches, the input projection of the characters is a table
lookup, and each LSTM step is one batched matmul per direction.
"""

from __future__ import annotations

import numpy as np

from gridserver.address.parser.features import LABELS, TYPES, Featurizer, Lexicon

N_LEX = 3 * len(TYPES)
N_REP = 6
_NEG = np.float32(-1e4)
_BATCH = 128


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


def lexicon_bits(lexicon: Lexicon, ids: np.ndarray) -> np.ndarray:
    """Gazetteer features (B, n, 63) float32: begin / end / inside bits for each of the 21 types."""
    begin, end, inside = lexicon.match(ids)[:3]
    shifts = np.arange(len(TYPES), dtype=np.int32)
    out = np.empty(ids.shape + (N_LEX,), np.float32)
    for k, m in enumerate((begin, end, inside)):
        out[..., k * len(TYPES):(k + 1) * len(TYPES)] = (m[..., None] >> shifts) & 1
    return out


def lexicon_patterns(lexicon: Lexicon, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct gazetteer bit patterns of a batch: ``(pattern index (B, n), bits (P, 63))``.

    A batch has far fewer distinct patterns than tokens, so the LSTM input projection of the
    gazetteer bits is computed once per pattern and then looked up.
    """
    begin, end, inside = lexicon.match(ids)[:3]
    n_t = len(TYPES)
    key = begin.astype(np.int64) | end.astype(np.int64) << n_t | inside.astype(np.int64) << (2 * n_t)
    uniq, inv = np.unique(key, return_inverse=True)
    bits = ((uniq[:, None] >> np.arange(N_LEX, dtype=np.int64)) & 1).astype(np.float32)
    return inv.reshape(ids.shape), bits


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
    keys = P[:, :-1] * V + P[:, 1:]  # (B, n+1): key i is the bigram (token i-1, token i)
    if not len(bigram_keys):
        z = np.zeros((b, n), np.int64)
        return z, z
    pos = np.searchsorted(bigram_keys, keys)
    pos[pos == len(bigram_keys)] = 0
    idx = np.where(bigram_keys[pos] == keys, pos + 1, 0)
    return idx[:, :n], idx[:, 1:]


def trigram_ids(ids: np.ndarray, trigram_keys: np.ndarray, V: int) -> np.ndarray:
    """Indices (B, n) of the trigram (prev, cur, next) around each token in ``trigram_keys``; 0 = unknown."""
    b, n = ids.shape
    P = np.zeros((b, n + 2), np.int64)
    P[:, 1:n + 1] = ids
    keys = (P[:, :n] * V + P[:, 1:n + 1]) * V + P[:, 2:]
    if not len(trigram_keys):
        return np.zeros((b, n), np.int64)
    pos = np.searchsorted(trigram_keys, keys)
    pos[pos == len(trigram_keys)] = 0
    return np.where(trigram_keys[pos] == keys, pos + 1, 0)


class Member:
    """One trained BiLSTM-CRF: embeddings, LSTM weights (PyTorch gate order i, f, g, o), output layer."""

    def __init__(self, a: dict[str, np.ndarray]):
        f32 = lambda k: np.ascontiguousarray(a[k], dtype=np.float32)  # noqa: E731
        self.emb_c, self.emb_b = f32("emb_c"), f32("emb_b")
        self.H = a["w_hh_f"].shape[1]
        dc = self.emb_c.shape[1]
        # Input weights of both directions side by side: (in, 8H).
        W = np.concatenate([f32("w_ih_f"), f32("w_ih_b")], axis=0).T
        bias = np.concatenate([f32("b_ih_f") + f32("b_hh_f"), f32("b_ih_b") + f32("b_hh_b")])
        # sigmoid(x) = 0.5 + 0.5 * tanh(x / 2): halving the i, f, o gate columns up front lets one
        # tanh over all four gates do the work of three sigmoids and a tanh in each step.
        half = np.ones(4 * self.H, np.float32)
        half[:2 * self.H] = half[3 * self.H:] = 0.5
        W = W * np.tile(half, 2)
        bias = bias * np.tile(half, 2)
        # The character part of the input projection is a table lookup (V, 8H); the bias rides along.
        self.proj_c = self.emb_c @ W[:dc] + bias
        db = self.emb_b.shape[1]
        self.W_bi = np.ascontiguousarray(W[dc:dc + 2 * db])  # left bigram, right bigram
        self.W_lex = np.ascontiguousarray(W[dc + 2 * db:dc + 2 * db + N_LEX])  # gazetteer bits
        # repetition bits (members trained without them have no such rows): a (64, 8H) table
        self.proj_rep = None
        if W.shape[0] == dc + 2 * db + N_LEX + N_REP:
            codes = np.arange(1 << N_REP)
            bits = ((codes[:, None] >> np.arange(N_REP)) & 1).astype(np.float32)
            self.proj_rep = bits @ W[dc + 2 * db + N_LEX:]
        self.w_hh_f = (f32("w_hh_f") * half[:, None]).T.copy()
        self.w_hh_b = (f32("w_hh_b") * half[:, None]).T.copy()
        self.out_w, self.out_b = f32("out_w").T.copy(), f32("out_b")
        # direct n-gram label scores (members trained without them have none): a CRF-like sparse
        # part that memorises frequent local patterns next to the LSTM's generalisation
        self.direct = None
        if "d_tri" in a:
            self.direct = (f32("d_bl"), f32("d_br"), f32("d_tri"))
        self.trans, self.start, self.end = f32("trans"), f32("start"), f32("end")

    def emissions(self, ids, bl, br, lex, rep, tri, lengths) -> np.ndarray:
        """Label scores (B, n, L) for a padded batch; positions past ``lengths`` are garbage.

        ``lex`` is ``(pattern index (B, n), pattern bits (P, 63))`` from :func:`lexicon_patterns`,
        ``rep`` the codes of :func:`repeat_codes`.
        """
        b, n = ids.shape
        H = self.H
        m = b * n
        lex_inv, lex_bits = lex
        # time-major (n, B, 8H): each step then reads one contiguous slab
        X = np.concatenate([self.emb_b[bl.T.reshape(m)], self.emb_b[br.T.reshape(m)]], axis=1)
        G = X @ self.W_bi
        G += self.proj_c[ids.T.reshape(m)]
        if self.proj_rep is None:
            G += (lex_bits @ self.W_lex)[lex_inv.T.reshape(m)]
        else:  # one table per distinct (gazetteer pattern, repetition code) pair, then one lookup
            uniq, inv = np.unique(lex_inv.T.reshape(m) << N_REP | rep.T.reshape(m), return_inverse=True)
            G += ((lex_bits @ self.W_lex)[uniq >> N_REP] + self.proj_rep[uniq & ((1 << N_REP) - 1)])[inv]
        G = G.reshape(n, b, 8 * H)
        Gf, Gb = G[:, :, :4 * H], G[:, :, 4 * H:]
        out = np.empty((n, b, 2 * H), np.float32)
        h = np.zeros((b, H), np.float32)
        c = np.zeros((b, H), np.float32)
        for t in range(n):
            h, c = self._step(Gf[t], h, c, self.w_hh_f)
            out[t, :, :H] = h
        h = np.zeros((b, H), np.float32)
        c = np.zeros((b, H), np.float32)
        ragged = bool((lengths != n).any())
        for t in range(n - 1, -1, -1):
            h2, c2 = self._step(Gb[t], h, c, self.w_hh_b)
            if ragged:  # the backward pass of a shorter address starts at its own last token
                live = (lengths > t)[:, None]
                h2 = np.where(live, h2, 0)
                c2 = np.where(live, c2, 0)
            h, c = h2, c2
            out[t, :, H:] = h
        E = out.reshape(m, 2 * H) @ self.out_w + self.out_b
        if self.direct is not None:
            d_bl, d_br, d_tri = self.direct
            E += d_bl[bl.T.reshape(m)] + d_br[br.T.reshape(m)] + d_tri[tri.T.reshape(m)]
        return E.reshape(n, b, -1).transpose(1, 0, 2)

    @staticmethod
    def _step(g, h, c, w_hh):
        """One LSTM step on pre-halved gates (see ``__init__``): returns the new ``(h, c)``."""
        z = h @ w_hh
        z += g
        np.tanh(z, out=z)
        H = h.shape[1]
        u = z * 0.5
        u += 0.5  # i, f, o = sigmoid of the original pre-activations
        c = u[:, H:2 * H] * c + u[:, :H] * z[:, 2 * H:3 * H]
        return u[:, 3 * H:] * np.tanh(c), c


class NeuralTagger:
    """An ensemble of :class:`Member` taggers sharing the vocabulary, bigrams and gazetteer."""

    def __init__(self, V: int, bigram_keys: np.ndarray, lexicon: Lexicon, members: list[dict],
                 trigram_keys: np.ndarray | None = None):
        self.V = V
        self.bigram_keys = np.asarray(bigram_keys, np.int64)
        self.trigram_keys = np.asarray(trigram_keys if trigram_keys is not None else [], np.int64)
        self.lexicon = lexicon
        self.members = [Member(m) for m in members]
        allowed, start = bio_masks()
        k = len(self.members)
        self.trans = np.where(allowed, sum(m.trans for m in self.members) / k, _NEG).astype(np.float32)
        self.start = np.where(start, sum(m.start for m in self.members) / k, _NEG).astype(np.float32)
        self.end = (sum(m.end for m in self.members) / k).astype(np.float32)
        self._b_cols = np.array([i for i, lab in enumerate(LABELS) if not lab.startswith("I-")])
        self._i_cols = np.array([i for i, lab in enumerate(LABELS) if lab.startswith("I-")])
        self._i_from_b = self._i_cols - 1  # B-X sits right before I-X in LABELS

    def inputs(self, ids: np.ndarray):
        bl, br = bigram_ids(ids, self.bigram_keys, self.V)
        # repetition codes only if some member reads them
        rep = repeat_codes(ids, self.V) if any(m.proj_rep is not None for m in self.members) else None
        return bl, br, lexicon_patterns(self.lexicon, ids), rep, trigram_ids(ids, self.trigram_keys, self.V)

    def emissions(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        bl, br, lex, rep, tri = self.inputs(ids)
        E = self.members[0].emissions(ids, bl, br, lex, rep, tri, lengths)
        for m in self.members[1:]:
            E += m.emissions(ids, bl, br, lex, rep, tri, lengths)
        if len(self.members) > 1:
            E /= len(self.members)
        return E

    def viterbi(self, E: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Best label paths (B, n) of a padded batch (entries past each length are meaningless).

        Uses the BIO structure: O and B-X may follow anything (a max over all labels), I-X only
        B-X or I-X (a max of two). The forward pass keeps the scores per step; the backward pass
        recomputes the one argmax it needs, which is cheaper than back-pointers for every label.
        Scores of an address stop changing after its last token, so its path ends there.
        """
        b, n, L = E.shape
        b_cols, i_cols, i_from_b = self._b_cols, self._i_cols, self._i_from_b
        trans = self.trans
        trans_b = trans[:, b_cols]
        ti = trans[i_cols, i_cols]
        tb = trans[i_from_b, i_cols]
        scores = np.empty((n, b, L), np.float32)
        score = E[:, 0] + self.start
        scores[0] = score
        ragged = bool((lengths != n).any())
        for t in range(1, n):
            new = np.empty_like(score)
            new[:, b_cols] = (score[:, :, None] + trans_b).max(axis=1)
            new[:, i_cols] = np.maximum(score[:, i_cols] + ti, score[:, i_from_b] + tb)
            new += E[:, t]
            if ragged:
                new = np.where((lengths > t)[:, None], new, score)
            score = new
            scores[t] = score
        path = np.empty((b, n), np.int64)
        final = (scores[n - 1] + self.end).argmax(axis=1)
        path[:, n - 1] = final
        cur = final
        for t in range(n - 1, 0, -1):
            cur = (scores[t - 1] + trans[:, cur].T).argmax(axis=1)
            if ragged:  # still past this address's end: its last label is the final argmax
                cur = np.where(lengths > t, cur, final)
            path[:, t - 1] = cur
        return path

    def tag_ids(self, seqs: list[list[int]]) -> list[list[int]]:
        """Label index sequences for token-id sequences (any lengths, none empty)."""
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out: list[list[int]] = [[] for _ in seqs]
        for s in range(0, len(order), _BATCH):
            chunk = order[s:s + _BATCH]
            lengths = np.array([len(seqs[i]) for i in chunk], np.int64)
            n = int(lengths.max())
            ids = np.zeros((len(chunk), n), np.int64)
            for r, i in enumerate(chunk):
                ids[r, :lengths[r]] = seqs[i]
            paths = self.viterbi(self.emissions(ids, lengths), lengths).tolist()
            for r, i in enumerate(chunk):
                out[i] = paths[r][:lengths[r]]
        return out
