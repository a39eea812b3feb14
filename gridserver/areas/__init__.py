"""Admin areas and grids: models, import, topology checks and point location."""
