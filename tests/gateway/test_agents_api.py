"""The agents API on a real gateway in this process (uvicorn on loopback, SQLite): who may call
it, what it refuses and how, and a run as server-sent events against a model API fake.

Tokens come from the gateway's own issuer; the end-to-end test (tests/e2e/test_agents_http.py)
gets its token by the OAuth flow and runs a hosted tool.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette

from atrium.auth.access_tokens import TokenIssuer
from atrium.auth.revocation_list import revoke_subject
from atrium.client.dpop import generate_key, make_proof
from atrium.gateway.agents_api import agents_routes
from atrium.gateway.agents_wire import RunSlots
from atrium.settings import load_settings
from atrium.store import Store
from tests.ai.project import KEY_VARIABLE, write_agent, write_ai_config
from tests.ai.providers_fake import OpenAIChatFake, server_error, text, tool_call
from tests.ai.sse import Event, sse_events
from tests.auth.flow import challenge
from tests.gateway.helpers import Gateway, running_gateway, serving, uvicorn_server
from tests.polling import until

AGENTS = "/api/v1/agents"
PRM = "/.well-known/oauth-protected-resource/api/v1/agents"


@dataclass
class Api:
    gateway: Gateway
    project: Path

    def url(self, path: str = "") -> str:
        return f"{self.gateway.base}{AGENTS}{path}"

    def token(
        self,
        *scopes: str,
        subject: str = "alice",
        audience: str | None = None,
        jkt: str | None = None,
    ) -> str:
        """A token of this gateway's issuer, for the agents API unless ``audience`` says."""
        value, _ = self.gateway.parts.auth.tokens.mint(
            subject=subject,
            client_id="test-client",
            audience=[audience or self.url()],
            scopes=scopes or ("user", "tools:write"),
            jkt=jkt,
        )
        return str(value)

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token()}", **extra}


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
async def api(tmp_path: Path, listener: socket.socket) -> AsyncIterator[Api]:
    port = listener.getsockname()[1]
    (tmp_path / "atrium.yaml").write_text(f"gateway:\n  public_url: http://127.0.0.1:{port}\n")
    settings = load_settings(tmp_path, environ={KEY_VARIABLE: "sk-test"})
    write_agent(tmp_path, "helper")
    async with (
        await Store.open(settings) as store,
        running_gateway(settings, store, listener) as gateway,
    ):
        yield Api(gateway, tmp_path)


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=20) as client:
        yield client


async def run(
    http: httpx2.AsyncClient, api: Api, message: str, token: str | None = None, **body: str
) -> list[Event]:
    """POST a message and read the whole stream."""
    headers = api.headers(token)
    async with http.stream(
        "POST", api.url("/helper/messages"), json={"message": message, **body}, headers=headers
    ) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        return sse_events([line async for line in response.aiter_lines()])


async def post(http: httpx2.AsyncClient, api: Api, **kwargs: Any) -> httpx2.Response:
    headers = {**api.headers(), **kwargs.pop("headers", {})}
    return await http.post(api.url("/helper/messages"), headers=headers, **kwargs)


# -- who may call ---------------------------------------------------------------------------


async def test_without_a_token_the_challenge_leads_to_the_authorization_server(
    api: Api, http: httpx2.AsyncClient
) -> None:
    response = await http.get(api.url())

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    metadata_url = challenge(response)["resource_metadata"]
    assert metadata_url == f"{api.gateway.base}{PRM}"
    metadata = (await http.get(metadata_url)).json()
    assert metadata["resource"] == api.url()
    assert metadata["authorization_servers"] == [api.gateway.base]


async def test_tokens_for_the_agents_api_or_the_default_audience_are_accepted(
    api: Api, http: httpx2.AsyncClient
) -> None:
    own = await http.get(api.url(), headers=api.headers(api.token()))
    default = await http.get(api.url(), headers=api.headers(api.token(audience="mcp")))

    assert (own.status_code, default.status_code) == (200, 200)
    assert [agent["name"] for agent in own.json()["agents"]] == ["helper"]


async def test_a_token_for_a_hosted_server_is_refused(api: Api, http: httpx2.AsyncClient) -> None:
    hosted = api.token(audience=f"{api.gateway.base}/api/v1/mcp/x/mcp")

    response = await http.get(api.url(), headers=api.headers(hosted))

    assert response.status_code == 401
    assert challenge(response)["error"] == "invalid_token"


