"""Trust: login lockout, refresh tokens and token revocation (issue 8, access).

* ``users.token_version`` — every access and refresh token carries it; bumping it (password change,
  disable) makes all of the account's tokens invalid at once.
* ``users.demo`` — accounts created by ``gridserver demo`` with the published password; they can
  only log in while the server runs in demo mode.
* ``login_failures`` — consecutive failed logins per username (known or not, so a lockout does not
  tell which usernames exist) and the lock's end.
* ``refresh_tokens`` — only the SHA-256 of each opaque refresh token is stored; rotation links a
  token to its successor, and a reused (already rotated) token revokes its whole family.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE users ADD COLUMN token_version integer NOT NULL DEFAULT 0;
        ALTER TABLE users ADD COLUMN password_changed_at timestamptz NOT NULL DEFAULT now();
        ALTER TABLE users ADD COLUMN demo boolean NOT NULL DEFAULT false;

        CREATE TABLE login_failures (
            username        text PRIMARY KEY,
            failures        integer NOT NULL DEFAULT 0,
            last_failed_at  timestamptz NOT NULL DEFAULT now(),
            locked_until    timestamptz
        );

        CREATE TABLE refresh_tokens (
            token_hash     text PRIMARY KEY,            -- sha256 hex of the opaque token
            user_id        integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            family         text NOT NULL,               -- one login = one family; rotation keeps it
            token_version  integer NOT NULL,            -- users.token_version when issued
            created_at     timestamptz NOT NULL DEFAULT now(),
            expires_at     timestamptz NOT NULL,
            used_at        timestamptz,                 -- rotated: exchanged for a new token
            revoked_at     timestamptz
        );
        CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
        CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
        """
    )
    _flag_existing_demo_accounts()


#: Accounts ``gridserver demo`` created before this revision, with the password it printed.
_DEMO_USERNAMES = ("admin", "district", "street", "community", "gridworker", "handler", "analyst", "citizen")
_DEMO_PASSWORD = b"gridserver-demo"


def _flag_existing_demo_accounts() -> None:
    """Mark earlier demo accounts that still have the published password as demo accounts."""
    import bcrypt
    from sqlalchemy import text

    conn = op.get_bind()
    rows = conn.execute(text("SELECT id, password_hash FROM users WHERE username = ANY(:u)"),
                        {"u": list(_DEMO_USERNAMES)}).all()
    for user_id, password_hash in rows:
        try:
            known = bcrypt.checkpw(_DEMO_PASSWORD, password_hash.encode("ascii"))
        except ValueError:
            known = False
        if known:
            conn.execute(text("UPDATE users SET demo = true WHERE id = :i"), {"i": user_id})


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS refresh_tokens;
        DROP TABLE IF EXISTS login_failures;
        ALTER TABLE users DROP COLUMN IF EXISTS demo;
        ALTER TABLE users DROP COLUMN IF EXISTS password_changed_at;
        ALTER TABLE users DROP COLUMN IF EXISTS token_version;
        """
    )
