"""Reserved migration slot 15 (session 16; a helper fills it in and renames the docstring).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""
revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
