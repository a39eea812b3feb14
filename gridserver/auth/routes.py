"""HTTP routes: log in (OAuth2 password flow), refresh, log out, who am I, and account management."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from gridserver.auth import tokens, users
from gridserver.auth.deps import check_may_grant, current_user, require_roles, user_in_scope
from gridserver.auth.ratelimit import LOGIN_FAILURES_PER_IP, client_address
from gridserver.db.engine import get_session
from gridserver.errors import Forbidden, Unauthorized
from gridserver.settings import get_settings

router = APIRouter(prefix="/api/v1", tags=["账号 auth"])


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(..., description="access token lifetime in seconds")
    refresh_token: str = Field(..., description="exchange at POST /api/v1/auth/refresh; single use")
    refresh_expires_in: int


class RefreshIn(BaseModel):
    refresh_token: str = Field(..., min_length=1, max_length=200)


class UserIn(BaseModel):
    username: str = Field(..., description="用户名 3-64 letters, digits, _ . @ -")
    password: str = Field(..., description="密码 8-72 bytes")
    role: str = Field(..., description="角色 " + ", ".join(users.ROLES))
    scope_code: str | None = Field(None, description="管辖范围 admin area code (prefix-hierarchical)")
    full_name: str = Field("", max_length=100, description="姓名")
    department: str | None = Field(None, max_length=100, description="所属部门")


class UserPatch(BaseModel):
    active: bool | None = Field(None, description="false disables the account and revokes its tokens")
    password: str | None = Field(None, description="new password; revokes every token of the account")


class PasswordChange(BaseModel):
    old_password: str
    new_password: str


class UserOut(BaseModel):
    id: int
    username: str
    full_name: str
    role: str
    role_label: str
    scope_code: str | None
    department: str | None
    active: bool
    created_at: datetime


def _too_many(detail: str, code: str, retry_after: int) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": code}, 429, headers={"Retry-After": str(retry_after)})


@router.post("/auth/token", response_model=Token, summary="登录 log in: username/password → bearer token",
             responses={429: {"description": "account locked or too many failed logins from this address"}})
def login(request: Request, form: OAuth2PasswordRequestForm = Depends(),
          session: Session = Depends(get_session, scope="function")):
    """Standard OAuth2 password flow (form fields ``username``, ``password``). 401 on bad credentials.

    5 failed logins for a username lock it for 15 minutes (429 ``account_locked``); 50 failed logins
    from one address within 5 minutes → 429 ``too_many_attempts`` (counted in the database, so across
    server processes; the address is the socket peer unless that is a trusted proxy). The answer also
    carries a refresh token (see ``POST /api/v1/auth/refresh``).
    """
    ip = client_address(request)  # X-Forwarded-For only from GRIDSERVER_TRUSTED_PROXIES
    wait = LOGIN_FAILURES_PER_IP.retry_after(session, ip)
    if wait:
        return _too_many(f"登录失败次数过多 too many failed logins from {ip}: try again in {wait} s",
                         "too_many_attempts", wait)
    try:
        user = users.authenticate(session, form.username, form.password, demo_mode=get_settings().demo_mode)
    except users.AccountLocked as exc:
        return _too_many(exc.detail, exc.code, exc.retry_after)
    if user is None:
        LOGIN_FAILURES_PER_IP.hit(session, ip)  # shared by every server process (database)
        session.commit()  # the failure counts must survive the 401
        raise Unauthorized("用户名或密码错误 wrong username or password, or the account is disabled")
    out = tokens.issue(session, user)
    session.commit()
    return out


@router.post("/auth/refresh", response_model=Token, summary="刷新令牌 new token pair for a refresh token")
def refresh(body: RefreshIn, session: Session = Depends(get_session, scope="function")):
    """Rotate: the refresh token is single use and answered with a new pair. 401 for an unknown,
    expired, revoked or already used token (reuse revokes every token of that login)."""
    try:
        out = tokens.rotate(session, body.refresh_token, demo_mode=get_settings().demo_mode)
    except Unauthorized:
        session.commit()  # a detected reuse revokes the family, and that must stick
        raise
    session.commit()
    return out


@router.post("/auth/logout", status_code=204, summary="退出 revoke a refresh token (and its login)")
def logout(body: RefreshIn, session: Session = Depends(get_session, scope="function")):
    """Revoke the refresh token's whole login; access tokens expire on their own within minutes."""
    tokens.revoke(session, body.refresh_token)
    session.commit()
    return Response(status_code=204)


