"""Weight and speed of the address parser on dev.txt: the five figures of issue 14.

1. batch throughput (``parse_batch`` over all of dev, best of ``--repeat``) against the 5,000 addr/s bar;
2. one address through ``parse()`` (ms per address; bar 0.3 ms) — wall time and this process's CPU time;
3. resident memory of a fresh process that imports the parser, loads the model and parses once (bar 150 MB),
   and how much of it the parser itself adds;
4. first load in that fresh process: import + model load + first parse (bar 1 s);
5. the same batch throughput with the compiled kernels switched off (``GRIDSERVER_PARSER_NATIVE=0``, the
   numpy fallback), measured in the same run as the baseline the ratios are printed against.

BLAS / OpenMP are limited to one thread. On a shared machine wall-clock figures move with the load;
the CPU-time figures are this process's own cost. Ends with one JSON line.
Without the labelled corpus (``../shared``) it times the same on ``--generated`` departmental-style
addresses of the generated demo base (``gridserver.address.demo_data``; the speed figures need no labels).
Run: ``.venv/bin/python bench/address_parse.py [--repeat 7] [--generated 5000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# One core, honestly: BLAS / OpenMP must not fan the LSTM matmuls out over other cores. Set before
# numpy is imported (by the parser), which is when OpenBLAS reads them.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

REQUIRED = 5_000  # addresses per second, one core, batch mode
SINGLE_MS, RSS_MB, LOAD_S = 0.3, 150, 1.0

# Run in a fresh interpreter: import, load, parse one address; report RSS before/after and the times.
_FRESH = r"""
import json, time
t0 = time.perf_counter()
def rss():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) for l in fh if l.startswith("VmRSS")) / 1024
import numpy
base = rss()
from gridserver.address.parser import load_model, parse
t1 = time.perf_counter()
m = load_model()
parse("广东省广州市越秀区中山四路13号")
t2 = time.perf_counter()
print(json.dumps({"first_load_s": t2 - t0, "first_load_cpu_s": time.process_time(), "model_load_s": t2 - t1,
                  "rss_mb": rss(), "rss_numpy_mb": base,
                  "native": m.neural is not None and m.neural.native is not None}))
"""


def fresh_process(native: bool = True) -> dict:
    env = dict(os.environ, GRIDSERVER_PARSER_NATIVE="1" if native else "0")
    out = subprocess.run([sys.executable, "-c", _FRESH], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def batch_rate(texts, repeat: int, native: bool) -> tuple[float, float]:
    """(wall, CPU) addresses per second of parse_batch over ``texts``, best of ``repeat``, in a fresh
    model (the native switch is read when a model is built)."""
    os.environ["GRIDSERVER_PARSER_NATIVE"] = "1" if native else "0"
    from gridserver.address.parser import MODEL_PATH, load_model, parse_batch
    from gridserver.address.parser import native as nat

    nat._lib.clear()
    model = load_model(MODEL_PATH)
    parse_batch(texts[:200], model)  # warm-up
    best = best_cpu = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        parse_batch(texts, model)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    os.environ["GRIDSERVER_PARSER_NATIVE"] = "1"
    nat._lib.clear()
    return len(texts) / best, len(texts) / best_cpu


def generated_texts(n: int) -> list[str]:
    """``n`` addresses as the departments write them, over the generated demo base (no ../shared needed)."""
    from gridserver.address.demo_data import DEPARTMENTS, department_rows, generate_base

    base = generate_base()
    per = -(-n // len(DEPARTMENTS))
    texts = [r["address"] for src, spec in DEPARTMENTS.items()
             for r in department_rows(base, src, per, 1, style=spec["style"], levels=spec["levels"])]
    return texts[:n]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--generated", type=int, default=5000,
                    help="addresses to generate when dev.txt (../shared) is absent")
    args = ap.parse_args()

    from gridserver.address.parser import load_model, parse
    from gridserver.address.parser.corpus import corpus_dir, read_corpus

    dev = corpus_dir() / "dev.txt"
    if dev.exists():
        texts, source = [e.text for e in read_corpus(dev)], "dev"
    else:
        texts, source = generated_texts(args.generated), "generated"
        print(f"{dev} not found: {len(texts)} generated departmental-style addresses instead")

    fresh = [fresh_process() for _ in range(3)]
    first = min(f["first_load_s"] for f in fresh)
    first_cpu = min(f["first_load_cpu_s"] for f in fresh)  # includes the interpreter's own start-up
    rss = max(f["rss_mb"] for f in fresh)
    rss_base = fresh[0]["rss_numpy_mb"]
    fresh_np = fresh_process(native=False)

    rate, rate_cpu = batch_rate(texts, args.repeat, native=True)
    np_rate, np_rate_cpu = batch_rate(texts, max(1, args.repeat // 3), native=False)

    model = load_model()
    sample = texts[:1000]
    for t in sample[:50]:
        parse(t, model)
    single = single_cpu = float("inf")
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        for t in sample:
            parse(t, model)
        single = min(single, (time.perf_counter() - t0) / len(sample) * 1e3)
        single_cpu = min(single_cpu, (time.process_time() - c0) / len(sample) * 1e3)

    ok = lambda b: "OK" if b else "MISSED"  # noqa: E731
    print(f"compiled kernels    {'yes' if fresh[0]['native'] else 'NO (numpy fallback)'}")
    print(f"parse_batch ({source[:3]})   {rate:8.0f} addr/s wall, {rate_cpu:.0f} addr/s CPU  ({len(texts)} addresses, "
          f"best of {args.repeat})  bar {REQUIRED}: {ok(rate_cpu >= REQUIRED)} (CPU)")
    print(f"  numpy fallback    {np_rate:8.0f} addr/s wall, {np_rate_cpu:.0f} addr/s CPU  -> compiled / numpy = "
          f"{rate_cpu / np_rate_cpu:.2f}x (CPU)")
    print(f"parse() one address {single:8.3f} ms wall, {single_cpu:.3f} ms CPU  ({len(sample)} addresses, best of 3)"
          f"  bar {SINGLE_MS} ms: {ok(single_cpu < SINGLE_MS)} (CPU)")
    print(f"  batch / one-by-one {rate_cpu * single_cpu / 1e3:7.1f}x (CPU)")
    print(f"resident (fresh)    {rss:8.1f} MB  (numpy alone {rss_base:.1f} MB; parser adds {rss - rss_base:.1f} MB)"
          f"  bar {RSS_MB} MB: {ok(rss < RSS_MB)};  numpy fallback {fresh_np['rss_mb']:.1f} MB")
    print(f"first load (fresh)  {first:8.3f} s wall, {first_cpu:.3f} s CPU  (import + model + first parse; model "
          f"alone {min(f['model_load_s'] for f in fresh):.3f} s wall)  bar {LOAD_S} s: {ok(first_cpu < LOAD_S)} (CPU)")
    print(json.dumps({"bench": "address_parse", "corpus": source, "addresses": len(texts), "batch_addr_s": round(rate), "batch_addr_s_cpu": round(rate_cpu),
                      "numpy_batch_addr_s_cpu": round(np_rate_cpu), "single_ms": round(single, 4),
                      "single_ms_cpu": round(single_cpu, 4), "rss_mb": round(rss, 1),
                      "rss_parser_mb": round(rss - rss_base, 1), "first_load_s": round(first, 3),
                      "first_load_cpu_s": round(first_cpu, 3),
                      "native": fresh[0]["native"], "required_addr_s": REQUIRED}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
