"""Which servers an agent's run reaches, and as whom: the registry as stored, narrowed to what
its user could call through the gateway and to the agent's ``servers:``; a token per server
minted for the run's user and renewed before it ends; and, end to end, an agent calling the
built-in ``atrium`` server through a real gateway, audited as in-app."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from atrium.ai.discovery import RENEW_BEFORE_S, TOKEN_TTL_S, RunAs, RunAuth, auth_for
from atrium.ai.run_events import RunFinished, ToolFinished
from atrium.auth.access_tokens import TokenVerifier
from atrium.auth.keystore import project_keys
from atrium.auth.operator import AGENT_CLIENT_ID
from atrium.client.connect import gateway_url
from atrium.client.mcpjson import HttpTarget, ServerSpec
from atrium.errors import AtriumError
from atrium.registry.schema import parse_server_config
from atrium.registry.sync import record_for
from atrium.settings import Settings, load_settings
from atrium.store import ServerRecord
from tests.ai.conftest import of_type, request_text, run, service_of
from tests.ai.project import KEY_VARIABLE, write_agent, write_ai_config
from tests.ai.providers_fake import OpenAIChatFake, text, tool_call
from tests.e2e.instance import started_instance
from tests.polling import until

READER = RunAs("alice", frozenset({"user", "tools:read"}))
ADMIN = frozenset({"admin"})


def remote(name: str, *, enabled: bool = True, **oauth: Any) -> ServerRecord:
    config = {"transport": "remote", "url": f"https://{name}.example/mcp", "enabled": enabled}
    return record_for(name, parse_server_config({**config, "oauth": oauth}), f"mcp/{name}.yaml")


REGISTRY = [
    remote("open"),
    remote("off", enabled=False),
    remote("writers", scopes=["tools:write"]),
    remote("readers", scopes=["tools:read", "tools:write"], required=True),
    remote("vscode-only", client_id="vscode"),
    remote("agents-only", client_id=AGENT_CLIENT_ID),
    remote("bound", dpop="required"),
    remote("unbound", dpop="optional"),
]


def project(tmp_path: Path, *, servers: list[str] | None = None) -> Settings:
    """Agent ``helper`` with registry discovery and one ``.mcp.json`` server, ``local``."""
    local = {"command": "node", "args": ["server.js"]}
    (tmp_path / ".mcp.json").write_text(json.dumps({"mcpServers": {"local": local}}))
    with OpenAIChatFake([]) as fake:  # only its URL is written: plan() calls no model
        write_ai_config(tmp_path, fake, auto_discover=True, mcp_configs=[".mcp.json"])
    write_agent(tmp_path, "helper", servers=servers)
    return load_settings(tmp_path, environ={KEY_VARIABLE: "test-key"})


async def planned(settings: Settings, run_as: RunAs, records: list[ServerRecord]) -> Any:
    async with service_of(settings) as service:
        await service.store.servers.save(records)
        return (await service.plan("helper", run_as)).discovered


async def test_a_run_reaches_the_enabled_servers_its_user_could_call(tmp_path: Path) -> None:
    settings = project(tmp_path)

    found = await planned(settings, READER, REGISTRY)

    names = [spec.name for spec in found.specs]
    # The .mcp.json's "local" acts with the operator's credentials: not for a reader's run.
    assert names == ["agents-only", "open", "readers", "unbound"]
    assert set(found.left_out) == {"off", "writers", "vscode-only", "bound"}
    registry = [spec for spec in found.specs if spec.registry]
    urls = [gateway_url(settings, name) for name in names]
    assert [spec.target for spec in registry] == [HttpTarget(url, "http") for url in urls]


async def test_the_extra_mcp_json_servers_are_for_admins_runs_only(tmp_path: Path) -> None:
    settings = project(tmp_path)
    admin = RunAs("root", frozenset({"admin"}))

    as_admin = await planned(settings, admin, [])
    as_reader = await planned(settings, READER, [])

    assert [(spec.name, spec.registry) for spec in as_admin.specs] == [("local", False)]
    assert as_reader.specs == []


@pytest.mark.parametrize(
    ("scopes", "writers"), [({"tools:write"}, True), ({"admin"}, True), ({"user"}, False)]
)
async def test_a_server_needing_scopes_is_reached_with_any_one_of_them_or_admin(
    tmp_path: Path, scopes: set[str], writers: bool
) -> None:
    found = await planned(project(tmp_path), RunAs("bob", frozenset(scopes)), REGISTRY)

    assert ("writers" in [spec.name for spec in found.specs]) is writers
    assert ("writers" in found.left_out) is not writers


async def test_the_agents_servers_narrow_the_registry_and_the_mcp_json(tmp_path: Path) -> None:
    settings = project(tmp_path, servers=["open", "writers"])

    found = await planned(settings, READER, REGISTRY)

    assert [spec.name for spec in found.specs] == ["open"]
    assert set(found.left_out) == {"writers"}  # the agent's own, and out of reach


async def test_no_registry_server_is_reached_without_auto_discover(tmp_path: Path) -> None:
    settings = project(tmp_path)
    path = tmp_path / "services/ai/config.yaml"
    path.write_text(path.read_text().replace('"auto_discover": true', '"auto_discover": false'))

    found = await planned(settings, READER, REGISTRY)

    assert ([spec.name for spec in found.specs], found.left_out) == ([], {})


async def test_a_stored_server_the_schema_refuses_is_left_out_not_fatal(tmp_path: Path) -> None:
    # The gateway does not route such a record (gateway.directory); a run should not die of it.
    broken = ServerRecord("broken", {"transport": "remote"}, True, "remote", None, "mcp/b.yaml")

    found = await planned(project(tmp_path), READER, [remote("open"), broken])

    assert [spec.name for spec in found.specs] == ["open"]
    assert "broken" in found.left_out


def claims_of(settings: Settings, token: str) -> Any:
    return TokenVerifier(project_keys(settings), settings.issuer).verify(token)


def test_a_runs_token_is_its_users_for_one_server_from_the_agents_client(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    auth = RunAuth(settings, READER, "github", allowed)

    request = next(auth.auth_flow(httpx2.Request("POST", gateway_url(settings, "github"))))
    scheme, _, token = request.headers["Authorization"].partition(" ")
    claims = claims_of(settings, token)

    assert scheme == "Bearer"
    assert (claims.subject, claims.client_id) == ("alice", AGENT_CLIENT_ID)
    assert claims.audience == (settings.endpoint_for("github"),)
    assert claims.scopes == READER.scopes
    assert claims.expires_at - claims.issued_at == TOKEN_TTL_S


def test_a_token_is_reused_then_minted_again_before_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(tmp_path, environ={})
    auth = RunAuth(settings, READER, "github", allowed)
    first, start = auth.token(), time.time()

    monkeypatch.setattr(time, "time", lambda: start + TOKEN_TTL_S - RENEW_BEFORE_S - 30)
    still = auth.token()
    monkeypatch.setattr(time, "time", lambda: start + TOKEN_TTL_S - RENEW_BEFORE_S + 5)
    renewed = auth.token()
    monkeypatch.undo()

    assert still == first
    assert renewed != first
    assert claims_of(settings, renewed).jti != claims_of(settings, first).jti
    assert claims_of(settings, renewed).subject == "alice"


async def allowed() -> None:
    """A user who still may act (the service's own check is tested in test_service)."""


async def test_a_token_is_minted_again_only_for_a_user_who_still_may(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(tmp_path, environ={})
    asked: list[str] = []

    async def revoked() -> None:
        asked.append("vet")
        raise AtriumError("revoked")

    auth = RunAuth(settings, READER, "github", revoked)
    request = httpx2.Request("POST", gateway_url(settings, "github"))
    first = auth.async_auth_flow(request)
    await anext(first)  # the first token: the run's start vetted its user
    assert asked == []
    later = time.time() + TOKEN_TTL_S
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(AtriumError, match="revoked"):
        await anext(auth.async_auth_flow(request))
    assert asked == ["vet"]


def test_only_registry_servers_get_the_runs_tokens(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, environ={})
    hook = auth_for(settings, READER, allowed)
    registry = ServerSpec("open", HttpTarget(gateway_url(settings, "open"), "http"), registry=True)
    own = ServerSpec("local", HttpTarget("http://127.0.0.1:9/mcp", "http"))

    assert isinstance(hook(registry), RunAuth)
    assert hook(own) is None


async def test_an_agent_calls_a_registry_server_through_the_gateway_as_its_user(
    tmp_path: Path,
) -> None:
    script = [tool_call("mcp__atrium__list_playbooks", {}), text("Two playbooks.")]
    with started_instance(tmp_path) as instance, OpenAIChatFake(script) as fake:
        write_ai_config(instance.project, fake, auto_discover=True)
        write_agent(instance.project, "helper", servers=["atrium"])
        settings = load_settings(instance.project, {**instance.env, KEY_VARIABLE: "test-key"})
        async with service_of(settings) as service:
            events = await run(service, "Which playbooks?", run_as=RunAs("carol", ADMIN))

            async def audited() -> list[Any]:
                return await service.store.audit.tool_calls(server="atrium", subject="carol")

            records = await until(audited, what="the audit record of the agent's call")

    assert [e.ok for e in of_type(events, ToolFinished)] == [True]
    assert "troubleshoot-a-server" in request_text(fake.requests[1].body)
    assert of_type(events, RunFinished)[0].text == "Two playbooks."
    assert [(r.tool, r.client_id, r.origin, r.outcome) for r in records] == [
        ("list_playbooks", AGENT_CLIENT_ID, "in-app", "ok"),
    ]
