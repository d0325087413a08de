"""The console on a real gateway: uvicorn on a loopback port that is also the public URL and
the gateway's own port (the console reaches the gateway's MCP endpoint there, as the CLI
does), servers routed to the toolkit test backend, and one user per role.

``Console.browser(role)`` signs in the way a person does, through the authorization server's
own pages: the console's sign-in redirect, the login form, the consent form, the callback.
"""

from __future__ import annotations

import functools
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from atrium.auth.hashing import hash_password
from atrium.settings import Settings, load_settings
from atrium.store import Store, UserRecord
from tests.ai.project import KEY_VARIABLE
from tests.auth.flow import PASSWORD, form_action, form_fields
from tests.gateway.conftest import Backend, backend  # noqa: F401  (a fixture used here)
from tests.gateway.helpers import Gateway, running_gateway, server_record

ROLES = ("admin", "user", "reader")
XSS = "<script>alert('x')</script>"
WEB_SERVERS: dict[str, dict[str, Any]] = {
    "tools": {"oauth": {"required": True}, "description": "The test backend"},
    "hidden": {"oauth": {"required": True}, "display_in_web": False},
    "marked": {"oauth": {"required": True}, "description": f"Shown as text: {XSS}"},
}


@functools.cache
def _hashed() -> str:
    return hash_password(PASSWORD)


@dataclass
class Console:
    gateway: Gateway
    users: dict[str, UserRecord] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.gateway.base

    @asynccontextmanager
    async def browser(self, role: str | None = None) -> AsyncIterator[httpx2.AsyncClient]:
        """A cookie-keeping client, signed in as the user named ``role`` unless ``None``."""
        async with httpx2.AsyncClient(base_url=self.base, timeout=30) as http:
            if role is not None:
                await sign_in(http, role)
            yield http


async def sign_in(http: httpx2.AsyncClient, username: str, next_path: str = "/admin") -> None:
    start = await http.get(next_path, follow_redirects=True)  # ends on the login page
    assert start.status_code == 200, start.text
    assert 'name="password"' in start.text, start.text
    consent = await submit(http, start, username=username, password=PASSWORD)
    assert consent.status_code == 200, consent.text
    back = await submit(http, consent, decision="approve")
    assert back.status_code == 303, back.text
    landed = await http.get(back.headers["location"], follow_redirects=True)
    assert landed.status_code == 200, landed.text


async def submit(http: httpx2.AsyncClient, page: httpx2.Response, **values: str) -> httpx2.Response:
    fields = {**form_fields(page.text), **values}
    return await http.post(str(page.url.join(form_action(page.text))), data=fields)


def csrf_of(page: httpx2.Response) -> str:
    return form_fields(page.text)["csrf"]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
def settings(tmp_path: Path, listener: socket.socket) -> Settings:
    port = listener.getsockname()[1]
    (tmp_path / "atrium.yaml").write_text(
        f"gateway:\n  port: {port}\n  public_url: http://127.0.0.1:{port}\n"
    )
    # The model API key of the agents' provider fake (tests/ai/project.py), read at a run.
    return load_settings(tmp_path, environ={KEY_VARIABLE: "sk-test"})


@pytest.fixture
def more_servers() -> dict[str, dict[str, Any]]:
    """Servers routed besides ``WEB_SERVERS``, each with its port: none unless a module says."""
    return {}


@pytest.fixture
async def console(
    settings: Settings,
    backend: Backend,  # noqa: F811
    listener: socket.socket,
    more_servers: dict[str, dict[str, Any]],
) -> AsyncIterator[Console]:
    async with await Store.open(settings) as store:
        records = [
            server_record(name, {"port": backend.port, **extra})
            for name, extra in WEB_SERVERS.items()
        ]
        records += [server_record(name, extra) for name, extra in more_servers.items()]
        await store.servers.save(records)
        users = {}
        for role in ROLES:
            user = UserRecord(
                id=uuid.uuid4().hex, username=role, password_hash=_hashed(), role=role
            )
            await store.users.add(user)
            users[role] = user
        async with running_gateway(settings, store, listener) as running:
            yield Console(running, users)
