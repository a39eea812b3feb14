"""Coordinate systems, geometry validation and tiling maths shared by every domain."""
