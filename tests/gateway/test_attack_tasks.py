"""Attacks on task ids (SEP-2663 through the gateway, ``atrium.gateway.tasks``) beyond those of
test_tasks_binding.py: ids forged, tampered with, oversized, or sealed for another purpose (the
caller's own session id), and tasks asked for through a one-shot call, which never hands out
an id. A passing test documents a defence."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import httpx2
import orjson
import pytest

from tests.gateway.helpers import Gateway, legacy_session
from tests.gateway.test_one_shot import post
from tests.gateway.test_tasks_binding import (  # noqa: F401  (fixtures used here)
    answer,
    bearer,
    create_task,
    everything,
    rpc,
    tasks_requests,
    tasks_url,
)

Witnessed = tuple[int, object]


def _tampered(sealed: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "forge",
    ["random", "tampered", "truncated", "oversized", "not-base64", "empty"],
)
async def test_a_forged_task_id_finds_no_task_and_reaches_no_backend(
    gateway: Gateway,
    everything: Witnessed,  # noqa: F811
    http: httpx2.AsyncClient,
    tasks_url: str,  # noqa: F811
    forge: str,
) -> None:
    alice = bearer(gateway, "alice")
    sealed = await create_task(http, tasks_url, alice)
    before = len(tasks_requests(everything[1]))  # type: ignore[arg-type]
    forged = {
        "random": base64.urlsafe_b64encode(secrets.token_bytes(60)).rstrip(b"=").decode(),
        "tampered": _tampered(sealed),
        "truncated": sealed[:-4],
        "oversized": sealed * 40,
        "not-base64": sealed[:10] + "!/+" + sealed[13:],
        "empty": "",
    }[forge]

    response = await rpc(http, tasks_url, "tasks/get", {"taskId": forged}, alice)

    assert answer(response)["error"]["code"] == -32602
    assert len(tasks_requests(everything[1])) == before  # type: ignore[arg-type]


async def test_the_callers_own_session_id_is_no_task_id(
    gateway: Gateway,
    everything: Witnessed,  # noqa: F811
    http: httpx2.AsyncClient,
    tasks_url: str,  # noqa: F811
) -> None:
    alice = bearer(gateway, "alice")
    session = await legacy_session(http, tasks_url, alice)
    before = len(tasks_requests(everything[1]))  # type: ignore[arg-type]

    response = await rpc(http, tasks_url, "tasks/get", {"taskId": session}, alice)

    assert answer(response)["error"]["code"] == -32602
    assert len(tasks_requests(everything[1])) == before  # type: ignore[arg-type]


async def test_tasks_list_is_refused_whoever_asks(
    gateway: Gateway,
    everything: Witnessed,  # noqa: F811
    http: httpx2.AsyncClient,
    tasks_url: str,  # noqa: F811
) -> None:
    admin = bearer(gateway, "root", "admin")

    listed = await rpc(http, tasks_url, "tasks/list", {}, admin)
    bare = await post(http, tasks_url, {"jsonrpc": "2.0", "id": 1, "method": "tasks/list"}, admin)

    assert answer(listed)["error"]["code"] == -32601
    assert bare.status_code in (400, 404)
    assert tasks_requests(everything[1]) == []  # type: ignore[arg-type]


async def test_a_one_shot_call_asking_for_a_task_never_gets_a_backend_task_id(
    gateway: Gateway,
    everything: Witnessed,  # noqa: F811
    http: httpx2.AsyncClient,
    tasks_url: str,  # noqa: F811
) -> None:
    alice = bearer(gateway, "alice")
    meta: dict[str, Any] = {
        "io.modelcontextprotocol/clientCapabilities": {
            "extensions": {"io.modelcontextprotocol/tasks": {}}
        }
    }
    params = {
        "name": "slow_compute",
        "arguments": {"seconds": 0.1, "label": "one-shot"},
        "_meta": meta,
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}

    response = await http.post(
        tasks_url, content=orjson.dumps(body), headers={"Content-Type": "application/json", **alice}
    )

    result = response.json().get("result", {})
    # Answered in one go: the gateway declares no tasks extension upstream for a one-shot.
    assert response.status_code == 200, response.text
    assert result.get("resultType") != "task"
    assert "taskId" not in result
