"""Passwords (bcrypt), access tokens (JWT, HS256) and the signing-secret policy.

Access tokens carry only the username (``sub``), the account's ``token_version`` (``ver``) and expiry:
role, scope, the active flag and the version are read from the database on every request, so
disabling an account, changing its role or its password takes effect at once (a password change or
disable bumps the version, which invalidates every token issued before).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import hashlib
import secrets

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
    """Return a bcrypt hash (salted, cost ``bcrypt_rounds``, 12 by default) of a password that passes the policy."""
    check_password_policy(password)
    rounds = get_settings().bcrypt_rounds
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")


_dummy_hashes: dict[int, str] = {}


def dummy_hash() -> str:
    """A real bcrypt hash (same cost as new hashes) of a random string nobody knows. Logins for
    unknown or disabled accounts are verified against it, so they take as long as a wrong password
    for a real account and the response time does not tell which usernames exist."""
    rounds = get_settings().bcrypt_rounds
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = bcrypt.hashpw(secrets.token_bytes(16).hex().encode(),
                                              bcrypt.gensalt(rounds)).decode("ascii")
    return _dummy_hashes[rounds]

#: Signing secrets published somewhere (our compose file, tutorials); refused outside demo mode.
KNOWN_SECRETS = frozenset({
    "change-me-in-production", "changeme", "change-me", "secret", "jwt-secret", "gridserver",
    "gridserver-demo", "password", "your-secret-key", "supersecret",
})
MIN_SECRET_LENGTH = 32


def weak_secret_reason(secret: str | None) -> str | None:
    """Why ``secret`` must not sign tokens in production (known or short), or None when it is fine."""
    if not secret:
        return None  # none given: a random one is generated and kept in the data dir
    if secret.strip().lower() in KNOWN_SECRETS:
        return "GRIDSERVER_JWT_SECRET is a published example value; anyone could forge tokens with it"
    if len(secret) < MIN_SECRET_LENGTH:
        return (f"GRIDSERVER_JWT_SECRET has {len(secret)} characters; at least {MIN_SECRET_LENGTH} are required "
                "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
    return None


def verify_password(password: str, password_hash: str) -> bool:
    """True when ``password`` matches the stored bcrypt hash; never raises on malformed input."""
    try:
        return bcrypt.checkpw(password.encode("utf-8"), password_hash.encode("ascii"))
    except ValueError:  # over-long password or a malformed hash: simply not a match
        return False


def create_access_token(username: str, *, version: int = 0, expires_delta: timedelta | None = None) -> str:
    """Sign a token for ``username`` at token version ``version``, valid for ``jwt_expire_minutes``
    (or ``expires_delta``)."""
    s = get_settings()
    now = datetime.now(timezone.utc)
    exp = now + (expires_delta if expires_delta is not None else timedelta(minutes=s.jwt_expire_minutes))
    payload = {"sub": username, "ver": int(version), "iat": int(now.timestamp()), "exp": int(exp.timestamp())}
    return jwt.encode(payload, s.secret(), algorithm=ALGORITHM)


def decode_access_token(token: str) -> str:
    """Return the username in a valid token; Unauthorized (401) when expired, forged or malformed."""
    return decode_access_claims(token)[0]


def decode_access_claims(token: str) -> tuple[str, int]:
    """(username, token version) of a valid token; Unauthorized (401) when expired, forged or malformed."""
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
    ver = payload.get("ver", 0)
    if not isinstance(ver, int):
        raise Unauthorized("无效令牌 invalid token: bad version")
    return sub, ver


def new_refresh_token() -> tuple[str, str]:
    """A fresh opaque refresh token and the SHA-256 hex under which it is stored (never the token)."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
