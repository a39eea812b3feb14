"""Accounts, login, tokens and role checks: real HTTP against a live server, and the users CLI."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from fixtures_auth import login
from gridserver.auth.deps import user_in_scope
from gridserver.auth.security import create_access_token
from gridserver.auth.users import User
from gridserver.cli import app as cli_app

GRID = "440104001001001"
COMMUNITY = "440104001001"
STREET = "440104001"
DISTRICT = "440104"


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _assert_401(r):
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "unauthorized"
    assert r.headers.get("www-authenticate") == "Bearer"


# --- login and tokens ------------------------------------------------------------------------------
def test_login_and_me(http, make_user, auth, small_city):
    u = make_user("grid_worker", GRID, full_name="张三")
    r = http.get("/api/v1/auth/me", headers=auth(u))
    assert r.status_code == 200, r.text
    me = r.json()
    assert (me["username"], me["role"], me["scope_code"], me["full_name"]) == (u["username"], "grid_worker", GRID, "张三")
    assert me["role_label"] == "网格员"
    assert "password" not in r.text and "password_hash" not in me


def test_wrong_password_and_unknown_user_are_401(http, make_user):
    u = make_user("analyst")
    _assert_401(http.post("/api/v1/auth/token", data={"username": u["username"], "password": "wrong-password"}))
    _assert_401(http.post("/api/v1/auth/token", data={"username": _name("nobody"), "password": "whatever123"}))


def test_password_is_stored_as_bcrypt_hash(engine, make_user):
    u = make_user("analyst")
    with engine.connect() as conn:
        h = conn.execute(text("SELECT password_hash FROM users WHERE username = :u"), {"u": u["username"]}).scalar_one()
    assert h.startswith("$2") and u["password"] not in h


@pytest.mark.parametrize("path", ["/api/v1/auth/me", "/api/v1/incidents", "/api/v1/users"])
def test_no_token_is_401_with_www_authenticate(http, path):
    _assert_401(http.get(path))


def test_post_incident_without_token_is_401(http, small_city):
    _assert_401(http.post("/api/v1/incidents", json={"lon": 113.255, "lat": 23.145, "category": "other"}))


@pytest.mark.parametrize("header", ["Bearer not-a-jwt", "Bearer a.b.c", "Basic dXNlcjpwYXNz"])
def test_garbage_token_is_401(http, header):
    _assert_401(http.get("/api/v1/auth/me", headers={"Authorization": header}))


def test_token_signed_with_another_secret_is_401(http, admin_user):
    now = datetime.now(timezone.utc)
    forged = jwt.encode({"sub": admin_user["username"], "exp": now + timedelta(hours=1)}, "not-the-secret-" + "x" * 32,
                        algorithm="HS256")
    _assert_401(http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"}))


def test_expired_token_is_401(http, make_user, auth):
    u = make_user("analyst")
    assert http.get("/api/v1/auth/me", headers=auth(u)).status_code == 200
    expired = create_access_token(u["username"], expires_delta=timedelta(minutes=-1))
    r = http.get("/api/v1/auth/me", headers=auth(expired))
    _assert_401(r)
    assert "expired" in r.json()["detail"]


def test_token_of_unknown_user_is_401(http, auth):
    _assert_401(http.get("/api/v1/auth/me", headers=auth(create_access_token(_name("ghost")))))


# --- account management over HTTP ------------------------------------------------------------------
def test_only_admin_manages_users(http, make_user, auth, admin_token, small_city):
    op = make_user("district_operator", DISTRICT)
    body = {"username": _name("x"), "password": "long-enough-pw", "role": "analyst"}
    r = http.post("/api/v1/users", json=body, headers=auth(op))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert http.get("/api/v1/users", headers=auth(op)).status_code == 403
    r = http.get("/api/v1/users", params={"role": "district_operator"}, headers=auth(admin_token))
    assert r.status_code == 200
    assert op["username"] in [u["username"] for u in r.json()]
    assert {u["role"] for u in r.json()} == {"district_operator"}
    r = http.get(f"/api/v1/users/{op['username']}", headers=auth(admin_token))
    assert r.status_code == 200 and r.json()["scope_code"] == DISTRICT


@pytest.mark.parametrize("role,scope,fragment", [
    ("superuser", None, "unknown role"),
    ("grid_worker", None, "needs a scope"),
    ("grid_worker", "440104999999999", "not a current admin area"),
    ("grid_worker", COMMUNITY, "needs a grid code"),
    ("street_operator", DISTRICT, "needs a street code"),
    ("citizen", GRID, "citizens have no scope"),
])
def test_create_user_rejects_bad_role_or_scope(http, admin_token, auth, small_city, role, scope, fragment):
    username = _name("bad")
    r = http.post("/api/v1/users", headers=auth(admin_token),
                  json={"username": username, "password": "long-enough-pw", "role": role, "scope_code": scope})
    assert r.status_code == 422, r.text
    assert fragment in r.json()["detail"]
    assert http.get(f"/api/v1/users/{username}", headers=auth(admin_token)).status_code == 404


def test_create_user_rejects_duplicate_and_weak_password(http, admin_token, auth, make_user):
    u = make_user("analyst")
    r = http.post("/api/v1/users", headers=auth(admin_token),
                  json={"username": u["username"], "password": "long-enough-pw", "role": "analyst"})
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    r = http.post("/api/v1/users", headers=auth(admin_token),
                  json={"username": _name("weak"), "password": "short", "role": "analyst"})
    assert r.status_code == 422 and "at least 8" in r.json()["detail"]


# --- scope rule ------------------------------------------------------------------------------------
def _user(role, scope):
    return User(id=1, username="u", full_name="", role=role, scope_code=scope, department=None, active=True,
                created_at=datetime.now(timezone.utc))


@pytest.mark.parametrize("role,scope,code,expected", [
    ("grid_worker", GRID, GRID, True),
    ("grid_worker", GRID, "440104001001002", False),
    ("community_operator", COMMUNITY, GRID, True),
    ("community_operator", COMMUNITY, "440104001002001", False),
    ("street_operator", STREET, "440104001002004", True),
    ("street_operator", STREET, "440104003001001", False),
    ("district_operator", DISTRICT, "440104003002004", True),
    ("district_operator", DISTRICT, "440105001001001", False),
    ("admin", None, "440105001001001", True),
    ("analyst", None, GRID, True),
    ("citizen", None, GRID, False),
    ("grid_worker", GRID, None, False),
])
def test_user_in_scope_is_prefix_hierarchical(role, scope, code, expected):
    assert user_in_scope(_user(role, scope), code) is expected


# --- the users CLI ---------------------------------------------------------------------------------
def _cli(*args):
    return CliRunner().invoke(cli_app, ["users", *args])


def test_cli_add_then_login(http, small_city):
    username, password = _name("cli"), secrets.token_urlsafe(10)
    r = _cli("add", username, "--role", "community_operator", "--scope", COMMUNITY, "--password", password,
             "--full-name", "李四")
    assert r.exit_code == 0, r.output
    assert username in r.output
    token = login(http, username, password)
    me = http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert (me["role"], me["scope_code"], me["full_name"]) == ("community_operator", COMMUNITY, "李四")
    # without --password the CLI prompts (hidden, with confirmation)
    other = _name("cli")
    prompted = CliRunner().invoke(cli_app, ["users", "add", other, "--role", "citizen"],
                                  input="prompted-pw-1\nprompted-pw-1\n")
    assert prompted.exit_code == 0, prompted.output
    login(http, other, "prompted-pw-1")
    listed = _cli("list", "--role", "community_operator")
    assert listed.exit_code == 0 and username in listed.output


def test_cli_duplicate_unknown_role_and_bad_scope_exit_2(small_city):
    username = _name("cli")
    assert _cli("add", username, "--role", "analyst", "--password", "long-enough-pw").exit_code == 0
    dup = _cli("add", username, "--role", "analyst", "--password", "long-enough-pw")
    assert dup.exit_code == 2 and "already exists" in dup.output
    bad_role = _cli("add", _name("cli"), "--role", "mayor", "--password", "long-enough-pw")
    assert bad_role.exit_code == 2 and "unknown role" in bad_role.output
    bad_scope = _cli("add", _name("cli"), "--role", "grid_worker", "--scope", "999999", "--password",
                     "long-enough-pw")
    assert bad_scope.exit_code == 2 and "999999" in bad_scope.output


def test_cli_passwd_and_disable(http):
    username = _name("cli")
    assert _cli("add", username, "--role", "analyst", "--password", "first-password").exit_code == 0
    token = login(http, username, "first-password")
    assert _cli("passwd", username, "--password", "second-password").exit_code == 0
    _assert_401(http.post("/api/v1/auth/token", data={"username": username, "password": "first-password"}))
    login(http, username, "second-password")
    assert _cli("disable", username).exit_code == 0
    # an already issued token stops working, and so does logging in
    _assert_401(http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}))
    _assert_401(http.post("/api/v1/auth/token", data={"username": username, "password": "second-password"}))
    assert _cli("disable", username, "--enable").exit_code == 0
    login(http, username, "second-password")
    assert _cli("passwd", _name("nobody"), "--password", "whatever-pw").exit_code == 2
