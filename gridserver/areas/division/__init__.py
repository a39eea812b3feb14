"""Automatic grid division (网格自动划分): pure algorithms, no database or HTTP inside.

A community is divided into grids in four steps:

1. **Units** (``units.build_units``): the community is cut by the roads/lanes to respect into road
   blocks, and each block into one cell per building (the Voronoi cells of the buildings' interior
   points, clipped to the block). Everything is noded in one pass (``demo.partition.cut_faces``), so
   the units tile the community exactly and any union of units tiles it too. Each building lies in
   exactly one unit; a unit carries its households, buildings, metric area and centroid, and the
   length it shares with each neighbour (edges between units of different blocks run along a road).
2. **Regions** (``regions``): the unit adjacency graph is partitioned into ``k`` connected regions,
   ``k`` chosen so the mean household count is as close to the target as the bounds allow. The
   default method, ``grow``, is seeded region growing (household-weighted k-means seeds; the
   least-filled region takes the nearest free adjacent unit, crossing roads at a penalty) followed
   by a local search that moves boundary units between neighbouring regions while that lowers
   ``Σ ((h - μ)/μ)² + bound penalties + λ Σ weighted perimeter / √(4πA)`` (perimeter off roads
   costs more) and keeps both regions connected. ``maxp``, ``skater`` and ``kmeans`` run PySAL
   spopt's Max-P, SKATER and region-k-means on the same graph for comparison.
3. **Grids** are unions of their units' faces, coded community code + 3-digit sequence in reading
   order (``demo.partition.reading_order``: rows north→south, west→east within a row).
4. **Quality** (``quality.grid_quality``): household mean/CV/min/max, Polsby-Popper compactness,
   share of interior boundary on roads, buildings per grid, buildings whose footprint the outline
   cuts; the same figures can be computed for any existing grids.
"""

from gridserver.areas.division.core import METHODS, Division, GridProposal, choose_k, divide_community
from gridserver.areas.division.units import Buildings, Units, build_units

__all__ = ["METHODS", "Buildings", "Division", "GridProposal", "Units", "build_units", "choose_k",
           "divide_community"]
