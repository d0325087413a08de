"""A caller may call a tool without listing first (a script, a one-shot POST): where the
tool's annotations decide (anonymous and read-only callers), the gateway looks the tool up on
the backend before judging, once per interval whatever names callers make up."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from tests.gateway.conftest import Backend
from tests.gateway.helpers import Gateway, call_modern


@pytest.fixture
async def plain(gateway: Gateway, backend: Backend) -> str:
    """Sign-in optional, no public list: anonymous callers get the read-only tools."""
    await gateway.add_server("plain", port=backend.port, oauth={"required": False})
    return gateway.url("plain")


def listings(backend: Backend) -> int:
    return sum(b"tools/list" in request.body for request in backend.witness.requests)


async def test_a_read_only_tool_is_callable_without_listing_first(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, plain: str
) -> None:
    peek = await call_modern(http, plain, "peek")
    echo = await call_modern(http, plain, "echo", {"text": "write?"})

    assert peek.status_code == 200, peek.text
    assert "nothing changed" in peek.text
    assert echo.status_code == 401
    assert backend.witness.calls["echo"] == 0


async def test_concurrent_first_calls_share_one_look_up(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, plain: str
) -> None:
    answers = await asyncio.gather(*(call_modern(http, plain, "peek") for _ in range(8)))

    assert [answer.status_code for answer in answers] == [200] * 8
    assert listings(backend) == 1


async def test_made_up_tool_names_cost_one_look_up_per_interval(
    gateway: Gateway, backend: Backend, http: httpx2.AsyncClient, plain: str
) -> None:
    for number in range(20):
        answer = await call_modern(http, plain, f"no_such_tool_{number}")
        assert answer.status_code in (400, 401)

    assert listings(backend) == 1
