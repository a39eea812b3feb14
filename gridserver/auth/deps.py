"""FastAPI dependencies: who is calling, and may they?

``current_user`` → 401 (with ``WWW-Authenticate: Bearer``) when the token is missing, invalid,
expired, or names a disabled/deleted account. ``require_roles(...)`` → 403 for other roles.
"""

from __future__ import annotations

from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from gridserver.auth.security import decode_access_claims
from gridserver.auth.users import ROLES, User, get_user
from gridserver.db.engine import get_session
from gridserver.errors import Forbidden, Unauthorized
from gridserver.settings import get_settings

# auto_error=False: we raise our own Unauthorized so the body has the project's {"detail", "code"} shape.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)

#: Roles whose missing scope means "the whole city".
CITYWIDE_ROLES = ("admin", "analyst")


def _user_from_token(session: Session, token: str) -> User:
    username, version = decode_access_claims(token)
    return check_token_user(get_user(session, username), username, version)


def check_token_user(user: User | None, username: str, version: int) -> User:
    """``user`` (the account row of a valid token's ``username``, read in this request) when the token may
    still act for it; Unauthorized (401) for a missing or disabled account, a revoked token version, or a
    demo account outside demo mode. Callers that fold the account read into a statement they run anyway
    (incident intake) use this, so revocation stays immediate there too."""
    if user is None or not user.active:
        raise Unauthorized(f"账号不存在或已停用 account {username!r} does not exist or is disabled")
    if user.token_version != version:
        raise Unauthorized("令牌已撤销 token revoked (the password was changed or the account disabled): "
                           "log in again")
    if user.demo and not get_settings().demo_mode:
        raise Unauthorized(f"演示账号仅在演示模式可用 {username!r} is a demo account; demo accounts work only "
                           "while the server runs as `gridserver demo`")
    return user


NO_TOKEN = ("需要登录 not authenticated: send 'Authorization: Bearer <token>' "
            "(get one from POST /api/v1/auth/token)")


def current_user(token: str | None = Depends(oauth2_scheme), session: Session = Depends(get_session, scope="function")) -> User:
    """The authenticated caller; 401 when there is no valid bearer token."""
    if not token:
        raise Unauthorized(NO_TOKEN)
    return _user_from_token(session, token)


def optional_user(token: str | None = Depends(oauth2_scheme),
                  session: Session = Depends(get_session, scope="function")) -> User | None:
    """The caller if a token is sent, None when anonymous; a bad token is still a 401."""
    if not token:
        return None
    return _user_from_token(session, token)


def require_roles(*roles: str):
    """Dependency factory: the current user if their role is one of ``roles``, else 403."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:  # a typo here would silently lock everyone out
        raise ValueError(f"unknown roles {unknown}")

    def dependency(user: User = Depends(current_user)) -> User:
        if user.role not in roles:
            raise Forbidden(f"权限不足 role {user.role!r} may not do this; allowed roles: {', '.join(roles)}")
        return user

    return dependency


def user_in_scope(user: User, area_code: str | None) -> bool:
    """True when ``area_code`` lies inside the user's scope.

    Codes are prefix-hierarchical, so a scope covers every code that starts with it. A user without
    scope covers the whole city only for admin and analyst; citizens have no scope at all.
    """
    if user.scope_code is None:
        return user.role in CITYWIDE_ROLES
    return area_code is not None and area_code.startswith(user.scope_code)


def is_citywide(user: User) -> bool:
    """True for admin/analyst accounts without a scope (they cover the whole city)."""
    return user.scope_code is None and user.role in CITYWIDE_ROLES


def scope_covers(user: User, scope_code: str | None) -> bool:
    """True when every area in ``scope_code`` (None = the whole city) lies inside the user's scope."""
    if scope_code is None:
        return is_citywide(user)
    return user_in_scope(user, scope_code)


#: Rank of each role for "may not create accounts above your own" (admin is the top).
ROLE_RANK = {"admin": 3, "district_operator": 2, "street_operator": 2, "community_operator": 2,
             "analyst": 2, "grid_worker": 1, "dept_handler": 1, "citizen": 0}


def check_may_grant(actor: User, role: str, scope_code: str | None) -> None:
    """Forbidden (403) unless ``actor`` may create or change an account with this role and scope.

    An account may not get a role above the actor's, nor a scope broader than the actor's: a
    scoped admin creates accounts only inside its own area (never a city-wide admin or analyst).
    Citizens have no scope (they may report anywhere), so only city-wide admins manage them.
    """
    if ROLE_RANK.get(role, 99) > ROLE_RANK.get(actor.role, -1):
        raise Forbidden(f"不能授予高于自己的角色 you ({actor.role}) may not create a {role} account")
    if not scope_covers(actor, scope_code):
        target = scope_code or "全市 whole city"
        raise Forbidden(f"不能授予超出自己管辖范围的权限 you may not grant scope {target}: it is outside your "
                        f"scope {describe_scope(actor)}")


def describe_scope(user: User) -> str:
    """Human-readable scope for error messages."""
    if user.scope_code is None:
        return "全市 whole city" if user.role in CITYWIDE_ROLES else "无 none"
    return user.scope_code
