"""Throughput of the address parser on dev.txt: batch API in one process, against the 5,000 addr/s bar.

Baseline measured side by side: the same addresses parsed one call at a time with ``parse()``.
Runs with BLAS / OpenMP limited to one thread. Run: ``.venv/bin/python bench/address_parse.py [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# One core, honestly: BLAS / OpenMP must not fan the LSTM matmuls out over other cores. Set before
# numpy is imported (by the parser), which is when OpenBLAS reads them.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

REQUIRED = 5_000  # addresses per second, one core, batch mode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--model", default=None, help="model file (default: the committed one)")
    args = ap.parse_args()

    from gridserver.address.parser import load_model, parse, parse_batch
    from gridserver.address.parser.corpus import corpus_dir, read_corpus

    dev = corpus_dir() / "dev.txt"
    if not dev.exists():
        print(f"skip: {dev} not found")
        return 0
    texts = [e.text for e in read_corpus(dev)]
    t0 = time.perf_counter()
    model = load_model(args.model)
    load_s = time.perf_counter() - t0
    parse_batch(texts[:200], model)  # warm-up

    best = best_cpu = float("inf")
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        parse_batch(texts, model)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    batch_rate = len(texts) / best

    sample = texts[:500]
    t0 = time.perf_counter()
    for t in sample:
        parse(t, model)
    single_rate = len(sample) / (time.perf_counter() - t0)

    print(f"model load          {load_s * 1000:8.0f} ms")
    print(f"parse_batch (dev)   {batch_rate:8.0f} addr/s  ({len(texts)} addresses, best of {args.repeat})")
    # CPU time of this process: what the parser costs when other work shares the machine
    print(f"parse_batch CPU     {len(texts) / best_cpu:8.0f} addr/s  (process CPU time, same runs)")
    print(f"parse() one by one  {single_rate:8.0f} addr/s  (baseline, {len(sample)} addresses)")
    print(f"batch / baseline    {batch_rate / single_rate:8.1f}x")
    print(f"batch / required    {batch_rate / REQUIRED:8.2f}x  (required {REQUIRED} addr/s) -> "
          f"{'OK' if batch_rate >= REQUIRED else 'BELOW REQUIREMENT'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
