"""Seeded region growing, shared by the demo's area partition and the grid division.

Both split a set of adjacent units (faces, building cells) into ``k`` balanced, connected regions:
k-means++ seeds on weighted unit centres, then the least-filled region repeatedly takes the free
adjacent unit nearest its seed. What "filled" and "nearest" mean is the caller's (``take``/``load``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np


def kmeans_seeds(xy: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 25) -> np.ndarray:
    """Indices of ``k`` distinct units near the centres of a ``w``-weighted k-means of ``xy``."""
    n = len(xy)
    w = np.asarray(w, dtype="f8")
    p = w / w.sum()
    centers = [xy[rng.choice(n, p=p)]]
    for _ in range(1, k):  # k-means++
        d = np.min(((xy[:, None, :] - np.asarray(centers)[None]) ** 2).sum(-1), axis=1) * w
        centers.append(xy[rng.choice(n, p=d / d.sum())] if d.sum() > 0 else xy[rng.choice(n)])
    c = np.asarray(centers, dtype="f8")
    for _ in range(iterations):
        lab = ((xy[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            sel = lab == j
            if sel.any():
                c[j] = (xy[sel] * w[sel, None]).sum(0) / w[sel].sum()
    seeds, taken = [], np.zeros(n, dtype=bool)
    for j in range(k):
        d = ((xy - c[j]) ** 2).sum(-1)
        d[taken] = np.inf
        s = int(d.argmin())
        seeds.append(s)
        taken[s] = True
    return np.asarray(seeds)


def grow_regions(seeds, heaps: list[list[tuple[float, int]]], label: np.ndarray,
                 take: Callable[[int, int], None], load: Callable[[int], float]) -> None:
    """Grow one region per seed until no region can grow: the region with the least ``load(r)`` takes
    the nearest still-free unit from its heap. ``take(r, f)`` labels ``f`` and pushes f's free
    neighbours onto ``heaps[r]``; units no region reaches keep label -1."""
    for r, s in enumerate(seeds):
        take(r, int(s))
    active = [(load(r), r) for r in range(len(heaps))]
    heapq.heapify(active)
    while active:
        _, r = heapq.heappop(active)
        while heaps[r] and label[heaps[r][0][1]] >= 0:
            heapq.heappop(heaps[r])
        if not heaps[r]:
            continue
        _, f = heapq.heappop(heaps[r])
        take(r, f)
        heapq.heappush(active, (load(r), r))
