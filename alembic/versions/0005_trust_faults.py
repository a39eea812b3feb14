"""Trust: idempotency keys for creates (issue 8, faults).

``idempotency_keys``: one row per (caller, Idempotency-Key) with the request's fingerprint and the
stored answer; written in the same transaction as the created row (see gridserver/db/idempotency.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE idempotency_keys (
            principal         text NOT NULL,           -- user:<id>, or client:<address>
            key               text NOT NULL,
            endpoint          text NOT NULL,           -- METHOD /path of the first request
            request_hash      text NOT NULL,           -- sha256 of method, path, canonical body
            status_code       integer,
            response_body     jsonb,
            response_headers  jsonb,
            created_at        timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT idempotency_keys_pkey PRIMARY KEY (principal, key)
        );
        CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS idempotency_keys")
