"""Access (issue 8): account scopes, login lockout, constant-time login, token revocation, refresh
tokens and demo accounts — each hole tested both ways over real HTTP against the live server."""

from __future__ import annotations

import secrets
import uuid

import jwt
import pytest
from sqlalchemy import text

from fixtures_auth import login
from gridserver.auth import ratelimit, users as users_mod
from gridserver.auth.users import create_user, set_active, set_password
from gridserver.settings import get_settings

DISTRICT, STREET, OTHER_STREET = "440104", "440104001", "440104003"
COMMUNITY, GRID = "440104001001", "440104001001001"


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _new_user(http, admin_token, auth, role="analyst", scope=None) -> dict:
    name, pw = _name(role), secrets.token_urlsafe(12)
    r = http.post("/api/v1/users", headers=auth(admin_token),
                  json={"username": name, "password": pw, "role": role, "scope_code": scope})
    assert r.status_code == 201, r.text
    return {"username": name, "password": pw}


def _login(http, username, password):
    return http.post("/api/v1/auth/token", data={"username": username, "password": password})


@pytest.fixture
def fresh_ip_limit():
    """Failed logins from 127.0.0.1 in one test must not throttle the tests after it."""
    ratelimit.LOGIN_FAILURES_PER_IP.reset()
    yield ratelimit.LOGIN_FAILURES_PER_IP
    ratelimit.LOGIN_FAILURES_PER_IP.reset()


# --- who may create whom --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def street_admin(http, admin_token, auth, small_city):
    u = _new_user(http, admin_token, auth, "admin", STREET)
    return {**u, "token": login(http, u["username"], u["password"])}


@pytest.mark.parametrize("role,scope", [("admin", None), ("analyst", None), ("admin", OTHER_STREET),
                                        ("street_operator", OTHER_STREET), ("district_operator", DISTRICT),
                                        ("citizen", None)])
def test_scoped_admin_cannot_grant_a_broader_or_foreign_scope(http, auth, street_admin, role, scope):
    r = http.post("/api/v1/users", headers=auth(street_admin),
                  json={"username": _name("x"), "password": "long-enough-pw", "role": role, "scope_code": scope})
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden" and "scope" in r.json()["detail"]


@pytest.mark.parametrize("role,scope", [("street_operator", STREET), ("community_operator", COMMUNITY),
                                        ("grid_worker", GRID), ("admin", STREET)])
def test_scoped_admin_creates_accounts_inside_its_scope(http, auth, street_admin, role, scope):
    name = _name("in")
    r = http.post("/api/v1/users", headers=auth(street_admin),
                  json={"username": name, "password": "long-enough-pw", "role": role, "scope_code": scope})
    assert r.status_code == 201, r.text
    assert (r.json()["role"], r.json()["scope_code"]) == (role, scope)


def test_citywide_admin_may_create_citywide_admin(http, admin_token, auth):
    r = http.post("/api/v1/users", headers=auth(admin_token),
                  json={"username": _name("root2"), "password": "long-enough-pw", "role": "admin"})
    assert r.status_code == 201, r.text


def test_scoped_admin_sees_and_manages_only_accounts_in_scope(http, auth, admin_token, street_admin):
    inside = _new_user(http, admin_token, auth, "grid_worker", GRID)
    outside = _new_user(http, admin_token, auth, "street_operator", OTHER_STREET)
    listed = {u["username"] for u in http.get("/api/v1/users", headers=auth(street_admin)).json()}
    assert inside["username"] in listed and outside["username"] not in listed
    assert http.get(f"/api/v1/users/{outside['username']}", headers=auth(street_admin)).status_code == 403
    assert http.patch(f"/api/v1/users/{outside['username']}", headers=auth(street_admin),
                      json={"active": False}).status_code == 403
    r = http.patch(f"/api/v1/users/{inside['username']}", headers=auth(street_admin), json={"active": False})
    assert r.status_code == 200 and r.json()["active"] is False


# --- lockout -----------------------------------------------------------------------------------------
def test_five_failures_lock_the_account_for_15_minutes(http, admin_token, auth, engine, fresh_ip_limit):
    u = _new_user(http, admin_token, auth)
    for _ in range(users_mod.MAX_FAILURES):
        assert _login(http, u["username"], "wrong-password").status_code == 401
    r = _login(http, u["username"], u["password"])  # right password, but locked
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "account_locked"
    assert 14 * 60 < int(r.headers["retry-after"]) <= 15 * 60
    with engine.connect() as conn:  # stored in the database, not in this process
        row = conn.execute(text("SELECT failures, locked_until > now() + interval '14 minutes' FROM login_failures "
                                "WHERE username = :u"), {"u": u["username"]}).one()
    assert tuple(row) == (users_mod.MAX_FAILURES, True)
    with engine.begin() as conn:  # 15 minutes later
        conn.execute(text("UPDATE login_failures SET locked_until = now() - interval '1 second' WHERE username = :u"),
                     {"u": u["username"]})
    assert _login(http, u["username"], u["password"]).status_code == 200
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM login_failures WHERE username = :u"),
                            {"u": u["username"]}).scalar() == 0


