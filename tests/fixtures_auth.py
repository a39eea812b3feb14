"""Auth test fixtures (tokens for each role); registered from conftest.py.

``make_user(role, scope_code=None)`` creates an account through ``POST /api/v1/users`` (as a
bootstrap admin) and logs it in through ``POST /api/v1/auth/token``, so every token used in tests
comes from the real endpoints. Usernames are unique per call; nothing is cleaned up (the test
database is dropped at the end of the session).
"""

from __future__ import annotations

import itertools
import secrets
import uuid

import pytest


def login(http, username: str, password: str) -> str:
    """Token for username/password via the real OAuth2 password endpoint."""
    r = http.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer"
    return body["access_token"]


def _bearer(who) -> dict:
    token = who["token"] if isinstance(who, dict) else who
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def auth():
    """auth(user_dict_or_token) → {"Authorization": "Bearer ..."}."""
    return _bearer


@pytest.fixture(scope="session")
def admin_user(engine, http):
    """A bootstrap admin created with the service function (no admin exists to create it via HTTP)."""
    from gridserver.auth.users import create_user

    username, password = f"root_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(12)
    with engine.begin() as conn:
        create_user(conn, username, password, "admin", full_name="测试管理员")
    return {"username": username, "password": password, "role": "admin", "scope_code": None,
            "token": login(http, username, password)}


@pytest.fixture(scope="session")
def admin_token(admin_user):
    return admin_user["token"]


@pytest.fixture(scope="session")
def make_user(http, admin_token):
    """Factory: make_user(role, scope_code=None, **fields) → {username, password, role, scope_code, token}."""
    counter = itertools.count(1)

    def make(role: str, scope_code: str | None = None, **fields) -> dict:
        username = f"{role}_{next(counter)}_{uuid.uuid4().hex[:6]}"
        password = secrets.token_urlsafe(12)
        r = http.post("/api/v1/users", headers=_bearer(admin_token),
                      json={"username": username, "password": password, "role": role,
                            "scope_code": scope_code, **fields})
        assert r.status_code == 201, r.text
        return {"username": username, "password": password, "role": role, "scope_code": scope_code,
                "id": r.json()["id"], "token": login(http, username, password)}

    return make
