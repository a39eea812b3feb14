"""gridserver: geospatial grid-management server for city governance (网格化管理)."""

__version__ = "0.1.0"
