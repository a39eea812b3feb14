"""The parser's three innermost loops, compiled with numba: Viterbi decoding and two row-summing
gathers. Each replaces a chain of numpy calls that made a pass over memory per call; here every
token is visited once. The LSTM's own arithmetic stays in numpy (BLAS matmuls and SIMD tanh beat
scalar compiled code there).

Compiled on first use and cached next to this file (``cache=True``): the first parse after an
install takes a few seconds longer.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, fastmath=True)
def viterbi(E, lengths, trans_t, trans, start, end, b_cols, i_cols, i_from_b):  # pragma: no cover - compiled
    """Best BIO-constrained label paths (B, n) for emissions E (B, n, L); row r uses ``lengths[r]`` tokens.

    O and B-X may follow any label (a max over all L, read along ``trans_t[j]`` = column j of
    ``trans``), I-X only B-X or I-X (a max of two). The forward pass keeps only scores; the
    backward pass recomputes the one argmax it needs per step (first maximum, like numpy's argmax).
    """
    b, n, L = E.shape
    path = np.zeros((b, n), np.int64)
    scores = np.empty((n, L), np.float32)
    for r in range(b):
        m = lengths[r]
        for j in range(L):
            scores[0, j] = start[j] + E[r, 0, j]
        for t in range(1, m):
            s = scores[t - 1]
            for jj in range(b_cols.shape[0]):
                j = b_cols[jj]
                row = trans_t[j]
                best = s[0] + row[0]
                for i in range(1, L):
                    best = max(best, s[i] + row[i])
                scores[t, j] = best + E[r, t, j]
            for jj in range(i_cols.shape[0]):
                j = i_cols[jj]
                k = i_from_b[jj]
                scores[t, j] = max(s[j] + trans[j, j], s[k] + trans[k, j]) + E[r, t, j]
        cur = 0  # no infinities anywhere (fastmath assumes none): start from label 0
        best = scores[m - 1, 0] + end[0]
        for j in range(1, L):
            v = scores[m - 1, j] + end[j]
            if v > best:
                best = v
                cur = j
        path[r, m - 1] = cur
        for t in range(m - 1, 0, -1):
            s = scores[t - 1]
            arg = 0
            best = s[0] + trans[0, cur]
            for i in range(1, L):
                v = s[i] + trans[i, cur]
                if v > best:
                    best = v
                    arg = i
            cur = arg
            path[r, t - 1] = cur
    return path


@njit(cache=True, nogil=True)
def sum_rows(out, table, idx):  # pragma: no cover - compiled
    """``out[r] += table[idx[r, 0]] + table[idx[r, 1]] + ...`` for every row r (idx: (R, K))."""
    for r in range(out.shape[0]):
        for k in range(idx.shape[1]):
            row = table[idx[r, k]]
            for j in range(out.shape[1]):
                out[r, j] += row[j]


@njit(cache=True, nogil=True)
def add_gathered(out, t0, i0, t1, i1, t2, i2, t3, i3):  # pragma: no cover - compiled
    """``out[r] += t0[i0[r]] + t1[i1[r]] + t2[i2[r]] + t3[i3[r]]`` (a first-layer LSTM step's inputs)."""
    for r in range(out.shape[0]):
        a, b, c, d = t0[i0[r]], t1[i1[r]], t2[i2[r]], t3[i3[r]]
        for j in range(out.shape[1]):
            out[r, j] += a[j] + b[j] + c[j] + d[j]


def warm_up() -> None:
    """Compile (or load from the cache) every kernel once, on tiny inputs."""
    L = 3
    trans = np.zeros((L, L), np.float32)
    viterbi(np.zeros((1, 2, L), np.float32), np.array([2]), trans, trans, np.zeros(L, np.float32),
            np.zeros(L, np.float32), np.array([0, 1]), np.array([2]), np.array([1]))
    out = np.zeros((1, 2), np.float32)
    sum_rows(out, np.zeros((2, 2), np.float32), np.zeros((1, 1), np.int64))
    z = np.zeros(1, np.int64)
    add_gathered(out, out, z, out, z, out, z, out, z)
