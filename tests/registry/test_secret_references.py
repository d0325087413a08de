"""``{$secret: NAME}`` in a hosted server's ``env:``: parsed, shown, and resolved from the
project's stored secrets when the supervisor starts the server (a real store, a real process)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from atrium.errors import ConfigError
from atrium.redaction import redacted
from atrium.registry.loader import Registry, load_registry
from atrium.registry.references import SecretRef
from atrium.registry.schema import parse_server_config
from atrium.registry.secrets import resolve_env, stored_secrets
from atrium.scaffold import BUILTIN_SERVERS
from atrium.secretbox import SECRET_KEY_VARIABLE, SecretBox
from atrium.settings import Settings, load_settings
from atrium.store import PROJECT_OWNER, Store
from atrium.supervisor.spec import launch_spec
from atrium.supervisor.supervisor import RestartPolicy, Supervisor
from tests.processes import free_port
from tests.supervisor.conftest import FAKE

VALUE = "xoxb-stored-0123456789"
FAST = RestartPolicy(max_crashes=3, window_s=30, backoff_base_s=0.05, health_deadline_s=10)


def keyed_project(tmp_path: Path, env: dict[str, Any], **config: Any) -> tuple[Settings, Registry]:
    """A project with one fake server ``keyed`` whose env is ``env``."""
    command = [sys.executable, str(FAKE), "--port", "{port}"]
    server = {"command": command, "port": free_port(), "env": env, **config}
    (tmp_path / "services/mcp").mkdir(parents=True, exist_ok=True)
    (tmp_path / "services/mcp/keyed.yaml").write_text(
        json.dumps({"mcp_servers": {"keyed": server}})
    )
    environ = {"ATRIUM_PORT_RANGE": "1024-65535", "PATH": "/usr/bin:/bin"}
    settings = load_settings(tmp_path, environ=environ)
    return settings, load_registry(settings)


def environ_of(pid: int | None) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


async def store_secret(settings: Settings, owner: str, name: str, value: str) -> None:
    async with await Store.open(settings) as store:
        await store.secrets.create(owner, name, value, box=SecretBox.load(settings), by="root")


def test_a_secret_reference_parses_and_is_shown_by_name() -> None:
    config = parse_server_config(
        {"command": ["srv"], "port": 5001, "env": {"API_TOKEN": {"$secret": "SLACK_TOKEN"}}}
    )

    assert config.env == {"API_TOKEN": SecretRef(secret="SLACK_TOKEN")}
    assert config.to_json()["env"] == {"API_TOKEN": {"$secret": "SLACK_TOKEN"}}
    assert redacted(config.to_json(), config=True)["env"] == {
        "API_TOKEN": {"$secret": "SLACK_TOKEN"}
    }


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ({"command": ["srv"], "port": 5001, "env": {"A": {"$secret": "lower"}}}, "capital"),
        (
            {
                "transport": "remote",
                "url": "https://mcp.example.com/mcp",
                "headers": {"Authorization": {"$secret": "UPSTREAM"}},
            },
            "{$env: VARIABLE} or {$file: path}",
        ),
    ],
)
def test_a_bad_name_and_a_secret_in_headers_are_refused(config: dict[str, Any], said: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_server_config(config)

    assert said in str(caught.value)


async def test_the_projects_secret_is_resolved_and_a_users_own_is_not(tmp_path: Path) -> None:
    settings, registry = keyed_project(
        tmp_path,
        {"API_TOKEN": {"$secret": "API_TOKEN"}, "MINE": {"$secret": "ADAS_ONLY"}, "PLAIN": "p"},
    )
    await store_secret(settings, PROJECT_OWNER, "API_TOKEN", VALUE)
    await store_secret(settings, "ada", "ADAS_ONLY", "adas-own-value")
    entry = registry.get("keyed")

    secrets = await stored_secrets(entry, settings)
    with pytest.raises(ConfigError) as caught:
        resolve_env(entry, settings, secrets)

    assert secrets == {"API_TOKEN": VALUE}
    (problem,) = caught.value.problems
    assert (problem.server, problem.key_path) == ("keyed", "mcp_servers.keyed.env.MINE")
    assert "ADAS_ONLY" in problem.message
    assert "adas-own-value" not in str(caught.value)


async def test_a_server_without_secret_references_never_opens_the_store(tmp_path: Path) -> None:
    settings, registry = keyed_project(tmp_path, {"PLAIN": "p"})

    assert await stored_secrets(registry.get("keyed"), settings) == {}
    assert not settings.state_dir.exists()


async def test_the_supervisor_starts_a_server_with_its_stored_secret_in_its_env(
    tmp_path: Path,
) -> None:
    settings, registry = keyed_project(tmp_path, {"API_TOKEN": {"$secret": "API_TOKEN"}})
    await store_secret(settings, PROJECT_OWNER, "API_TOKEN", VALUE)
    supervisor = Supervisor(settings, registry, FAST)
    try:
        results = await supervisor.start()
        pid = supervisor.state.servers["keyed"].pid
        environ = environ_of(pid)
    finally:
        await supervisor.close()

    assert results == {"keyed": None}
    assert f"API_TOKEN={VALUE}".encode() in environ


async def test_a_missing_secret_fails_the_start_naming_server_key_and_secret(
    tmp_path: Path,
) -> None:
    settings, registry = keyed_project(tmp_path, {"API_TOKEN": {"$secret": "NOT_STORED"}})
    supervisor = Supervisor(settings, registry, FAST)
    try:
        results = await supervisor.start()
    finally:
        await supervisor.close()

    error = results["keyed"]
    assert error is not None
    assert "server 'keyed'" in error
    assert "mcp_servers.keyed.env.API_TOKEN" in error
    assert "NOT_STORED" in error
    assert supervisor.state.servers["keyed"].state == "failed"


def test_built_in_servers_get_the_secret_key_setting_and_others_do_not(tmp_path: Path) -> None:
    environ = {SECRET_KEY_VARIABLE: "$file:keys/ring.json", "ATRIUM_PORT_RANGE": "1024-65535"}
    marketplace = next(server for server in BUILTIN_SERVERS if server.name == "marketplace")
    (tmp_path / "services/mcp").mkdir(parents=True)
    servers = {
        "marketplace": {"binary": marketplace.binary, "port": free_port()},
        "other": {"command": [sys.executable, str(FAKE)], "port": free_port()},
    }
    (tmp_path / "services/mcp/all.yaml").write_text(json.dumps({"mcp_servers": servers}))
    settings = load_settings(tmp_path, environ=environ)
    registry = load_registry(settings)

    built_in = launch_spec(registry.get("marketplace"), settings)
    other = launch_spec(registry.get("other"), settings)

    assert built_in.env[SECRET_KEY_VARIABLE] == "$file:keys/ring.json"
    assert SECRET_KEY_VARIABLE not in other.env