async def test_a_token_without_the_user_scope_is_forbidden(
    api: Api, http: httpx2.AsyncClient
) -> None:
    reader = await http.get(api.url(), headers=api.headers(api.token("tools:read")))
    anonymous = await http.get(api.url(), headers=api.headers(api.token("anonymous")))
    admin = await http.get(api.url(), headers=api.headers(api.token("admin")))

    assert (reader.status_code, anonymous.status_code, admin.status_code) == (403, 403, 200)
    assert reader.json()["error"] == "insufficient_scope"
    assert challenge(reader)["scope"] == "user"


async def test_expired_revoked_and_forged_tokens_are_refused(
    api: Api, http: httpx2.AsyncClient
) -> None:
    parts = api.gateway.parts
    past = TokenIssuer(
        parts.auth.keys, parts.auth.issuer, ttl_s=60, clock=lambda: time.time() - 3600
    )
    expired, _ = past.mint(subject="alice", client_id="c", audience=[api.url()], scopes=["user"])
    revoked = api.token(subject="bob")
    await revoke_subject(api.gateway.store, "bob", revoke_refresh=False)
    await parts.reload_auth()

    for token in (str(expired), revoked, api.token()[:-4] + "AAAA"):
        response = await http.get(api.url(), headers=api.headers(token))
        assert (response.status_code, challenge(response)["error"]) == (401, "invalid_token")


async def test_a_dpop_bound_token_needs_its_proof(api: Api, http: httpx2.AsyncClient) -> None:
    key = generate_key()
    token = api.token(jkt=key.thumbprint())
    proof = make_proof(key, method="GET", url=api.url(), access_token=token)

    as_bearer = await http.get(api.url(), headers=api.headers(token))
    no_proof = await http.get(api.url(), headers={"Authorization": f"DPoP {token}"})
    proven = await http.get(api.url(), headers={"Authorization": f"DPoP {token}", "DPoP": proof})

    assert (as_bearer.status_code, no_proof.status_code, proven.status_code) == (401, 401, 200)


async def test_the_transport_guard_and_single_credentials_apply(
    api: Api, http: httpx2.AsyncClient
) -> None:
    token = api.token()
    rebound = await http.get(api.url(), headers=api.headers(token, Host="evil.example"))
    foreign = await http.get(api.url(), headers=api.headers(token, Origin="https://evil.example"))
    twice = await http.get(api.url(), headers=[("Authorization", f"Bearer {token}")] * 2)

    assert (rebound.status_code, foreign.status_code, twice.status_code) == (421, 403, 400)
    assert twice.json()["error"] == "invalid_request"


# -- what is refused before a run -----------------------------------------------------------


async def test_bad_bodies_are_refused_saying_what_was_wrong(
    api: Api, http: httpx2.AsyncClient
) -> None:
    cases = {
        "empty": (await post(http, api, json={"message": ""}), 422),
        "blank": (await post(http, api, json={"message": "  "}), 422),
        "number": (await post(http, api, json={"message": 7}), 422),
        "unknown key": (await post(http, api, json={"message": "hi", "model": "x"}), 422),
        "not json": (
            await post(http, api, content=b"{nope", headers={"Content-Type": "application/json"}),
            400,
        ),
        "a list": (await post(http, api, json=["hi"]), 422),
        "form": (await post(http, api, data={"message": "hi"}), 415),
        "too large": (await post(http, api, json={"message": "x" * (2 << 20)}), 413),
    }

    for case, (response, status) in cases.items():
        assert response.status_code == status, (case, response.text)
        assert set(response.json()) >= {"error", "message"}, case
    assert cases["unknown key"][0].json()["details"][0]["path"] == "model"


