"""Incidents reported by address text: keep the standard address they were geocoded to.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE incidents ADD COLUMN address_code text")


def downgrade() -> None:
    op.execute("ALTER TABLE incidents DROP COLUMN address_code")