def test_four_failures_then_success_does_not_lock(http, admin_token, auth, fresh_ip_limit):
    u = _new_user(http, admin_token, auth)
    for _ in range(users_mod.MAX_FAILURES - 1):
        assert _login(http, u["username"], "wrong-password").status_code == 401
    assert _login(http, u["username"], u["password"]).status_code == 200
    for _ in range(users_mod.MAX_FAILURES - 1):  # the count started again
        assert _login(http, u["username"], "wrong-password").status_code == 401
    assert _login(http, u["username"], u["password"]).status_code == 200


def test_unknown_usernames_lock_the_same_way(http, fresh_ip_limit):
    ghost = _name("ghost")
    answers = [_login(http, ghost, "wrong-password").status_code for _ in range(users_mod.MAX_FAILURES + 1)]
    assert answers == [401] * users_mod.MAX_FAILURES + [429]


def test_failed_logins_per_address_are_limited(http, admin_token, auth, fresh_ip_limit, monkeypatch):
    u = _new_user(http, admin_token, auth)
    monkeypatch.setattr(fresh_ip_limit, "limit", 6)
    for i in range(6):  # six different usernames: no account reaches its own lockout
        assert _login(http, _name(f"spray{i}"), "wrong-password").status_code == 401
    r = _login(http, u["username"], u["password"])
    assert r.status_code == 429 and r.json()["code"] == "too_many_attempts"
    assert int(r.headers["retry-after"]) > 0
    fresh_ip_limit.reset()
    assert _login(http, u["username"], u["password"]).status_code == 200


# --- constant-time login -------------------------------------------------------------------------------
def test_unknown_and_disabled_users_still_pay_a_bcrypt_check(http, engine, admin_token, auth, monkeypatch,
                                                            fresh_ip_limit):
    calls = []
    real = users_mod.verify_password
    monkeypatch.setattr(users_mod, "verify_password", lambda pw, h: calls.append(h) or real(pw, h))
    assert _login(http, _name("nobody"), "whatever-pw").status_code == 401
    assert len(calls) == 1 and calls[0].startswith("$2")  # a real bcrypt hash, same cost
    u = _new_user(http, admin_token, auth)
    with engine.begin() as conn:
        set_active(conn, u["username"], False)
    calls.clear()
    assert _login(http, u["username"], u["password"]).status_code == 401
    assert len(calls) == 1


# --- revocation and refresh -----------------------------------------------------------------------------
def test_access_tokens_live_30_minutes_or_less(http, admin_token, auth):
    u = _new_user(http, admin_token, auth)
    body = _login(http, u["username"], u["password"]).json()
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] <= 30 * 60
    assert body["expires_in"] <= 30 * 60 and body["refresh_token"]


@pytest.mark.parametrize("how", ["service_password", "service_disable", "http_password", "http_disable"])
def test_password_change_or_disable_revokes_tokens(http, engine, admin_token, auth, how):
    u = _new_user(http, admin_token, auth)
    pair = _login(http, u["username"], u["password"]).json()
    me = {"Authorization": f"Bearer {pair['access_token']}"}
    assert http.get("/api/v1/auth/me", headers=me).status_code == 200
    if how.startswith("service"):
        with engine.begin() as conn:
            (set_password(conn, u["username"], "a-new-password") if how == "service_password"
             else set_active(conn, u["username"], False))
    else:
        body = {"password": "a-new-password"} if how == "http_password" else {"active": False}
        assert http.patch(f"/api/v1/users/{u['username']}", headers=auth(admin_token), json=body).status_code == 200
    r = http.get("/api/v1/auth/me", headers=me)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert http.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    if how.endswith("password"):
        assert _login(http, u["username"], "a-new-password").status_code == 200


