"""``/admin/users`` and ``/admin/clients`` (admins only): users created, disabled or enabled,
given a role; OAuth clients listed with their last use, revoked, their secret rotated.

The same rules as ``atrium admin users|clients`` (``cli/admin.py``, ``cli/admin_clients.py``),
on the same store calls: a role that grants fewer scopes, or disabling, ends the user's tokens
(``revoke_subject``) and sessions; the gateway this console runs in reloads its revocation list
before the answer, so the very next request of that user is refused. A password or a client
secret made here is shown once, on the answer to the form, and stored only as a hash.
An admin cannot disable or demote themselves here: the console would lock them out mid-page
(the CLI still can).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from atrium.auth.hashing import hash_password
from atrium.auth.issuing import rotate_client_secret
from atrium.auth.revocation_list import revoke_subject
from atrium.auth.roles import ADMIN
from atrium.errors import AtriumError
from atrium.gateway.parts import GatewayParts
from atrium.store import AlreadyExists, UserRecord
from atrium.web.guard import Refused, not_found
from atrium.web.render import page
from atrium.web.session import Viewer

MIN_PASSWORD = 8
MAX_USERNAME = 255
OVERLAPS = {"0": timedelta(0), "1h": timedelta(hours=1), "24h": timedelta(hours=24)}


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


class PeoplePages:
    def __init__(self, parts: GatewayParts) -> None:
        self.parts = parts
        self.roles = parts.auth.roles

    async def users(self, request: Request, viewer: Viewer) -> Response:
        return await self._users(viewer, notice=request.query_params.get("notice"))

    async def _users(self, viewer: Viewer, status: int = 200, **context: Any) -> Response:
        records = sorted(await self.parts.store.users.list(), key=lambda u: u.username)
        return page(
            "users.html",
            status,
            viewer=viewer,
            nav="users",
            users=records,
            roles=self.roles.names,
            **context,
        )

    async def create(self, request: Request, viewer: Viewer) -> Response:
        form = await request.form()
        username, role = _text(form, "username").strip(), _text(form, "role")
        password = _text(form, "password")
        problem = self._user_problem(username, role, password)
        if problem is None:
            generated = "" if password else secrets.token_urlsafe(12)
            record = UserRecord(
                id=uuid.uuid4().hex,
                username=username,
                password_hash=hash_password(password or generated),
                role=role,
            )
            try:
                await self.parts.store.users.add(record)
            except AlreadyExists:
                problem = f"username: user {username!r} already exists"
            else:
                return await self._users(
                    viewer, 201, notice=f"user {username} created", generated=generated
                )
        return await self._users(viewer, 422, problem=problem, draft=username)

    def _user_problem(self, username: str, role: str, password: str) -> str | None:
        if not username or len(username) > MAX_USERNAME or not username.isprintable():
            return f"username: 1-{MAX_USERNAME} printable characters"
        if not self.roles.known(role):
            return f"role: unknown role; known: {', '.join(self.roles.names)}"
        if password and len(password) < MIN_PASSWORD:
            return f"password: at least {MIN_PASSWORD} characters, or empty to generate one"
        return None

    async def _user(self, request: Request) -> UserRecord:
        username = request.path_params["username"]
        record = await self.parts.store.users.by_username(username)
        if record is None:
            raise not_found(f"User '{username}'")
        return record

    async def set_role(self, request: Request, viewer: Viewer) -> Response:
        record = await self._user(request)
        role = _text(await request.form(), "role")
        if not self.roles.known(role):
            raise Refused(422, "arguments", f"role: unknown; known: {', '.join(self.roles.names)}")
        if record.id == viewer.user.id and ADMIN not in self.roles.scopes_of(role):
            raise Refused(409, "conflict", "You cannot take your own admin role here.")
        await self.parts.store.users.set_role(record.username, role)
        old = self.roles.scopes_of(record.role)
        if not self.roles.known(record.role) or old - self.roles.scopes_of(role):
            await revoke_subject(self.parts.store, record.id, revoke_refresh=False)
        await self.parts.reload_auth()
        return _back("/admin/users", f"{record.username} is now {role}")

    async def set_disabled(self, request: Request, viewer: Viewer) -> Response:
        action = request.path_params["action"]
        if action not in ("disable", "enable"):
            raise not_found(f"Action '{action}'")
        record = await self._user(request)
        disabled = action == "disable"
        if record.id == viewer.user.id and disabled:
            raise Refused(409, "conflict", "You cannot disable yourself here.")
        await self.parts.store.users.set_disabled(record.username, disabled)
        if disabled:
            await revoke_subject(self.parts.store, record.id, revoke_refresh=True)
        await self.parts.reload_auth()
        word = "disabled" if disabled else "enabled"
        return _back("/admin/users", f"{record.username} {word}")

    async def clients(self, request: Request, viewer: Viewer) -> Response:
        records = await self.parts.store.clients.list()
        records.sort(key=lambda c: (c.revoked_at is not None, c.kind, c.name or "", c.client_id))
        return page(
            "clients.html",
            viewer=viewer,
            nav="clients",
            clients=records,
            overlaps=list(OVERLAPS),
            notice=request.query_params.get("notice"),
        )

    async def revoke(self, request: Request, viewer: Viewer) -> Response:
        client_id = request.path_params["client_id"]
        if not await self.parts.store.clients.revoke(client_id):
            raise not_found(f"Client '{client_id}'")
        return _back("/admin/clients", f"{client_id} revoked")

    async def rotate(self, request: Request, viewer: Viewer) -> Response:
        client_id = request.path_params["client_id"]
        overlap = _text(await request.form(), "overlap") or "24h"
        if overlap not in OVERLAPS:
            raise Refused(422, "arguments", f"overlap: one of {', '.join(OVERLAPS)}")
        try:
            rotated = await rotate_client_secret(self.parts.store, client_id, OVERLAPS[overlap])
        except AtriumError as error:
            raise Refused(409, "conflict", str(error)) from None
        return page("client_secret.html", viewer=viewer, nav="clients", rotated=rotated)


def _back(path: str, notice: str) -> Response:
    return RedirectResponse(f"{path}?{urlencode({'notice': notice})}", status_code=303)
