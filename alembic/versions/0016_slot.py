"""Reserved migration slot 16 (session 16; a helper fills it in and renames the docstring).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""
revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