@router.post("/auth/password", response_model=Token, summary="修改密码 change your own password")
def change_password(body: PasswordChange, user: users.User = Depends(current_user),
                    session: Session = Depends(get_session, scope="function")):
    """Every earlier token of the account stops working; the answer is a fresh pair for this client."""
    if users.authenticate(session, user.username, body.old_password, demo_mode=get_settings().demo_mode) is None:
        session.commit()
        raise Forbidden("原密码错误 the old password is wrong")
    users.set_password(session, user.username, body.new_password)
    out = tokens.issue(session, users.require_user(session, user.username))
    session.commit()
    return out


@router.get("/auth/me", response_model=UserOut, summary="当前用户 the account behind this token")
def me(user: users.User = Depends(current_user)):
    return user.public()


@router.post("/users", response_model=UserOut, status_code=201, summary="新建用户 create an account (admin)")
def create_user(body: UserIn, response: Response, session: Session = Depends(get_session, scope="function"),
                actor: users.User = Depends(require_roles("admin"))):
    """Create an account. 422 for a bad role/scope/password, 409 when the username is taken, 403 for a
    role above yours or a scope outside yours (a scoped admin cannot create a city-wide account)."""
    users.check_role(body.role)
    check_may_grant(actor, body.role, body.scope_code or None)
    user = users.create_user(session, body.username, body.password, body.role, body.scope_code,
                             body.full_name, body.department)
    session.commit()  # committed before the response, so the new user can log in right away
    response.headers["Location"] = f"/api/v1/users/{user.username}"
    return user.public()


def _visible(actor: users.User, u: users.User) -> bool:
    """An admin sees accounts inside its scope (a city-wide admin all of them; citizens have no scope)."""
    return (actor.scope_code is None) or (u.scope_code is not None and user_in_scope(actor, u.scope_code))


def _managed(session: Session, actor: users.User, username: str) -> users.User:
    u = users.require_user(session, username)
    if not _visible(actor, u):
        raise Forbidden(f"账号 {username} 不在你的管辖范围 account {username!r} is outside your scope "
                        f"{actor.scope_code}")
    return u


@router.get("/users", response_model=list[UserOut], summary="用户列表 list accounts (admin)")
def list_users(role: str | None = Query(None, description="只看某角色 only this role"),
               session: Session = Depends(get_session, scope="function"),
               actor: users.User = Depends(require_roles("admin"))):
    """Accounts inside the caller's scope."""
    return [u.public() for u in users.list_users(session, role) if _visible(actor, u)]


@router.get("/users/{username}", response_model=UserOut, summary="单个用户 one account (admin)")
def get_user(username: str, session: Session = Depends(get_session, scope="function"),
             actor: users.User = Depends(require_roles("admin"))):
    return _managed(session, actor, username).public()


@router.patch("/users/{username}", response_model=UserOut, summary="停用/启用/重置密码 change an account (admin)")
def patch_user(username: str, body: UserPatch = Body(...), session: Session = Depends(get_session, scope="function"),
               actor: users.User = Depends(require_roles("admin"))):
    """Disable/enable an account or set its password; both revoke every token the account holds."""
    u = _managed(session, actor, username)
    check_may_grant(actor, u.role, u.scope_code)
    if body.password is not None:
        users.set_password(session, username, body.password)
        users.unlock(session, username)  # a reset password also lifts a lockout
    if body.active is not None:
        users.set_active(session, username, body.active)
    session.commit()
    return users.require_user(session, username).public()
