"""Accounts and roles (用户与角色): create, authenticate, read, change password, disable.

Every function takes a SQLAlchemy Connection or Session (anything with ``.execute(text)``) and
does not commit: the caller owns the transaction.

Roles and the area level their scope must be (codes are prefix-hierarchical, so a scope covers
every code that starts with it):

=====================  ==========================  =================================
role                   scope                       meaning
=====================  ==========================  =================================
admin                  optional (none = city)      manages accounts; reads/writes all
district_operator      a district code (6 digits)  区级指挥中心
street_operator        a street code (9)           街道
community_operator     a community code (12)       社区
grid_worker            a grid code (15)            网格员
dept_handler           any area code               职能部门处置人员
analyst                optional (none = city)      read-only 分析
citizen                none                        公众上报
=====================  ==========================  =================================
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from gridserver.auth.security import dummy_hash, hash_password, verify_password
from gridserver.errors import Conflict, GridserverError, InvalidInput, NotFound

ROLES: dict[str, str] = {
    "admin": "系统管理员",
    "district_operator": "区级操作员",
    "street_operator": "街道操作员",
    "community_operator": "社区操作员",
    "grid_worker": "网格员",
    "dept_handler": "部门处置人员",
    "analyst": "分析人员",
    "citizen": "公众",
}
#: Roles that may have no scope; admin/analyst without one cover the whole city.
UNSCOPED_ROLES = ("admin", "analyst", "citizen")
#: Roles whose scope must be an area of exactly this level.
SCOPE_LEVEL = {
    "district_operator": "district",
    "street_operator": "street",
    "community_operator": "community",
    "grid_worker": "grid",
}

_USERNAME = re.compile(r"^[\w.@-]{3,64}$")
_COLUMNS = "id, username, full_name, role, scope_code, department, active, created_at, token_version, demo"


@dataclass(frozen=True)
class User:
    id: int
    username: str
    full_name: str
    role: str
    scope_code: str | None
    department: str | None
    active: bool
    created_at: datetime
    #: Bumped by a password change or disable; tokens carrying an older version are refused.
    token_version: int = 0
    #: Created by ``gridserver demo`` with the published password: may log in only in demo mode.
    demo: bool = False

    @property
    def role_label(self) -> str:
        return ROLES.get(self.role, self.role)

    def public(self) -> dict:
        """JSON-safe view (no password hash ever leaves this module)."""
        out = asdict(self)
        out.pop("token_version")
        out["role_label"] = self.role_label
        return out


def _user(row) -> User | None:
    return User(**dict(row._mapping)) if row is not None else None


def check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidInput(f"未知角色 unknown role {role!r}; valid roles: {', '.join(ROLES)}")


def check_scope(conn, role: str, scope_code: str | None) -> None:
    """Scope must be a current admin area code whose level fits the role (None only where allowed)."""
    if scope_code is None:
        if role not in UNSCOPED_ROLES:
            raise InvalidInput(f"角色 {role} 必须指定管辖范围 role {role!r} needs a scope: "
                               f"a current {SCOPE_LEVEL.get(role, 'admin area')} code")
        return
    if role == "citizen":
        raise InvalidInput("公众账号没有管辖范围 citizens have no scope; leave scope_code empty")
    row = conn.execute(text("SELECT level, name FROM admin_areas WHERE code = :c AND valid_to IS NULL"),
                       {"c": scope_code}).first()
    if row is None:
        raise InvalidInput(f"管辖范围不存在 scope {scope_code!r} is not a current admin area or grid code")
    want = SCOPE_LEVEL.get(role)
    if want and row.level != want:
        raise InvalidInput(f"角色 {role} 的管辖范围应为 {want} 级 role {role!r} needs a {want} code as scope, "
                           f"but {scope_code} ({row.name}) is a {row.level}")


def create_user(conn, username: str, password: str, role: str, scope_code: str | None = None,
                full_name: str = "", department: str | None = None, *, demo: bool = False) -> User:
    """Create an active account after validating username, password policy, role and scope.

    Raises InvalidInput (422) for bad values and Conflict (409) when the username is taken.
    """
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise InvalidInput(f"用户名无效 invalid username {username!r}: 3-64 letters, digits, '_', '.', '@' or '-'")
    check_role(role)
    scope_code = scope_code or None
    check_scope(conn, role, scope_code)
    if get_user(conn, username) is not None:
        raise Conflict(f"用户名已存在 username {username!r} already exists")
    password_hash = hash_password(password)
    try:
        row = conn.execute(
            text(f"""INSERT INTO users (username, password_hash, full_name, role, scope_code, department, demo)
                     VALUES (:u, :h, :f, :r, :s, :d, :demo) RETURNING {_COLUMNS}"""),
            {"u": username, "h": password_hash, "f": full_name or "", "r": role, "s": scope_code,
             "d": department, "demo": demo},
        ).first()
    except IntegrityError:  # lost a race with a concurrent insert of the same name
        raise Conflict(f"用户名已存在 username {username!r} already exists") from None
    return _user(row)


def get_user(conn, username: str) -> User | None:
    """The account with this username (active or not), or None."""
    return _user(conn.execute(text(f"SELECT {_COLUMNS} FROM users WHERE username = :u"), {"u": username}).first())


def require_user(conn, username: str) -> User:
    """Like get_user, but NotFound (404) when there is no such account."""
    user = get_user(conn, username)
    if user is None:
        raise NotFound(f"用户不存在 no user named {username!r}")
    return user


#: Consecutive failed logins (within LOCK_MINUTES of each other) that lock a username.
MAX_FAILURES = 5
LOCK_MINUTES = 15


class AccountLocked(GridserverError):
    """Too many failed logins for this username: 429 until ``retry_after`` seconds have passed."""

    status, code = 429, "account_locked"

    def __init__(self, username: str, retry_after: int):
        super().__init__(f"登录失败次数过多，账号已锁定 too many failed logins for {username!r}: locked for "
                         f"{retry_after} more seconds ({MAX_FAILURES} failures lock an account for "
                         f"{LOCK_MINUTES} minutes)")
        self.retry_after = retry_after


def lock_remaining(conn, username: str) -> int:
    """Seconds the username stays locked (0 when it is not locked)."""
    left = conn.execute(text("SELECT ceil(extract(epoch FROM locked_until - now())) FROM login_failures "
                             "WHERE username = :u AND locked_until > now()"), {"u": username}).scalar()
    return int(left or 0)


def record_failure(conn, username: str) -> int:
    """Count a failed login for ``username`` (known or not); the MAX_FAILURES-th locks it. Returns the count.

    Failures further apart than LOCK_MINUTES start a new count, and so does a lock that has run out.
    Atomic: concurrent failures are all counted.
    """
    return conn.execute(text(
        """INSERT INTO login_failures AS f (username, failures, last_failed_at) VALUES (:u, 1, now())
           ON CONFLICT (username) DO UPDATE SET
               failures = CASE WHEN f.last_failed_at < now() - make_interval(mins => :mins)
                                    OR f.locked_until <= now() THEN 1 ELSE f.failures + 1 END,
               last_failed_at = now(),
               locked_until = CASE WHEN (CASE WHEN f.last_failed_at < now() - make_interval(mins => :mins)
                                                   OR f.locked_until <= now() THEN 1 ELSE f.failures + 1 END) >= :max
                                   THEN now() + make_interval(mins => :mins) END
           RETURNING failures"""), {"u": username, "max": MAX_FAILURES, "mins": LOCK_MINUTES}).scalar()


def unlock(conn, username: str) -> bool:
    """Forget failed logins of a username (an admin unlocking it); True when there were any."""
    return conn.execute(text("DELETE FROM login_failures WHERE username = :u"), {"u": username}).rowcount > 0


def authenticate(conn, username: str, password: str, *, demo_mode: bool = False) -> User | None:
    """The active account matching username and password, else None (never says which part was wrong).

    * A locked username raises AccountLocked (429) without checking the password.
    * The bcrypt check always runs — against a dummy hash for unknown, disabled or (outside demo
      mode) demo accounts — so the time taken does not reveal which usernames exist.
    * A failure is recorded (``login_failures``, per username); the caller must commit it even
      though the login fails. Success clears the count.
    """
    left = lock_remaining(conn, username)
    if left > 0:
        raise AccountLocked(username, left)
    row = conn.execute(text(f"SELECT {_COLUMNS}, password_hash FROM users WHERE username = :u"),
                       {"u": username}).first()
    usable = row is not None and row.active and (demo_mode or not row.demo)
    ok = verify_password(password, row.password_hash if usable else dummy_hash()) and usable
    if not ok:
        record_failure(conn, username)
        return None
    conn.execute(text("DELETE FROM login_failures WHERE username = :u"), {"u": username})
    data = dict(row._mapping)
    data.pop("password_hash")
    return User(**data)


def list_users(conn, role: str | None = None) -> list[User]:
    """All accounts ordered by username, optionally only one role."""
    if role is not None:
        check_role(role)
    rows = conn.execute(
        text(f"SELECT {_COLUMNS} FROM users WHERE (CAST(:r AS text) IS NULL OR role = :r) ORDER BY username"),
        {"r": role},
    ).all()
    return [_user(r) for r in rows]


def revoke_tokens(conn, user_id: int) -> None:
    """Invalidate every access and refresh token of an account (its token version moves on)."""
    conn.execute(text("UPDATE users SET token_version = token_version + 1 WHERE id = :id"), {"id": user_id})
    conn.execute(text("UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = :id AND revoked_at IS NULL"),
                 {"id": user_id})


def set_password(conn, username: str, password: str) -> User:
    """Replace the password of an existing account; every token issued before stops working."""
    user = require_user(conn, username)
    conn.execute(text("UPDATE users SET password_hash = :h, password_changed_at = now(), demo = false "
                      "WHERE id = :id"), {"h": hash_password(password), "id": user.id})
    revoke_tokens(conn, user.id)
    return require_user(conn, username)


def set_active(conn, username: str, active: bool) -> User:
    """Enable or disable an account; a disabled account cannot log in and its tokens stop working
    (for good: re-enabling does not revive them)."""
    user = require_user(conn, username)
    row = conn.execute(text(f"UPDATE users SET active = :a WHERE id = :id RETURNING {_COLUMNS}"),
                       {"a": active, "id": user.id}).first()
    if not active:
        revoke_tokens(conn, user.id)
        row = conn.execute(text(f"SELECT {_COLUMNS} FROM users WHERE id = :id"), {"id": user.id}).first()
    return _user(row)
