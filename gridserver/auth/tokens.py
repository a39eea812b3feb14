"""Token pairs: a short-lived access token (JWT) plus a rotating, revocable refresh token.

A login starts a *family*. ``POST /api/v1/auth/refresh`` exchanges a refresh token for a new pair
in the same family and marks the old one used; presenting a used token again means it was copied,
so the whole family is revoked (the thief and the owner both have to log in again). Logout, a
password change and disabling the account revoke refresh tokens too. Only SHA-256 digests of
refresh tokens are stored.
"""

from __future__ import annotations

import secrets

from sqlalchemy import text

from gridserver.auth.security import create_access_token, hash_refresh_token, new_refresh_token
from gridserver.auth.users import User, get_user
from gridserver.errors import Unauthorized
from gridserver.settings import get_settings


def issue(conn, user: User, family: str | None = None) -> dict:
    """A new access + refresh token pair for ``user`` (a new family unless one is given)."""
    s = get_settings()
    refresh, digest = new_refresh_token()
    conn.execute(text("""INSERT INTO refresh_tokens (token_hash, user_id, family, token_version, expires_at)
                         VALUES (:h, :u, :f, :v, now() + make_interval(days => :d))"""),
                 {"h": digest, "u": user.id, "f": family or secrets.token_hex(16), "v": user.token_version,
                  "d": s.jwt_refresh_days})
    return {"access_token": create_access_token(user.username, version=user.token_version),
            "token_type": "bearer", "expires_in": s.jwt_expire_minutes * 60,
            "refresh_token": refresh, "refresh_expires_in": s.jwt_refresh_days * 86400}


def _revoke_family(conn, family: str) -> None:
    conn.execute(text("UPDATE refresh_tokens SET revoked_at = now() WHERE family = :f AND revoked_at IS NULL"),
                 {"f": family})


def rotate(conn, refresh_token: str, *, demo_mode: bool = False) -> dict:
    """Exchange a live refresh token for a new pair; Unauthorized (401) for any token that is not.

    Reuse of an already exchanged token revokes its family; the caller must commit that even
    though it answers 401.
    """
    row = conn.execute(text("""SELECT token_hash, user_id, family, token_version, used_at, revoked_at,
                                      expires_at <= now() AS expired
                               FROM refresh_tokens WHERE token_hash = :h FOR UPDATE"""),
                       {"h": hash_refresh_token(refresh_token or "")}).first()
    if row is None:
        raise Unauthorized("无效的刷新令牌 unknown refresh token: log in again at /api/v1/auth/token")
    if row.revoked_at is not None:
        raise Unauthorized("刷新令牌已撤销 refresh token revoked (logout, password change or disabled account): "
                           "log in again")
    if row.used_at is not None:
        _revoke_family(conn, row.family)
        raise Unauthorized("刷新令牌已被使用 refresh token already used: every token of this login is now revoked; "
                           "log in again")
    if row.expired:
        raise Unauthorized("刷新令牌已过期 refresh token expired: log in again")
    name = conn.execute(text("SELECT username FROM users WHERE id = :i"), {"i": row.user_id}).scalar()
    user = get_user(conn, name) if name else None
    if user is None or not user.active or user.token_version != row.token_version or (user.demo and not demo_mode):
        _revoke_family(conn, row.family)
        raise Unauthorized("账号已停用或密码已修改 account disabled or password changed: log in again")
    conn.execute(text("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = :h"), {"h": row.token_hash})
    return issue(conn, user, family=row.family)


def revoke(conn, refresh_token: str) -> bool:
    """Log out: revoke the family of this refresh token. True when the token was known."""
    family = conn.execute(text("SELECT family FROM refresh_tokens WHERE token_hash = :h"),
                          {"h": hash_refresh_token(refresh_token or "")}).scalar()
    if family is None:
        return False
    _revoke_family(conn, family)
    return True