async def test_a_large_body_without_a_length_is_cut_off_while_read(
    api: Api, http: httpx2.AsyncClient
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"message": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = await post(http, api, content=chunks(), headers={"Content-Type": "application/json"})

    assert (response.status_code, response.json()["error"]) == (413, "too_large")


async def test_an_unknown_agent_is_404_and_a_broken_one_a_server_problem(
    api: Api, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    unknown = await http.post(
        api.url("/nobody/messages"), json={"message": "hi"}, headers=api.headers()
    )
    (api.project / "services/agents/broken.md").write_text("---\nname: broken\ntools: [x]\n---\n")
    broken = await http.post(
        api.url("/broken/messages"), json={"message": "hi"}, headers=api.headers()
    )
    listing = await http.get(api.url(), headers=api.headers())

    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    assert "helper" in unknown.json()["message"]
    assert (broken.status_code, broken.json()["error"]) == (500, "misconfigured")
    # Which file and key is the operator's to know (the log), not the caller's.
    assert "broken.md" not in broken.json()["message"]
    assert "services/agents/broken.md" in caplog.text
    assert listing.status_code == 500


async def test_a_missing_model_key_is_a_server_problem_naming_the_key(
    api: Api, http: httpx2.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with OpenAIChatFake([text("never")]) as fake:
        config = write_ai_config(api.project, fake)
        config.write_text(config.read_text().replace(KEY_VARIABLE, "ATRIUM_TEST_UNSET_KEY"))
        response = await post(http, api, json={"message": "hi"})

    assert (response.status_code, response.json()["error"]) == (500, "misconfigured")
    assert "api_key" not in response.json()["message"]
    assert "ai.providers.fake.api_key" in caplog.text
    assert fake.requests == []


async def test_conversations_are_their_users_alone(api: Api, http: httpx2.AsyncClient) -> None:
    store = api.gateway.store.conversations
    theirs = await store.create(subject="mallory", agent="helper", title="secret")
    url = api.url(f"/conversations/{theirs.id}")
    admin = api.headers(api.token("admin"))

    read = await http.get(url, headers=admin)
    deleted = await http.delete(url, headers=admin)
    with OpenAIChatFake([text("never")]) as fake:
        write_ai_config(api.project, fake)
        continued = await post(http, api, json={"message": "hi", "conversation_id": theirs.id})
    listed = await http.get(api.url("/conversations"), headers=admin)

    assert [r.status_code for r in (read, deleted, continued)] == [404, 404, 404]
    assert fake.requests == []
    assert listed.json() == {"conversations": []}
    assert await store.get(theirs.id) is not None


# -- runs -----------------------------------------------------------------------------------


async def test_a_run_streams_its_events_and_its_conversation_continues(
    api: Api, http: httpx2.AsyncClient
) -> None:
    with OpenAIChatFake([text("First answer."), text("Second answer.")]) as fake:
        write_ai_config(api.project, fake)
        first = await run(http, api, "Hello")
        conversation_id = first[0][1]["conversation_id"]
        second = await run(http, api, "And then?", conversation_id=conversation_id)
        history = fake.requests[1].body["messages"]

    names = [name for name, _ in first]
    assert (names[0], names[-2:]) == ("started", ["usage", "finished"])
    assert "".join(data["text"] for name, data in first if name == "text") == "First answer."
    assert all(name == data["type"] for name, data in first)
    assert second[-1][1]["text"] == "Second answer."
    assert [m["content"] for m in history if m["role"] != "system"] == [
        "Hello", "First answer.", "And then?"
    ]  # fmt: skip
    shown = (
        await http.get(api.url(f"/conversations/{conversation_id}"), headers=api.headers())
    ).json()
    assert [m["role"] for m in shown["messages"]] == ["user", "assistant", "user", "assistant"]
    assert shown["message_count"] == 4
    listed = (await http.get(api.url("/conversations"), headers=api.headers())).json()
    assert [c["id"] for c in listed["conversations"]] == [conversation_id]
    deleted = await http.delete(api.url(f"/conversations/{conversation_id}"), headers=api.headers())
    gone = await http.get(api.url(f"/conversations/{conversation_id}"), headers=api.headers())
    assert (deleted.status_code, gone.status_code) == (204, 404)


async def test_a_tool_the_agent_was_not_given_is_a_failed_call_not_an_error(
    api: Api, http: httpx2.AsyncClient
) -> None:
    with OpenAIChatFake([tool_call("mcp__nowhere__delete", {}), text("Could not.")]) as fake:
        write_ai_config(api.project, fake)
        events = await run(http, api, "Delete it")

    (finished,) = [data for name, data in events if name == "tool_finished"]
    assert finished["ok"] is False
    assert events[-1][1]["type"] == "finished"


async def test_a_model_api_failing_mid_run_is_the_failed_event(
    api: Api, http: httpx2.AsyncClient
) -> None:
    with OpenAIChatFake([server_error()] * 3) as fake:
        write_ai_config(api.project, fake)
        events = await run(http, api, "Hello")

    assert [name for name, _ in events] == ["started", "failed"]
    assert events[-1][1]["kind"] == "provider"


async def test_the_client_going_away_stops_the_run(api: Api, http: httpx2.AsyncClient) -> None:
    with OpenAIChatFake([text("One moment, please", stall=True)]) as fake:
        write_ai_config(api.project, fake)
        async with http.stream(
            "POST", api.url("/helper/messages"), json={"message": "Hi"}, headers=api.headers()
        ) as response:
            async for line in response.aiter_lines():
                if line == "event: text":
                    break
        await until(lambda: fake.abandoned == 1, what="the model stream to be abandoned")

    (stored,) = await api.gateway.store.conversations.list(subject="alice")
    assert stored.messages >= 1  # the user's message was kept


async def test_a_waiting_stream_sends_heartbeats(api: Api, http: httpx2.AsyncClient) -> None:
    app = Starlette(routes=agents_routes(api.gateway.parts, heartbeat_s=0.05))
    settings = api.gateway.parts.settings
    with OpenAIChatFake([text("Thinking hard", stall=True)]) as fake:
        write_ai_config(api.project, fake)
        async with serving(uvicorn_server(app, settings)) as served:
            url = f"http://127.0.0.1:{served.port}{AGENTS}/helper/messages"
            async with http.stream(
                "POST", url, json={"message": "Hi"}, headers=api.headers(api.token(audience="mcp"))
            ) as response:
                # Pings counted once the model stream is open (its first delta came), so that
                # leaving is the model stream's to notice, however slowly the run started.
                pings, streaming = 0, False
                async for line in response.aiter_lines():
                    streaming = streaming or line == "event: text"
                    pings += streaming and line == ": ping"
                    if pings == 2:
                        break
        await until(lambda: fake.abandoned == 1, what="the model stream to be abandoned")

    assert pings == 2


async def test_a_model_api_failure_is_told_plainly_to_a_user_and_whole_to_an_admin(
    api: Api, http: httpx2.AsyncClient
) -> None:
    with OpenAIChatFake([server_error()] * 6) as fake:
        write_ai_config(api.project, fake)
        as_user = await run(http, api, "Hello")
        as_admin = await run(http, api, "Hello", token=api.token("admin", subject="root"))

    assert as_user[-1][1]["error"] == "the model API failed; the gateway's log has the details"
    assert fake.url.removeprefix("http://") not in json.dumps(as_user)
    assert "500" in as_admin[-1][1]["error"]


async def stalled_run(
    stack: contextlib.AsyncExitStack, http: httpx2.AsyncClient, api: Api, **body: str
) -> AsyncIterator[str]:
    """A run whose model stream stalls after its first text: it holds its slot until the
    stack closes. Keep what it returns: the line reader, once collected, closes the stream."""
    response = await stack.enter_async_context(
        http.stream(
            "POST", api.url("/helper/messages"), json={"message": "Go on", **body},
            headers=api.headers(),
        )
    )  # fmt: skip
    assert response.status_code == 200, await response.aread()
    lines = response.aiter_lines()
    while await anext(lines) != "event: text":
        pass
    return lines


async def test_one_conversation_is_continued_by_one_run_at_a_time(
    api: Api, http: httpx2.AsyncClient
) -> None:
    with OpenAIChatFake([text("First."), text("Still thinking", stall=True)]) as fake:
        write_ai_config(api.project, fake)
        conversation = (await run(http, api, "Start"))[0][1]["conversation_id"]
        async with contextlib.AsyncExitStack() as stack:
            reader = await stalled_run(stack, http, api, conversation_id=conversation)
            again = await post(http, api, json={"message": "And?", "conversation_id": conversation})

        assert again.status_code == 409, again.text
        assert again.json()["error"] == "conversation_busy"
        assert reader is not None
        await until(lambda: fake.abandoned == 1, what="the stalled run to end")


async def test_a_user_runs_a_few_agents_at_once_and_others_are_not_held_up(
    api: Api, http: httpx2.AsyncClient
) -> None:
    with OpenAIChatFake([text("Still thinking", stall=True)] * 5) as fake:
        write_ai_config(api.project, fake)
        async with contextlib.AsyncExitStack() as stack:
            readers = [await stalled_run(stack, http, api) for _ in range(RunSlots.PER_USER)]
            fifth = await post(http, api, json={"message": "One more"})
            bobs = await stack.enter_async_context(
                http.stream(
                    "POST", api.url("/helper/messages"), json={"message": "Mine"},
                    headers=api.headers(api.token(subject="bob")),
                )
            )  # fmt: skip

            assert (fifth.status_code, fifth.json()["error"]) == (429, "too_many_runs")
            assert fifth.headers["retry-after"] == "5"
            assert bobs.status_code == 200  # bob's slots are his own
            assert len(readers) == RunSlots.PER_USER
        await until(lambda: fake.abandoned >= RunSlots.PER_USER, what="the stalled runs to end")
    # The slots are given back when the streams end: alice runs again.
    with OpenAIChatFake([text("Back.")]) as fake:
        write_ai_config(api.project, fake)
        assert (await run(http, api, "Back?"))[-1][1]["type"] == "finished"


async def test_a_limit_that_is_a_digit_but_no_number_is_a_bad_request(
    api: Api, http: httpx2.AsyncClient
) -> None:
    response = await http.get(api.url("/conversations?limit=%C2%B2"), headers=api.headers())

    assert (response.status_code, response.json()["error"]) == (400, "bad_request")
