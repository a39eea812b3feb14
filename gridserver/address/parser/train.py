"""Training the address tagger on ``train.txt`` and scoring it on ``dev.txt``.

:func:`train` builds the neural BiLSTM-CRF (PyTorch, :mod:`.train_nn`); :func:`train_crf` the
older crfsuite CRF (L-BFGS). Both share the tokenisation, vocabulary and gazetteer below.

The gazetteer features use entities seen in training. To keep the tagger from trusting them more
than it should (every training entity is trivially "known" on its own sentence), the training
features of fold k use a gazetteer built from the other folds only (10-fold jackknife); the saved
model carries the gazetteer of the whole training set. With ``gazetteer`` set, China's administrative
divisions (:mod:`.gazetteer`, from the jionlp package's table) are added to every one of those
gazetteers: they are outside knowledge, the same in training and at run time. The dev set is never
trained on: it is scored, and picks the best epoch (or weight average) of each neural member.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gridserver.address.parser.corpus import Example, read_corpus
from gridserver.address.parser.features import TYPES, Featurizer, Lexicon, tokenize
from gridserver.address.parser.model import AddressModel, LinearCRF

FOLDS = 10
# Tuned on dev: c1 0.1/c2 0.01 → 88.20, c1 0.02/c2 0.05 → 88.24, 200 iterations → no gain. A stacked
# second pass that saw jackknifed first-pass labels was tried and scored 88.21: not worth its cost.
DEFAULT_PARAMS = {"c1": 0.05, "c2": 0.02, "max_iterations": 120}
_TYPE_INDEX = {t: i for i, t in enumerate(TYPES)}


@dataclass
class Tokenised:
    tokens: list[str]
    labels: list[str]
    entities: list[tuple[int, int, str]]  # token ranges (i, j) exclusive, type
    misaligned: int


def align(example: Example) -> Tokenised:
    """Model tokens of an example with BIO labels derived from its character spans.

    A gold span that does not fall on token boundaries (a digit run split across two entities in the
    corpus) is counted in ``misaligned`` and its tokens get the label of the span they start in.
    """
    toks, starts, ends = tokenize(example.text)
    labels = ["O"] * len(toks)
    entities, bad = [], 0
    start_at = {s: i for i, s in enumerate(starts)}
    end_at = {e: i for i, e in enumerate(ends)}
    for label, s, e in example.spans:
        i, j = start_at.get(s), end_at.get(e)
        if i is None or j is None:
            bad += 1
            # keep whatever tokens start inside the span
            idx = [k for k, st in enumerate(starts) if s <= st < e]
            if not idx:
                continue
            i, j = idx[0], idx[-1]
        if labels[i] != "O" and labels[i].startswith("I-"):
            bad += 1
            continue
        labels[i] = "B-" + label
        for k in range(i + 1, j + 1):
            labels[k] = "I-" + label
        entities.append((i, j + 1, label))
    return Tokenised(toks, labels, entities, bad)


def _lexicon(items: Sequence[Tokenised], encode, extra: dict | None = None) -> Lexicon:
    """Gazetteer of the (aligned) entities of ``items``, except otherinfo, plus the ``extra`` entries
    (:meth:`.Lexicon.accumulate` of :func:`division_entries`: known in every fold, so not jackknifed)."""
    entries = []
    for it in items:
        ids = encode(it.tokens)
        for i, j, label in it.entities:
            if label != "otherinfo":
                entries.append((ids[i:j], _TYPE_INDEX[label]))
    return Lexicon.build(entries, extra)


def division_entries(encode, levels=True) -> list[tuple[list[int], int]]:
    """China's administrative divisions (:mod:`.gazetteer`) as gazetteer entries over the tagger's
    vocabulary; a name with a character the vocabulary lacks is left out (it could never match).
    ``levels``: True for all, or a list of the levels to use (e.g. without ``community``)."""
    from gridserver.address.parser.gazetteer import LEVELS, admin_divisions

    out = []
    for name, typ in admin_divisions(LEVELS if levels is True else tuple(levels)):
        ids = encode(tokenize(name)[0])
        if 1 not in ids:  # UNK
            out.append((ids, _TYPE_INDEX[typ]))
    return out


def _keys_by_example(featurizer: Featurizer, items: Sequence[Tokenised]) -> list[np.ndarray]:
    """Feature keys for each example, computed in same-length batches."""
    out: list[np.ndarray | None] = [None] * len(items)
    groups: dict[int, list[int]] = defaultdict(list)
    for k, it in enumerate(items):
        groups[len(it.tokens)].append(k)
    for n, members in groups.items():
        if n == 0:
            for k in members:
                out[k] = np.zeros((0, len(featurizer.template_names)), np.int64)
            continue
        ids = np.array([featurizer.encode(items[k].tokens) for k in members], np.int64)
        keys = featurizer.keys(ids)
        for row, k in enumerate(members):
            out[k] = keys[row]
    return out  # type: ignore[return-value]


def _attributes(keys: np.ndarray) -> list[list[str]]:
    return [[f"{t}:{k}" for t, k in enumerate(row) if k != -1] for row in keys.tolist()]


@dataclass
class TrainReport:
    n_train: int
    n_dev: int
    misaligned: int
    n_features: int
    seconds: float
    dev: dict = field(default_factory=dict)
    model_bytes: int = 0
    params: dict = field(default_factory=dict)


def entity_scores(gold: Sequence[set], pred: Sequence[set]) -> dict:
    """Micro P/R/F1 (exact span + type) over all entities (``"all"``) and per label."""
    tp, fp, fn = Counter(), Counter(), Counter()
    for g, p in zip(gold, pred):
        for s in p & g:
            tp[s[0]] += 1
        for s in p - g:
            fp[s[0]] += 1
        for s in g - p:
            fn[s[0]] += 1

    def prf(t, f_p, f_n):
        p = t / (t + f_p) if t + f_p else 0.0
        r = t / (t + f_n) if t + f_n else 0.0
        return {"p": p, "r": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "n": t + f_n}

    out = {"all": prf(sum(tp.values()), sum(fp.values()), sum(fn.values()))}
    for lab in sorted(set(tp) | set(fp) | set(fn)):
        out[lab] = prf(tp[lab], fp[lab], fn[lab])
    return out


def score(model: AddressModel, examples: Sequence[Example]) -> dict:
    """Entity-level P/R/F1 (exact span + type) overall and per type, like the shared scorer."""
    pred = [set(spans) for spans in model.tag_batch([e.text for e in examples])]
    gold = [set(e.spans) for e in examples]
    per_type = entity_scores(gold, pred)
    overall = per_type.pop("all")
    exact = sum(p == g for p, g in zip(pred, gold))
    return {**overall, "exact": exact / max(len(examples), 1), "per_type": per_type}


def _fit(pycrfsuite, data, params: dict, iterations: int, say, label: str, lo: float, hi: float):
    """Train one crfsuite CRF on ``(keys, labels)`` pairs; return its ``Tagger.info()``."""

    class _Trainer(pycrfsuite.Trainer):
        # verbose=True is what makes pycrfsuite call the on_* hooks; they report progress instead
        # of printing crfsuite's log.
        def on_iteration(self, log, info):
            say(label, lo + (hi - lo) * min(info.get("num", 0) / iterations, 1.0))

        def _quiet(self, *args):
            pass

        on_start = on_featgen_progress = on_featgen_end = on_prepared = _quiet
        on_optimization_end = on_end = on_prepare_error = _quiet

    trainer = _Trainer(algorithm="lbfgs", verbose=True)
    trainer.set_params({"c1": params["c1"], "c2": params["c2"], "max_iterations": iterations,
                        "feature.possible_transitions": True})
    for keys, labels in data:
        if len(labels):
            trainer.append(_attributes(keys), labels)
    with tempfile.TemporaryDirectory() as tmp:
        crf_path = Path(tmp) / "address.crfsuite"
        trainer.train(str(crf_path))
        tagger = pycrfsuite.Tagger()
        tagger.open(str(crf_path))
        info = tagger.info()
        tagger.close()
    return info


#: what ``params["dev"]`` does with dev.txt: "pick" the epoch on it (and report its F1), only "score"
#: it once at the end (the epoch is then the last weight average, as in cross-validation), or "train"
#: on two thirds of it too (the last weight average is kept, and the third left out, :func:`dev_split`,
#: is scored: the model's own unseen test)
DEV_USES = ("pick", "score", "train")


def dev_split(dev_ex: Sequence) -> tuple[list, list]:
    """dev's examples as ``(trained on, left out)`` for ``dev: "train"``: every third address (the
    first, fourth, ...) is left out."""
    return [e for i, e in enumerate(dev_ex) if i % 3], [e for i, e in enumerate(dev_ex) if i % 3 == 0]


def _read_training_data(corpus_dir: Path, say, dev_use: str = "pick") -> tuple[list, list, list, Featurizer]:
    """train.txt and (when present) dev.txt examples, the aligned training items, and a featurizer
    over the training vocabulary with an empty lexicon (each trainer adds its own k-fold lexicons).
    With ``dev_use == "train"`` two thirds of dev join the training items and the last third is the dev
    set returned (:func:`dev_split`)."""
    if dev_use not in DEV_USES:
        raise ValueError(f"dev use {dev_use!r}: expected one of {', '.join(DEV_USES)}")
    train_ex = read_corpus(corpus_dir / "train.txt")
    dev_path = corpus_dir / "dev.txt"
    dev_ex = read_corpus(dev_path) if dev_path.exists() else []
    if dev_use == "train":
        extra, dev_ex = dev_split(dev_ex)
        train_ex = train_ex + extra
    say("读取语料 reading corpus", 0.01)
    items = [align(e) for e in train_ex]
    base = Featurizer(Featurizer.build_vocab(it.tokens for it in items), Lexicon.build([]))
    return train_ex, dev_ex, items, base


def _finish(model: AddressModel, items, dev_ex, n_features: int, params: dict, out: Path | None,
            say, t0: float) -> TrainReport:
    """The common end of both trainers: score dev (when present), save the model, report."""
    report = TrainReport(n_train=len(items), n_dev=len(dev_ex), misaligned=sum(it.misaligned for it in items),
                         n_features=n_features, seconds=0.0, params=params)
    say("评估 scoring dev", 0.98)
    if dev_ex:
        report.dev = score(model, dev_ex)
    if out is not None:
        report.model_bytes = model.save(out)
    report.seconds = time.perf_counter() - t0
    say("完成 done", 1.0)
    return report


def train(corpus_dir: Path, out: Path | None, params: dict | None = None,
          progress: Callable[[str, float], None] | None = None,
          image: bytes | None = None) -> tuple[AddressModel, TrainReport]:
    """Train the address tagger on ``corpus_dir/train.txt``, pick epochs on ``dev.txt``, save to ``out``.

    By default this is the neural BiLSTM-CRF (needs PyTorch, see :mod:`.train_nn`; its
    hyper-parameters are :data:`.train_nn.DEFAULT_NN`, overridable through ``params``). With
    ``params["tagger"] == "crf"`` it is the older crfsuite CRF (:func:`train_crf`); the CRF options
    ``c1``/``c2``/``max_iterations`` only apply to that one. ``progress(stage, fraction)`` is called
    as training advances. With ``params["transfer"]`` = n > 0 the tagger is distilled from a fine-tuned
    transformer teacher over n new addresses (:func:`.teacher.distil`; ``image`` replaces the teacher's
    downloaded model image, for tests).
    """
    params = dict(params or {})
    if params.pop("tagger", "bilstm-crf") == "crf":
        return train_crf(corpus_dir, out, params, progress)
    if params.get("transfer"):
        from gridserver.address.parser.teacher import distil

        return distil(corpus_dir, out, params, progress, image)
    return train_neural(corpus_dir, out, params, progress)


def train_neural(corpus_dir: Path, out: Path | None, params: dict | None = None,
                 progress: Callable[[str, float], None] | None = None) -> tuple[AddressModel, TrainReport]:
    """Train the BiLSTM-CRF members (one per seed) and save them as one ensemble model.

    With ``crf_weight`` > 0 a crfsuite CRF (options ``c1``/``c2``/``max_iterations``) is trained
    first and its scores, times that weight, are added to the members' (see :class:`.NeuralTagger`).
    What dev.txt is for is ``params["dev"]`` (:data:`DEV_USES`; default "pick", as the shipped model):
    with "pick" each member keeps the weights of its epoch (or running weight average) with the best dev
    F1 of the whole model; with "score", or without a dev file, the last average is kept and dev is only
    scored; with "train" two thirds of dev's addresses are training data too, the last average is kept
    and the third left out (:func:`dev_split`) is scored.

    Reproducibility: seeds, batch order and character dropout are fixed, crfsuite is deterministic
    and torch runs with 2 threads. Small runs give identical bytes (tests/address/test_parser.py
    checks it), but a full run is not guaranteed bit-exact: torch's multi-threaded float sums are not
    order-stable (two full runs of an earlier single-layer configuration picked the same epoch and
    the same dev F1 while their weights differed by up to 5e-3). Expect the same model up to such
    rounding, and dev F1 within ~0.1: the default configuration gave 90.03 both from the experiment
    script and from ``gridserver address train`` (447 s on 2 cores).
    """
    from gridserver.address.parser import train_nn as T
    from gridserver.address.parser.features import LABELS
    from gridserver.address.parser.neural import NeuralTagger

    T.require_torch()
    p = {**T.DEFAULT_NN, **DEFAULT_PARAMS, **(params or {})}
    say = progress or (lambda stage, frac: None)
    t0 = time.perf_counter()
    train_ex, dev_ex, items, base = _read_training_data(Path(corpus_dir), say, p["dev"])
    P = None
    if p.get("pretrained"):
        # pre-trained character vectors (:mod:`.pretrained`): the vocabulary grows by the Chinese
        # characters they know and training lacks, so those are no longer unknown at run time
        from gridserver.address.parser import pretrained as PT

        vectors = PT.lac_char_vectors()
        p["v_trained"] = base.V
        extra_chars = PT.extra_chars(base.vocab_list, vectors, p.get("pretrained_extra"))
        base = Featurizer(base.vocab_list + extra_chars, Lexicon.build([]))
        P = PT.char_matrix(base.vocab_list, vectors)
    extra = Lexicon.accumulate(division_entries(base.encode, p["gazetteer"])) if p.get("gazetteer") else None
    crf = fit_crf(items, base.vocab_list, p, say, 0.01, 0.3, extra) if p.get("crf_weight") else None
    start = 0.3 if crf is not None else 0.01
    vocab = base.vocab_list
    encode, V = base.encode, base.V
    seqs = [encode(it.tokens) for it in items]
    label_index = {lab: i for i, lab in enumerate(LABELS)}
    labels = [[label_index[lab] for lab in it.labels] for it in items]
    bigram_keys = T.bigram_vocab(seqs, V, p["min_bigram"])
    trigram_keys = T.trigram_vocab(seqs, V, p["min_bigram"]) if p.get("direct") else np.zeros(0, np.int64)
    dictionary = T.dictionary_lexicon(encode) if p.get("dict") else None
    enc: list = [None] * len(items)
    for fold in range(FOLDS):
        lex = _lexicon([it for k, it in enumerate(items) if k % FOLDS != fold], encode, extra)
        idx = [k for k in range(len(items)) if k % FOLDS == fold and seqs[k]]
        for k, e in zip(idx, T.encode([seqs[k] for k in idx], [labels[k] for k in idx], lex, bigram_keys, V,
                                      trigram_keys, dictionary)):
            enc[k] = e
        say("特征 features", start + 0.04 * (fold + 1) / FOLDS)
    enc = [e for e in enc if e is not None]
    full_lex = _lexicon(items, encode, extra)
    featurizer = Featurizer(vocab, full_lex)
    meta = {"params": p, "trained_on": "train.txt + 2/3 of dev.txt" if p["dev"] == "train" else "train.txt",
            "n_train": len(items)}

    def model_of(members: list[dict]) -> AddressModel:
        tagger = NeuralTagger(V, bigram_keys, full_lex, members, trigram_keys, dictionary, crf,
                              p.get("crf_weight", 0.0), featurizer)
        return AddressModel(featurizer, None, meta, neural=tagger, members=members)

    evaluate = (lambda arrays: score(model_of([arrays]), dev_ex)["f1"]) if dev_ex and p["dev"] == "pick" else None
    members, epochs = [], []
    seeds = list(p["seeds"])
    for k, seed in enumerate(seeds):
        lo = start + 0.04 + (0.94 - start) * k / len(seeds)
        hi = start + 0.04 + (0.94 - start) * (k + 1) / len(seeds)
        arrays, _, best_epoch = T.fit_member(enc, V, len(bigram_keys), p, seed, evaluate, say, lo, hi,
                                             NT=len(trigram_keys), P=P)
        # stored as float16: round now so the dev score below is the saved model's score
        members.append({name: a.astype(np.float16) for name, a in arrays.items()})
        epochs.append(best_epoch + 1)
    meta["best_epochs"] = epochs
    model = model_of(members)
    n_params = sum(a.size for m in members for a in m.values())
    return model, _finish(model, items, dev_ex, int(n_params), p, out, say, t0)


def train_crf(corpus_dir: Path, out: Path | None, params: dict | None = None,
              progress: Callable[[str, float], None] | None = None) -> tuple[AddressModel, TrainReport]:
    """Train the crfsuite CRF on ``corpus_dir/train.txt``, score on ``dev.txt``, save to ``out`` (if given).

    ``progress(stage, fraction)`` is called as training advances. Deterministic: the same corpus and
    params give the same model bytes.
    """
    params = {**DEFAULT_PARAMS, **(params or {})}
    say = progress or (lambda stage, frac: None)
    t0 = time.perf_counter()
    train_ex, dev_ex, items, base = _read_training_data(Path(corpus_dir), say, params.get("dev", "score"))
    vocab = base.vocab_list
    encode = base.encode

    extra = Lexicon.accumulate(division_entries(encode, params["gazetteer"])) if params.get("gazetteer") else None
    crf = fit_crf(items, vocab, params, say, 0.0, 0.97, extra)
    featurizer = Featurizer(vocab, _lexicon(items, encode, extra))
    model = AddressModel(featurizer, crf, meta={"params": params, "trained_on": "train.txt", "n_train": len(items)})
    return model, _finish(model, items, dev_ex, len(crf.feat_key), params, out, say, t0)


def fit_crf(items: Sequence[Tokenised], vocab: list[str], params: dict, say, lo: float, hi: float,
            extra: dict | None = None) -> LinearCRF:
    """The crfsuite CRF on the aligned train items (gazetteer features from the other folds, plus
    the ``extra`` entries)."""
    import pycrfsuite

    base = Featurizer(vocab, Lexicon.build([]))
    keys1: list[np.ndarray] = [None] * len(items)  # type: ignore[list-item]
    for fold in range(FOLDS):
        others = [it for k, it in enumerate(items) if k % FOLDS != fold]
        feat = Featurizer(vocab, _lexicon(others, base.encode, extra))
        idx = [k for k in range(len(items)) if k % FOLDS == fold]
        for k, keys in zip(idx, _keys_by_example(feat, [items[k] for k in idx])):
            keys1[k] = keys
        say("CRF 特征 features", lo + (hi - lo) * 0.05 * (fold + 1) / FOLDS)
    info = _fit(pycrfsuite, [(keys1[k], items[k].labels) for k in range(len(items))], params,
                params["max_iterations"], say, "CRF 训练 training (L-BFGS)", lo + (hi - lo) * 0.05, hi)
    return LinearCRF.from_crfsuite(len(base.template_names), info)

