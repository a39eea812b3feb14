"""Plain-numpy versions of the parser's innermost loops, used when the compiled library of
:mod:`.native` is not available (no C compiler) and by the CRF-only tagger. Same results as the
compiled code; only slower. (These were numba kernels: numba and LLVM cost ~150 MB resident and
~0.7 s at start-up, more than they saved.)
"""

from __future__ import annotations

import numpy as np


def sum_rows(out: np.ndarray, table: np.ndarray, idx: np.ndarray) -> None:
    """``out[r] += table[idx[r, 0]] + table[idx[r, 1]] + ...`` for every row r (idx: (R, K)), in that order."""
    for k in range(idx.shape[1]):
        out += table[idx[:, k]]


def add_gathered(out, t0, i0, t1, i1, t2, i2, t3, i3) -> None:
    """``out[r] += t0[i0[r]] + t1[i1[r]] + t2[i2[r]] + t3[i3[r]]`` (a first-layer LSTM step's inputs)."""
    s = t0[i0]
    s += t1[i1]
    s += t2[i2]
    s += t3[i3]
    out += s
