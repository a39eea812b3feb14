"""HTTP routes: log in (OAuth2 password flow), who am I, and account management for admins."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from gridserver.auth import users
from gridserver.auth.deps import current_user, require_roles
from gridserver.auth.security import create_access_token
from gridserver.db.engine import get_session
from gridserver.errors import Unauthorized

router = APIRouter(prefix="/api/v1", tags=["账号 auth"])


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"


class UserIn(BaseModel):
    username: str = Field(..., description="用户名 3-64 letters, digits, _ . @ -")
    password: str = Field(..., description="密码 8-72 bytes")
    role: str = Field(..., description="角色 " + ", ".join(users.ROLES))
    scope_code: str | None = Field(None, description="管辖范围 admin area code (prefix-hierarchical)")
    full_name: str = Field("", max_length=100, description="姓名")
    department: str | None = Field(None, max_length=100, description="所属部门")


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


@router.post("/auth/token", response_model=Token, summary="登录 log in: username/password → bearer token")
def login(form: OAuth2PasswordRequestForm = Depends(), session: Session = Depends(get_session, scope="function")):
    """Standard OAuth2 password flow (form fields ``username``, ``password``). 401 on bad credentials."""
    user = users.authenticate(session, form.username, form.password)
    if user is None:
        raise Unauthorized("用户名或密码错误 wrong username or password, or the account is disabled")
    return Token(access_token=create_access_token(user.username))


@router.get("/auth/me", response_model=UserOut, summary="当前用户 the account behind this token")
def me(user: users.User = Depends(current_user)):
    return user.public()


@router.post("/users", response_model=UserOut, status_code=201, summary="新建用户 create an account (admin)")
def create_user(body: UserIn, response: Response, session: Session = Depends(get_session, scope="function"),
                _: users.User = Depends(require_roles("admin"))):
    """Create an account. 422 for a bad role/scope/password, 409 when the username is taken."""
    user = users.create_user(session, body.username, body.password, body.role, body.scope_code,
                             body.full_name, body.department)
    session.commit()  # committed before the response, so the new user can log in right away
    response.headers["Location"] = f"/api/v1/users/{user.username}"
    return user.public()


@router.get("/users", response_model=list[UserOut], summary="用户列表 list accounts (admin)")
def list_users(role: str | None = Query(None, description="只看某角色 only this role"),
               session: Session = Depends(get_session, scope="function"), _: users.User = Depends(require_roles("admin"))):
    return [u.public() for u in users.list_users(session, role)]


@router.get("/users/{username}", response_model=UserOut, summary="单个用户 one account (admin)")
def get_user(username: str, session: Session = Depends(get_session, scope="function"),
             _: users.User = Depends(require_roles("admin"))):
    return users.require_user(session, username).public()
