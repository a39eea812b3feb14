"""k-fold cross-validation of the address tagger on ``train.txt`` alone (dev is not touched).

Each fold trains the configuration on the other k-1 folds *without* a dev file (so no epoch is picked on
held-out data: the trainer keeps its last weight average) and tags the held-out fold; entity F1 (exact
span and type, as the shared scorer counts) is reported per fold, as mean ± spread, and per label. The
CRF mixing weight is an inference-time choice, so each fold model is also scored at several weights
(``--crf-weights``) at no extra training cost.

Fold files are written to a scratch directory and deleted; nothing derived from the corpus is kept
(unless ``--keep DIR`` asks for the fold models, to score decoding-time variants on them later).
Training is single-threaded (one core, as the shared machine requires). Run::

    nice -n 19 .venv/bin/python -m gridserver.address.parser.cv --folds 3 [--epochs 20] [--out cv.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path


def _blocks(path: Path) -> list[str]:
    return [b for b in path.read_text(encoding="utf-8").split("\n\n") if b.strip()]


def with_crf_weight(model_path: Path, weight: float, tmp: Path) -> Path:
    """A copy of a saved model whose CRF mixing weight is ``weight``."""
    out = tmp / f"w{weight:.2f}.npz"
    with zipfile.ZipFile(model_path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "header.json":
                h = json.loads(data)
                h["crf_weight"] = weight
                data = json.dumps(h, ensure_ascii=False).encode()
            zout.writestr(info.filename, data)
    return out


def run(train_path: Path, folds: int = 3, seed: int = 1, params: dict | None = None,
        crf_weights: tuple[float, ...] = (0.0, 0.2, 0.3, 0.4), only: list[int] | None = None,
        log=print, keep: Path | None = None, train_fraction: float = 1.0) -> dict:
    import torch

    from gridserver.address.parser.corpus import read_corpus
    from gridserver.address.parser.model import AddressModel
    from gridserver.address.parser import parse_batch
    from gridserver.address.parser.train import entity_scores, train

    torch.set_num_threads(1)
    _orig = torch.set_num_threads
    torch.set_num_threads = lambda n: _orig(1)  # the trainer asks for 2: one core only here

    blocks = _blocks(train_path)
    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    fold_of = {i: k % folds for k, i in enumerate(order)}
    results = []
    for f in range(folds):
        if only is not None and f not in only:
            continue
        with tempfile.TemporaryDirectory(prefix="gs_cv_") as d:
            d = Path(d)
            rest = [b for i, b in enumerate(blocks) if fold_of[i] != f]
            if train_fraction < 1.0:  # a learning curve: train on part of the other folds (same held-out fold)
                rest = random.Random(seed + 1).sample(rest, round(len(rest) * train_fraction))
            (d / "train.txt").write_text("\n\n".join(rest) + "\n", encoding="utf-8")
            held = d / "held.txt"
            held.write_text("\n\n".join(b for i, b in enumerate(blocks) if fold_of[i] == f) + "\n", encoding="utf-8")
            t0 = time.time()
            train(d, d / "model.npz", dict(params or {}))
            t_train = time.time() - t0
            if keep is not None:  # the fold model, for scoring decoding-time variants later (scratch only)
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(d / "model.npz", keep / f"fold{f}of{folds}_seed{seed}.npz")
            ex = read_corpus(held)
            gold = [set(e.spans) for e in ex]
            per_w = {}
            for w in crf_weights:
                m = AddressModel.load(with_crf_weight(d / "model.npz", w, d))
                pred = [{(c.label, c.start, c.end) for c in cs} for cs in parse_batch([e.text for e in ex], m)]
                per_w[str(w)] = entity_scores(gold, pred)
            r = {"fold": f, "n_train": len(rest), "n_held": len(ex), "train_s": round(t_train), "scores": per_w}
            results.append(r)
            log(json.dumps({"fold": f, "train_s": round(t_train),
                            "f1": {w: round(s["all"]["f1"] * 100, 2) for w, s in per_w.items()}}))
    summary = {}
    for w in map(str, crf_weights):
        f1s = [r["scores"][w]["all"]["f1"] * 100 for r in results]
        summary[w] = {"mean": round(statistics.mean(f1s), 2),
                      "sd": round(statistics.stdev(f1s), 2) if len(f1s) > 1 else 0.0,
                      "min": round(min(f1s), 2), "max": round(max(f1s), 2), "folds": [round(x, 2) for x in f1s]}
    return {"folds": folds, "seed": seed, "train_fraction": train_fraction, "params": params or {}, "summary": summary,
            "results": results}


def main(argv=None) -> int:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1, help="seed of the fold split")
    ap.add_argument("--only", type=int, nargs="*", help="run only these folds")
    ap.add_argument("--params", default="{}", help="JSON of training parameters (train_nn.DEFAULT_NN keys)")
    ap.add_argument("--crf-weights", default="0,0.2,0.3,0.4")
    ap.add_argument("--out", default=None)
    ap.add_argument("--train-fraction", type=float, default=1.0,
                    help="train each fold on this share of the other folds (a learning curve)")
    ap.add_argument("--keep", default=None, help="copy each fold model into this scratch directory (outside the repo)")
    args = ap.parse_args(argv)
    from gridserver.address.parser.corpus import corpus_dir

    res = run(corpus_dir() / "train.txt", args.folds, args.seed, json.loads(args.params),
              tuple(float(x) for x in args.crf_weights.split(",")), args.only,
              keep=Path(args.keep) if args.keep else None, train_fraction=args.train_fraction)
    text = json.dumps(res, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    print(json.dumps(res["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
