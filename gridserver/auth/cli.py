"""``gridserver users``: manage accounts from the shell (same service functions as the API).

Exit codes: 0 ok, 2 bad input (unknown role, bad scope, duplicate or unknown username, weak password).
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Column, Table

from gridserver.auth import users
from gridserver.errors import GridserverError

app = typer.Typer(help="用户与角色 accounts and roles: add, list, change password, disable.",
                  no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

ROLE_HELP = "角色 role: " + ", ".join(f"{k} ({v})" for k, v in users.ROLES.items())


def _fail(exc: GridserverError) -> typer.Exit:
    err_console.print(f"[red]错误 error:[/red] {exc.detail}", highlight=False)
    return typer.Exit(2)


def _ask_password(password: str | None) -> str:
    if password is not None:
        return password
    return typer.prompt("密码 password", hide_input=True, confirmation_prompt=True)


@app.command("add")
def add(
    username: str = typer.Argument(..., help="用户名 username (3-64 letters, digits, _ . @ -)"),
    role: str = typer.Option(..., "--role", "-r", help=ROLE_HELP),
    scope: str = typer.Option(None, "--scope", "-s",
                              help="管辖范围 scope: an admin area code (district 6, street 9, community 12, "
                                   "grid 15 digits); none for admin/analyst = whole city"),
    password: str = typer.Option(None, "--password", "-p",
                                 help="密码 password (8-72 bytes); prompted for when omitted"),
    full_name: str = typer.Option("", "--full-name", help="姓名 full name"),
    department: str = typer.Option(None, "--department", help="所属部门 department (for dept_handler)"),
):
    """新建用户 create an account."""
    from gridserver.db.engine import session_scope

    # Validate the cheap things before prompting for a password.
    try:
        users.check_role(role)
    except GridserverError as exc:
        raise _fail(exc) from None
    try:
        with session_scope() as session:
            users.check_scope(session, role, scope or None)
            if users.get_user(session, username) is not None:
                err_console.print(f"[red]错误 error:[/red] 用户名已存在 username {username!r} already exists",
                                  highlight=False)
                raise typer.Exit(2)
            user = users.create_user(session, username, _ask_password(password), role, scope,
                                     full_name, department)
    except GridserverError as exc:
        raise _fail(exc) from None
    console.print(f"created {user.username} ({user.role} {user.role_label}, "
                  f"scope {user.scope_code or '-'})", highlight=False)


@app.command("list")
def list_(role: str = typer.Option(None, "--role", "-r", help="只看某角色 only this role")):
    """用户列表 list accounts."""
    from gridserver.db.engine import session_scope

    try:
        with session_scope() as session:
            rows = users.list_users(session, role)
    except GridserverError as exc:
        raise _fail(exc) from None
    # usernames and scopes are identifiers: never cut or wrapped, whatever the terminal width
    width = max((len(u.username) for u in rows), default=8)
    table = Table(Column("username", no_wrap=True, min_width=width), "role",
                  Column("scope", no_wrap=True), "full name", "department", "active")
    for u in rows:
        table.add_row(u.username, f"{u.role} {u.role_label}", u.scope_code or "-", u.full_name,
                      u.department or "", "yes" if u.active else "no")
    console.print(table)


@app.command("passwd")
def passwd(
    username: str = typer.Argument(..., help="用户名 username"),
    password: str = typer.Option(None, "--password", "-p", help="新密码 new password; prompted for when omitted"),
):
    """修改密码 set a new password."""
    from gridserver.db.engine import session_scope

    try:
        with session_scope() as session:
            users.require_user(session, username)
            users.set_password(session, username, _ask_password(password))
    except GridserverError as exc:
        raise _fail(exc) from None
    console.print(f"password of {username} changed")


@app.command("disable")
def disable(
    username: str = typer.Argument(..., help="用户名 username"),
    enable: bool = typer.Option(False, "--enable", help="重新启用 re-enable instead"),
):
    """停用账号 disable an account (its tokens stop working at once, for good); --enable lets it log in again."""
    from gridserver.db.engine import session_scope

    try:
        with session_scope() as session:
            user = users.set_active(session, username, enable)
    except GridserverError as exc:
        raise _fail(exc) from None
    console.print(f"{user.username} {'enabled' if user.active else 'disabled'}")


@app.command("unlock")
def unlock(username: str = typer.Argument(..., help="用户名 username")):
    """解除锁定 lift a lockout after too many failed logins."""
    from gridserver.db.engine import session_scope

    with session_scope() as session:
        had = users.unlock(session, username)
    console.print(f"{username} unlocked" if had else f"{username} was not locked")


@app.command("apikey")
def apikey(
    name: str = typer.Argument(..., help="密钥名称 a name for the key (e.g. the client app)"),
    user: str = typer.Option(..., "--user", "-u", help="账号 the account (and role) the key acts as"),
):
    """Open311 API 密钥 issue an Open311 api_key tied to an account; printed once, stored hashed."""
    from gridserver.db.engine import session_scope
    from gridserver.incidents.open311 import issue_key

    try:
        with session_scope() as session:
            key = issue_key(session, name, user)
    except GridserverError as exc:
        raise _fail(exc) from None
    console.print(key, highlight=False)
