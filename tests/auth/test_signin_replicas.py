"""The sign-in throttle across two gateway replicas sharing one store and one Redis, played
through the sign-in form: guesses spread over the replicas count once, an address that
hammers one user locks out nobody who signs in from elsewhere, and a forged
``X-Forwarded-For`` from a peer that is not a trusted proxy changes nothing."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest

from atrium.settings import Settings, load_settings
from atrium.store import Store, UserRecord
from tests.auth.conftest import _hashed
from tests.auth.flow import OAUTH, PASSWORD, Browser, Pkce, authorize_url, form_fields
from tests.auth.flow import register_client as registered
from tests.gateway.helpers import Gateway, running_gateway

pytestmark = pytest.mark.redis


@pytest.fixture
def trusted_proxies() -> list[str]:
    """``gateway.trusted_proxies``; a test sets it with ``parametrize``."""
    return ["127.0.0.1"]


@pytest.fixture
def replica_settings(
    settings: Settings, redis_url: str, redis_prefix: str, trusted_proxies: list[str]
) -> Settings:
    """The auth tests' settings with a shared Redis and, maybe, a trusted proxy."""
    text = settings.settings_file.read_text()
    proxies = f"  trusted_proxies: {trusted_proxies}\n" if trusted_proxies else ""
    text = text.replace("gateway:\n", "gateway:\n" + proxies, 1)
    text += f"redis:\n  url: {redis_url}\n  key_prefix: {redis_prefix}\n"
    settings.settings_file.write_text(text)
    return load_settings(settings.project_dir, environ={})


@pytest.fixture
async def replicas(
    replica_settings: Settings, listener: socket.socket
) -> AsyncIterator[list[Gateway]]:
    """Two gateways over one store and one Redis: users ``user`` and ``admin``."""
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(await Store.open(replica_settings))
        for role in ("admin", "user"):
            await store.users.add(
                UserRecord(id=uuid.uuid4().hex, username=role, password_hash=_hashed(), role=role)
            )
        first = await stack.enter_async_context(running_gateway(replica_settings, store, listener))
        second = await stack.enter_async_context(running_gateway(replica_settings, store))
        yield [first, second]


@dataclass
class Visitor:
    """A browser behind a proxy, and a client registered at the first replica (known to both)."""

    browser: Browser
    client_id: str

    async def sign_in(
        self, replica: Gateway, username: str, password: str, forwarded_for: str
    ) -> int:
        """A sign-in at ``replica`` through a proxy that says the client is ``forwarded_for``."""
        url = authorize_url(replica.base, self.client_id, Pkce.new())
        login = await self.browser.authorize_url(url)
        fields = {**form_fields(login.text), "username": username, "password": password}
        response = await self.browser.http.post(
            f"{replica.base}{OAUTH}/login", data=fields, headers={"X-Forwarded-For": forwarded_for}
        )
        return response.status_code


@pytest.fixture
async def visitor(replicas: list[Gateway]) -> AsyncIterator[Visitor]:
    async with Browser.open(replicas[0].base) as browser:
        client = await registered(browser.http, replicas[0].base)
        yield Visitor(browser, client["client_id"])


async def test_guesses_spread_over_two_replicas_count_once(
    replicas: list[Gateway], visitor: Visitor
) -> None:
    for n in range(10):  # five at each replica, each at another name
        replica = replicas[n % 2]
        assert await visitor.sign_in(replica, f"victim{n}", "guess", "203.0.113.1") == 401

    statuses = [await visitor.sign_in(r, "user", PASSWORD, "203.0.113.1") for r in replicas]

    assert statuses == [429, 429]
    # Two authorization servers, so the counts met in Redis, not in one object.
    assert replicas[0].parts.auth.signins is not replicas[1].parts.auth.signins


async def test_an_address_hammering_a_user_locks_out_no_one_signing_in_from_elsewhere(
    replicas: list[Gateway], visitor: Visitor
) -> None:
    hammered = [
        await visitor.sign_in(replicas[n % 2], "user", f"guess{n}", "203.0.113.66")
        for n in range(25)
    ]

    assert hammered.count(401) == 10
    assert hammered.count(429) == 15
    assert await visitor.sign_in(replicas[1], "user", PASSWORD, "198.51.100.2") == 200
    assert await visitor.sign_in(replicas[0], "admin", PASSWORD, "198.51.100.3") == 200


@pytest.mark.parametrize("trusted_proxies", [[]])
async def test_a_forged_forwarded_address_from_an_untrusted_peer_dodges_nothing(
    replicas: list[Gateway], visitor: Visitor
) -> None:
    for n in range(10):  # each "from" another address, at another name, at another replica
        forged = f"198.51.100.{n}"
        assert await visitor.sign_in(replicas[n % 2], f"victim{n}", "guess", forged) == 401

    statuses = [await visitor.sign_in(r, "user", PASSWORD, "192.0.2.99") for r in replicas]

    assert statuses == [429, 429]
