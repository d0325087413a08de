"""``atrium cloud sync local mcp`` through the CLI, against the real store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from textwrap import dedent

from atrium.registry.loader import load_registry
from atrium.settings import load_settings
from atrium.store import ServerRecord, Store
from tests.cli.helpers import run_atrium

CUSTOM = dedent(
    """\
    # Time server from PyPI, bridged from stdio.
    mcp_servers:
      time:
        transport: stdio
        command: [uvx, mcp-server-time]   # pinned by uv's cache
        port: 5070
        description: Current time
        env:
          TZ_TOKEN: {$env: TIME_TOKEN}
        tools:
          denied: ["set_*"]
    """
)


def stored(project: Path) -> dict[str, ServerRecord]:
    async def read() -> list[ServerRecord]:
        store = await Store.open(load_settings(project, environ={}))
        try:
            return await store.servers.list()
        finally:
            await store.close()

    return {record.name: record for record in asyncio.run(read())}


def new_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    assert run_atrium("init", str(project)).exit_code == 0
    (project / "services/mcp/time.yaml").write_text(CUSTOM)
    return project


def sync(project: Path, direction: str, *extra: str, env: dict[str, str] | None = None) -> str:
    args = ("--project", str(project), "cloud", "sync", "local", "mcp", "--direction", direction)
    result = run_atrium(*args, *extra, env=env)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_to_db_without_yes_shows_the_diff_and_changes_nothing(tmp_path: Path) -> None:
    project = new_project(tmp_path)

    out = sync(project, "to-db")

    assert "+ time" in out
    assert "+ marketplace" in out
    assert stored(project) == {}


def test_to_db_with_yes_stores_every_server_with_its_references_unresolved(tmp_path: Path) -> None:
    project = new_project(tmp_path)

    sync(project, "to-db", "-y")

    records = stored(project)
    assert sorted(records) == ["atrium", "content-manager", "marketplace", "soul", "time"]
    time = records["time"]
    assert (time.transport, time.port, time.source) == ("stdio", 5070, "services/mcp/time.yaml")
    assert time.config["env"] == {"TZ_TOKEN": {"$env": "TIME_TOKEN"}}
    assert "Already in sync" in sync(project, "to-db")


def test_round_trip_to_db_to_disk_into_an_empty_folder_to_db_changes_nothing(
    tmp_path: Path,
) -> None:
    project = new_project(tmp_path)
    sync(project, "to-db", "-y")
    before = stored(project)
    # A second checkout of the project, sharing the first one's store, with no server files.
    clone = tmp_path / "clone"
    (clone / "services/mcp").mkdir(parents=True)
    shared = {"ATRIUM_DATABASE_URL": f"sqlite:///{project}/.atrium/atrium.db"}

    sync(clone, "to-disk", "-y", env=shared)
    out = sync(clone, "to-db", env=shared)

    assert "Already in sync" in out
    assert sorted(p.name for p in (clone / "services/mcp").iterdir()) == [
        f"{n}.yaml" for n in sorted(before)
    ]
    exported = {e.name: e.config for e in load_registry(load_settings(clone, environ={}))}
    original = {e.name: e.config for e in load_registry(load_settings(project, environ={}))}
    assert exported == original
    sync(clone, "to-db", "-y", env=shared)
    assert stored(project) == before


def test_to_disk_into_another_folder_then_to_db_from_it_only_moves_sources(tmp_path: Path) -> None:
    project = new_project(tmp_path)
    sync(project, "to-db", "-y")
    before = stored(project)
    exported = tmp_path / "exported"

    sync(project, "to-disk", "-y", "--dir", str(exported))
    sync(project, "to-db", "-y", "--dir", str(exported))

    after = stored(project)
    assert {n: r.config for n, r in after.items()} == {n: r.config for n, r in before.items()}
    assert str(after["time"].source).endswith("exported/time.yaml")


def test_a_server_gone_from_disk_is_disabled_never_deleted(tmp_path: Path) -> None:
    project = new_project(tmp_path)
    sync(project, "to-db", "-y")

    (project / "services/mcp/time.yaml").unlink()
    out = sync(project, "to-db", "-y")

    assert "~ time" in out
    time = stored(project)["time"]
    assert time.enabled is False
    assert time.disabled_reason == "removed from disk"
    assert time.config["command"] == ["uvx", "mcp-server-time"]
    assert "Already in sync" in sync(project, "to-db")


def test_a_server_back_on_disk_is_restored(tmp_path: Path) -> None:
    project = new_project(tmp_path)
    sync(project, "to-db", "-y")
    (project / "services/mcp/time.yaml").rename(tmp_path / "time.yaml")
    sync(project, "to-db", "-y")

    (tmp_path / "time.yaml").rename(project / "services/mcp/time.yaml")
    sync(project, "to-db", "-y")

    time = stored(project)["time"]
    assert (time.enabled, time.disabled_reason) == (True, None)


def test_to_disk_keeps_the_comments_of_an_existing_file(tmp_path: Path) -> None:
    project = new_project(tmp_path)
    sync(project, "to-db", "-y")
    path = project / "services/mcp/time.yaml"
    path.write_text(CUSTOM.replace("description: Current time", "description: Edited by hand"))

    dry = sync(project, "to-disk")
    assert "-    description: Edited by hand" in dry
    assert "Edited by hand" in path.read_text()
    sync(project, "to-disk", "-y")

    text = path.read_text()
    assert "description: Current time" in text
    assert "# Time server from PyPI, bridged from stdio." in text
    assert "# pinned by uv's cache" in text


def test_to_disk_leaves_a_file_that_already_matches_untouched(tmp_path: Path) -> None:
    project = new_project(tmp_path)
    sync(project, "to-db", "-y")
    original = (project / "services/mcp/marketplace.yaml").read_text()

    out = sync(project, "to-disk", "-y")

    assert "Already in sync" in out
    assert (project / "services/mcp/marketplace.yaml").read_text() == original


def test_a_bad_direction_is_a_usage_error(tmp_path: Path) -> None:
    project = new_project(tmp_path)

    result = run_atrium(
        "--project", str(project), "cloud", "sync", "local", "mcp", "--direction", "sideways"
    )

    assert result.exit_code == 2
    assert "--direction" in result.stderr
    assert json.dumps(stored(project)) == "{}"
