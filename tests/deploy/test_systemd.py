"""deploy/systemd/: units that parse, run commands the ``atrium`` CLI has, stop gently for
longer than Atrium's own grace periods, restart on failure, and are hardened. systemd itself is
not needed: ``systemd-analyze verify`` runs too where it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from atrium.gateway.serve import UVICORN_GRACE_MARGIN_S
from atrium.settings import Settings
from atrium.supervisor.process import STOP_GRACE_S
from tests.cli.helpers import run_atrium
from tests.deploy.cluster import DEPLOY

SYSTEMD = DEPLOY / "systemd"
INSTALLED = "/opt/atrium/bin/atrium"  # where the units expect Atrium (their comments say so)
GATEWAY_GRACE_S = Settings(project_dir=Path()).shutdown_grace_s + UVICORN_GRACE_MARGIN_S
# Each unit, the atrium command it runs, and the longest a graceful stop of it may take.
UNITS = {
    "atrium.service": (["start"], GATEWAY_GRACE_S + STOP_GRACE_S),
    "atrium-gateway@.service": (["gateway"], GATEWAY_GRACE_S),
    "atrium-servers.service": (["infra", "services", "start", "mcp"], STOP_GRACE_S),
}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
}

Unit = dict[str, dict[str, list[str]]]


def parse(path: Path) -> Unit:
    """A unit file as systemd reads it (systemd.syntax(7)): sections, then ``Key=value`` lines
    (a key may repeat), comments from ``#`` or ``;``; anything else is an error."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if match := re.fullmatch(r"\[([A-Za-z]+)\]", stripped):
            assert match[1] not in unit, f"{path.name}:{number}: [{match[1]}] twice"
            section = unit[match[1]] = {}
            continue
        key, equals, value = stripped.partition("=")
        assert re.fullmatch(r"[A-Za-z]+", key), f"{path.name}:{number}: {line!r}"
        assert equals, f"{path.name}:{number}: {line!r}"
        assert section is not None, f"{path.name}:{number}: a key before any section"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, f"not a time span this test reads: {value!r}"
    return int(match[1]) * (60 if match[2] == "min" else 1)


def test_the_three_units_are_there_and_parse() -> None:
    assert sorted(path.name for path in SYSTEMD.glob("*.service")) == sorted(UNITS)
    for name in UNITS:
        unit = parse(SYSTEMD / name)
        assert set(unit) == {"Unit", "Service", "Install"}, name
        assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_each_unit_runs_a_command_the_atrium_cli_has() -> None:
    for name, (command, _) in UNITS.items():
        start = one(parse(SYSTEMD / name), "Service", "ExecStart").split()
        assert start == [INSTALLED, *command], name
        helped = run_atrium(*command, "--help", env={"NO_COLOR": "1"})  # in this process
        assert helped.exit_code == 0, helped.stdout + helped.stderr


def test_a_stop_is_gentle_for_longer_than_atrium_takes_to_stop_and_a_failure_restarts() -> None:
    for name, (_, needed_s) in UNITS.items():
        unit = parse(SYSTEMD / name)
        # SIGTERM to atrium alone (it stops its own servers), SIGKILL for what is left after.
        assert one(unit, "Service", "KillMode") == "mixed", name
        assert one(unit, "Service", "KillSignal") == "SIGTERM", name
        assert seconds(one(unit, "Service", "TimeoutStopSec")) > needed_s, name
        assert one(unit, "Service", "Restart") == "on-failure", name


def test_each_unit_runs_hardened_as_its_own_user_writing_only_the_project() -> None:
    for name in UNITS:
        unit = parse(SYSTEMD / name)
        for key, value in HARDENING.items():
            assert one(unit, "Service", key) == value, f"{name}: {key}"
        assert one(unit, "Service", "User") == "atrium", name
        assert one(unit, "Service", "ReadWritePaths") == one(unit, "Service", "WorkingDirectory")
        assert "@system-service" in one(unit, "Service", "SystemCallFilter")


def test_the_gateway_replica_listens_on_the_port_its_instance_names() -> None:
    unit = parse(SYSTEMD / "atrium-gateway@.service")

    assert "ATRIUM_GATEWAY_PORT=%i" in unit["Service"]["Environment"]


def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the parse above still runs)")
    installed = str(Path(sys.executable).with_name("atrium"))
    paths = []
    for name in UNITS:
        # Verify checks that ExecStart's program exists: here it is this virtualenv's atrium.
        text = (SYSTEMD / name).read_text().replace(INSTALLED, installed)
        path = tmp_path / name.replace("@.", "@8081.")  # a template is verified as an instance
        path.write_text(text)
        paths.append(str(path))

    verified = subprocess.run(
        [analyze, "verify", *paths], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )

    assert verified.returncode == 0
    assert verified.stdout + verified.stderr == ""