def test_changing_own_password_revokes_other_sessions(http, admin_token, auth):
    u = _new_user(http, admin_token, auth)
    other = _login(http, u["username"], u["password"]).json()["access_token"]
    mine = _login(http, u["username"], u["password"]).json()["access_token"]
    r = http.post("/api/v1/auth/password", headers=auth(mine),
                  json={"old_password": "not-it-at-all", "new_password": "a-new-password"})
    assert r.status_code == 403
    r = http.post("/api/v1/auth/password", headers=auth(mine),
                  json={"old_password": u["password"], "new_password": "a-new-password"})
    assert r.status_code == 200, r.text
    assert http.get("/api/v1/auth/me", headers=auth(other)).status_code == 401
    assert http.get("/api/v1/auth/me", headers=auth(r.json()["access_token"])).status_code == 200


def test_refresh_rotates_and_reuse_revokes_the_login(http, admin_token, auth):
    u = _new_user(http, admin_token, auth)
    first = _login(http, u["username"], u["password"]).json()
    r = http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert http.get("/api/v1/auth/me", headers=auth(second["access_token"])).json()["username"] == u["username"]
    # The first token was used: presenting it again means it leaked; the whole login is revoked.
    assert http.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).status_code == 401
    assert http.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code == 401
    # Another login of the same account is untouched.
    third = _login(http, u["username"], u["password"]).json()
    assert http.post("/api/v1/auth/refresh", json={"refresh_token": third["refresh_token"]}).status_code == 200


def test_logout_revokes_the_refresh_token(http, admin_token, auth):
    u = _new_user(http, admin_token, auth)
    pair = _login(http, u["username"], u["password"]).json()
    assert http.post("/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]}).status_code == 204
    assert http.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    assert http.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"}).status_code == 401


def test_refresh_tokens_are_stored_hashed(http, engine, admin_token, auth):
    u = _new_user(http, admin_token, auth)
    token = _login(http, u["username"], u["password"]).json()["refresh_token"]
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT token_hash FROM refresh_tokens rt JOIN users u ON u.id = rt.user_id "
                                   "WHERE u.username = :u"), {"u": u["username"]}).scalars().all()
    assert len(stored) == 1 and token not in stored[0] and len(stored[0]) == 64


# --- demo accounts ----------------------------------------------------------------------------------------
def test_demo_accounts_log_in_only_in_demo_mode(http, engine, monkeypatch, fresh_ip_limit):
    name = _name("demo")
    with engine.begin() as conn:
        create_user(conn, name, "gridserver-demo", "admin", demo=True)
    assert _login(http, name, "gridserver-demo").status_code == 401
    monkeypatch.setattr(get_settings(), "demo_mode", True)
    r = _login(http, name, "gridserver-demo")
    assert r.status_code == 200
    token = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert http.get("/api/v1/auth/me", headers=token).status_code == 200
    monkeypatch.setattr(get_settings(), "demo_mode", False)  # the same database served for real
    assert http.get("/api/v1/auth/me", headers=token).status_code == 401


def test_gridserver_demo_creates_flagged_demo_accounts(http, engine, small_city, monkeypatch, fresh_ip_limit):
    import pandas as pd

    from gridserver.demo.build import DEMO_PASSWORD, ensure_demo_users

    city = {"district": pd.DataFrame({"code": ["440104"]}), "street": pd.DataFrame({"code": [STREET]}),
            "community": pd.DataFrame({"code": [COMMUNITY]}), "grid": pd.DataFrame({"code": [GRID]})}
    made = ensure_demo_users(engine, city)
    assert ensure_demo_users(engine, city) == made  # idempotent
    names = [u for u, _, _ in made]
    with engine.connect() as conn:
        flags = dict(conn.execute(text("SELECT username, demo FROM users WHERE username = ANY(:u)"), {"u": names}).all())
    assert flags == {n: True for n in names}
    assert _login(http, "admin", DEMO_PASSWORD).status_code == 401  # served for real: refused
    monkeypatch.setattr(get_settings(), "demo_mode", True)
    assert _login(http, "admin", DEMO_PASSWORD).status_code == 200
    with engine.begin() as conn:  # an operator keeps the account but gives it a real password
        set_password(conn, "gridworker", "a-real-password-now")
    monkeypatch.setattr(get_settings(), "demo_mode", False)
    assert _login(http, "gridworker", "a-real-password-now").status_code == 200


def test_cli_unlock_lifts_a_lockout(http, admin_token, auth, fresh_ip_limit):
    from typer.testing import CliRunner

    from gridserver.cli import app

    u = _new_user(http, admin_token, auth)
    for _ in range(users_mod.MAX_FAILURES):
        _login(http, u["username"], "wrong-password")
    assert _login(http, u["username"], u["password"]).status_code == 429
    r = CliRunner().invoke(app, ["users", "unlock", u["username"]])
    assert r.exit_code == 0 and "unlocked" in r.output
    assert _login(http, u["username"], u["password"]).status_code == 200
