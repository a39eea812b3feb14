"""Passwords (bcrypt) and access tokens (JWT, HS256).

Tokens carry only the username (``sub``) and expiry: role, scope and the active flag are read from
the database on every request, so disabling an account or changing its role takes effect at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import bcrypt
import jwt

from gridserver.errors import InvalidInput, Unauthorized
from gridserver.settings import get_settings

ALGORITHM = "HS256"
#: bcrypt only looks at the first 72 bytes; longer passwords are refused instead of silently cut.
MAX_PASSWORD_BYTES = 72
MIN_PASSWORD_LENGTH = 8


def check_password_policy(password: str) -> None:
    """Refuse passwords bcrypt cannot hash faithfully or that are trivially short."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"密码至少 {MIN_PASSWORD_LENGTH} 个字符 password must have at least "
                           f"{MIN_PASSWORD_LENGTH} characters")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise InvalidInput(f"密码过长 password must be at most {MAX_PASSWORD_BYTES} bytes in UTF-8")


def hash_password(password: str) -> str:
    """Return a bcrypt hash (salted, cost 12) of a password that passes the policy."""
    check_password_policy(password)
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt()).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    """True when ``password`` matches the stored bcrypt hash; never raises on malformed input."""
    try:
        return bcrypt.checkpw(password.encode("utf-8"), password_hash.encode("ascii"))
    except ValueError:  # over-long password or a malformed hash: simply not a match
        return False


def create_access_token(username: str, *, expires_delta: timedelta | None = None) -> str:
    """Sign a token for ``username`` valid for ``jwt_expire_minutes`` (or ``expires_delta``)."""
    s = get_settings()
    now = datetime.now(timezone.utc)
    exp = now + (expires_delta if expires_delta is not None else timedelta(minutes=s.jwt_expire_minutes))
    payload = {"sub": username, "iat": int(now.timestamp()), "exp": int(exp.timestamp())}
    return jwt.encode(payload, s.secret(), algorithm=ALGORITHM)


def decode_access_token(token: str) -> str:
    """Return the username in a valid token; Unauthorized (401) when expired, forged or malformed."""
    try:
        payload = jwt.decode(token, get_settings().secret(), algorithms=[ALGORITHM],
                             options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("登录已过期 token expired: log in again at /api/v1/auth/token") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"无效令牌 invalid token: {exc}") from None
    sub = payload.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("无效令牌 invalid token: no subject")
    return sub
