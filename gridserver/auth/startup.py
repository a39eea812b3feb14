"""What ``serve`` and ``demo --serve`` check and say before they accept connections.

* Outside demo mode the JWT signing secret must not be a published value (the one our old compose
  file shipped) nor shorter than 32 characters: with it anyone can forge an admin token. No secret
  at all is fine: one is generated and kept in the data dir.
* Demo accounts (created by ``gridserver demo`` with the printed password) can log in only in demo
  mode; ``serve`` says how many exist and that they are refused, ``demo --serve`` says loudly that
  they are open.
"""

from __future__ import annotations

from sqlalchemy import text

from gridserver.auth.security import weak_secret_reason
from gridserver.settings import Settings

DEMO_BANNER = ("演示模式 DEMO MODE: the demo accounts below log in with the published password {password!r}. "
               "Never expose this server; run `gridserver serve` for real use (demo accounts are refused there).")


class StartupRefused(Exception):
    """The server must not start; the message says why and what to do."""


def check_secret(settings: Settings) -> None:
    """StartupRefused when the configured JWT secret is known or short and this is not demo mode."""
    if settings.demo_mode:
        return
    reason = weak_secret_reason(settings.jwt_secret)
    if reason:
        raise StartupRefused(f"拒绝启动 refusing to start: {reason}. Set GRIDSERVER_JWT_SECRET to a random "
                             "value of 32+ characters, or unset it to use a generated one kept in "
                             "$GRIDSERVER_HOME/jwt-secret.")


def demo_accounts(conn) -> list[str]:
    """Usernames of the demo accounts in the database."""
    return list(conn.execute(text("SELECT username FROM users WHERE demo ORDER BY username")).scalars())
