"""Database access: the embedded private PostGIS, engines, sessions and migrations."""
