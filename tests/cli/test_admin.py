"""``atrium admin``: users, confidential clients and tokens; ``init`` creates the first admin.

Secrets are shown once and stored only as hashes; refusals exit non-zero and change nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from joserfc import jwt

from atrium.auth.hashing import password_matches, token_matches
from atrium.auth.keys import KeySet
from atrium.settings import load_settings
from atrium.store import Store
from tests.cli.helpers import run_atrium


def project(tmp_path: Path) -> tuple[Path, str]:
    """An initialised project and its first admin's password."""
    result = run_atrium("init", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    found = re.search(r"password \(shown once\): (\S+)", result.stdout)
    assert found, result.stdout
    return tmp_path, found[1]


def admin(root: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    import io
    import sys

    saved = sys.stdin
    sys.stdin = io.StringIO(stdin or "")
    try:
        result = run_atrium("--project", str(root), "admin", *args)
    finally:
        sys.stdin = saved
    return result.exit_code, result.stdout, result.stderr


def stored_users(root: Path) -> dict[str, tuple[str, str, bool]]:
    async def read() -> dict[str, tuple[str, str, bool]]:
        async with await Store.open(load_settings(root, environ={})) as store:
            return {
                u.username: (u.password_hash, u.role, u.disabled) for u in await store.users.list()
            }

    return asyncio.run(read())


def test_init_creates_one_admin_whose_password_is_stored_hashed(tmp_path: Path) -> None:
    root, password = project(tmp_path)

    users = stored_users(root)
    assert list(users) == ["admin"]
    hashed, role, _ = users["admin"]
    assert role == "admin"
    assert password not in hashed
    assert password_matches(password, hashed)
    again = run_atrium("init", str(root))
    assert "password (shown once)" not in again.stdout
    assert stored_users(root) == users


def test_a_user_is_created_listed_given_a_role_and_disabled(tmp_path: Path) -> None:
    root, _ = project(tmp_path)

    code, out, err = admin(
        root,
        "users",
        "create",
        "ada",
        "--role",
        "reader",
        "--password-stdin",
        stdin="a long password\n",
    )
    assert code == 0, err
    assert admin(root, "users", "set-role", "ada", "user")[0] == 0
    assert admin(root, "users", "disable", "ada")[0] == 0
    code, out, _ = admin(root, "users", "list", "--json")
    rows = {row["username"]: row for row in json.loads(out)}
    assert rows["ada"]["role"] == "user"
    assert rows["ada"]["disabled"] is True
    assert password_matches("a long password", stored_users(root)["ada"][0])


def test_refused_user_commands_change_nothing(tmp_path: Path) -> None:
    root, _ = project(tmp_path)
    before = stored_users(root)

    assert admin(root, "users", "create", "admin")[0] == 2  # exists already
    assert admin(root, "users", "create", "bob", "--role", "wizard")[0] == 2
    assert admin(root, "users", "set-role", "nobody", "user")[0] == 1
    assert admin(root, "users", "set-role", "admin", "wizard")[0] == 2
    assert admin(root, "users", "create", "eve", "--password-stdin", stdin="short\n")[0] == 2
    assert stored_users(root) == before


def test_a_confidential_client_secret_is_shown_once_and_stored_hashed(tmp_path: Path) -> None:
    root, _ = project(tmp_path)

    code, out, err = admin(root, "clients", "create", "billing bot", "--scope", "tools:read")
    assert code == 0, err
    client_id = re.search(r"client_id:\s+(\S+)", out)
    secret = re.search(r"client_secret:\s+(\S+)", out)
    assert client_id
    assert secret
    code, shown, _ = admin(root, "clients", "show", client_id[1])
    assert secret[1] not in shown
    assert json.loads(shown)["grant_types"] == ["client_credentials"]

    async def stored_hash() -> str | None:
        async with await Store.open(load_settings(root, environ={})) as store:
            record = await store.clients.get(client_id[1])
            return record.secret_hash if record else None

    hashed = asyncio.run(stored_hash())
    assert hashed is not None
    assert token_matches(secret[1], hashed)
    assert admin(root, "clients", "revoke", client_id[1])[0] == 0
    assert json.loads(admin(root, "clients", "show", client_id[1])[1])["revoked"] is True
    assert admin(root, "clients", "create", "x", "--scope", "no-such-scope")[0] == 2
    assert admin(root, "clients", "show", "cc_unknown")[0] == 1


def test_an_issued_token_is_for_one_user_and_one_server(tmp_path: Path) -> None:
    root, _ = project(tmp_path)
    settings = load_settings(root, environ={})

    code, out, err = admin(
        root, "token", "issue", "--user", "admin", "--server", "atrium", "--scopes", "admin"
    )
    assert code == 0, err
    claims = jwt.decode(out.strip(), KeySet.load(settings.state_dir).signing).claims
    assert claims["aud"] == settings.endpoint_for("atrium")
    assert claims["scope"] == "admin"
    assert claims["iss"] == settings.issuer
    assert admin(root, "token", "issue", "--user", "admin", "--server", "nope")[0] == 1
    assert admin(root, "token", "issue", "--user", "ghost", "--server", "atrium")[0] == 1
    admin(root, "users", "create", "ada", "--role", "reader")
    refused = admin(
        root, "token", "issue", "--user", "ada", "--server", "atrium", "--scopes", "admin"
    )
    assert refused[0] == 2


def test_user_commands_revoke_what_the_user_holds_with_no_atrium_running(tmp_path: Path) -> None:
    root, _ = project(tmp_path)
    for name in ("ada", "bob", "cy", "dee"):
        assert admin(root, "users", "create", name, "--role", "user")[0] == 0
    ids = asyncio.run(user_ids(root))

    outcomes = [
        admin(root, "users", "disable", "ada"),
        admin(root, "users", "delete", "bob"),
        admin(root, "users", "set-password", "cy", "--password-stdin", stdin="a long password\n"),
        admin(root, "users", "set-role", "dee", "admin"),  # more scopes: nothing to revoke
    ]

    assert [(code, err) for code, _, err in outcomes] == [(0, "")] * 4  # no gateway: no warning
    assert "bob" not in stored_users(root)
    assert set(asyncio.run(subject_revocations(root))) == {ids["ada"], ids["bob"], ids["cy"]}
    assert admin(root, "users", "delete", "bob")[0] == 1


async def subject_revocations(root: Path) -> dict[str, object]:
    async with await Store.open(load_settings(root, environ={})) as store:
        return dict(await store.grants.active_subject_revocations())


async def user_ids(root: Path) -> dict[str, str]:
    async with await Store.open(load_settings(root, environ={})) as store:
        return {u.username: u.id for u in await store.users.list()}


def test_token_revoke_takes_a_token_or_a_jti_and_refuses_anything_else(tmp_path: Path) -> None:
    root, _ = project(tmp_path)
    _, out, _ = admin(root, "token", "issue", "--user", "admin", "--server", "atrium")
    jti = str(jwt.decode(out.strip(), KeySet.load(root / ".atrium").signing).claims["jti"])

    by_token = admin(root, "token", "revoke", out.strip())
    by_jti = admin(root, "token", "revoke", "some-jti")
    forged = admin(root, "token", "revoke", out.strip()[:-6] + "AAAAAA")

    assert by_token[0] == by_jti[0] == 0
    assert forged[0] == 2

    async def revoked() -> dict[str, str]:
        async with await Store.open(load_settings(root, environ={})) as store:
            return dict(await store.grants.active_revocations())

    assert asyncio.run(revoked()) == {jti: "jti", "some-jti": "jti"}


def test_a_token_longer_than_thirty_days_is_not_issued(tmp_path: Path) -> None:
    root, _ = project(tmp_path)

    longest = admin(
        root, "token", "issue", "--user", "admin", "--server", "atrium", "--ttl", "2592000"
    )
    longer = admin(
        root, "token", "issue", "--user", "admin", "--server", "atrium", "--ttl", "2592001"
    )

    assert (longest[0], longer[0]) == (0, 2)
