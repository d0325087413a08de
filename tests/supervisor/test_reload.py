"""The supervisor reads the registry again: removed servers stop, changed ones are named for a
restart, and an invalid registry changes nothing."""

from __future__ import annotations

import json

import pytest

from atrium.errors import ConfigError
from atrium.registry.loader import Registry, load_registry
from atrium.settings import Settings
from atrium.supervisor.supervisor import RestartPolicy, Supervisor
from tests.processes import alive, free_port
from tests.supervisor.conftest import ProjectFactory

FAST = RestartPolicy(max_crashes=3, window_s=30, backoff_base_s=0.05, health_deadline_s=10)


def reloading(settings: Settings, registry: Registry) -> Supervisor:
    async def load() -> Registry:
        return load_registry(settings)

    return Supervisor(settings, registry, FAST, load_registry=load)


async def test_an_invalid_registry_is_refused_and_every_server_keeps_running(
    fake_project: ProjectFactory,
) -> None:
    settings, registry = fake_project(one=[], two=[])
    supervisor = reloading(settings, registry)
    try:
        await supervisor.start()
        before = {name: status.pid for name, status in supervisor.state.servers.items()}
        (settings.mcp_dir / "two.yaml").write_text("mcp_servers:\n  two:\n    port: many\n")

        with pytest.raises(ConfigError, match=r"two\.yaml"):
            await supervisor.reload()

        after = {name: status.pid for name, status in supervisor.state.servers.items()}
        assert after == before
        assert all(alive(pid) for pid in after.values() if pid)
        assert supervisor.registry is registry
    finally:
        await supervisor.close()


async def test_a_removed_server_stops_and_leaves_the_state_and_a_changed_one_is_named(
    fake_project: ProjectFactory,
) -> None:
    settings, registry = fake_project(one=[], two=[], three=[])
    supervisor = reloading(settings, registry)
    try:
        await supervisor.start()
        two = supervisor.state.servers["two"].pid
        (settings.mcp_dir / "two.yaml").unlink()
        path = settings.mcp_dir / "three.yaml"
        document = json.loads(path.read_text())
        document["mcp_servers"]["three"]["port"] = free_port()
        path.write_text(json.dumps(document))

        reloaded = await supervisor.reload()

        assert (reloaded.stopped, reloaded.changed) == (("two",), ("three",))
        assert "two" not in supervisor.state.servers
        assert two is not None
        assert not alive(two)
        assert supervisor.state.servers["one"].state == "running"
    finally:
        await supervisor.close()
