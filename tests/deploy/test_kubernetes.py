"""deploy/kubernetes/: every manifest valid against a pinned Kubernetes version (strictly: no
field Kubernetes does not know), the project it carries a valid Atrium project, and the pieces
agreeing with each other: the gateway's backend host is the servers' Service, each server's pod
listens where that Service and the registry say, probes ask /health, and a stopping gateway has
longer than its grace period. A pod needs one key file, the master key: the init container
lays out a project that starts with it alone, and stops a pod given none."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx2

# No type information: it validates dicts against the JSON schemas it ships, one per version.
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from ruamel.yaml import YAML

from atrium.ai.config import load_ai_config
from atrium.gateway.serve import UVICORN_GRACE_MARGIN_S
from atrium.registry.loader import load_registry
from atrium.registry.schema import RemoteServer
from atrium.settings import Settings, load_settings
from tests.cli.helpers import CliResult, run_atrium
from tests.deploy.cluster import DEPLOY, atrium, routed, started, tail
from tests.polling import wait_until
from tests.processes import free_port, free_port_in

KUBERNETES = DEPLOY / "kubernetes"
VERSION = "1.33.0"  # the oldest Kubernetes these manifests are for (lifecycle sleep: 1.30+)
# What every pod must share (secrets.yaml, init.sh): the master key ring `atrium init` wrote.
MASTER_KEY = "secret-key"
# The key files of before the store held the keys: read only to import into an empty store,
# so a Secret made back then may still hold them; the public caller keys are written from the
# store, never copied.
OLD_KEY_FILES = ("signing-keys.json", "session-key", "caller-keys.json")
# `--from-file=myproject/.atrium/NAME` in secrets.yaml's `kubectl create secret` commands.
FROM_FILE = re.compile(r"--from-file=\S*/\.atrium/(\S+)")
# RFC 6335 §5.1, as Kubernetes checks a port name: at most 15 characters, a letter among them.
PORT_NAME = re.compile(r"^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")


def resources() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in YAML(typ="safe").load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return found


def named(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        r
        for _, r in resources()
        if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)
    ]


def the(kind: str, name: str) -> dict[str, Any]:
    (found,) = named(kind, name)
    return found


def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def test_every_manifest_is_valid_for_the_pinned_kubernetes_version_strictly() -> None:
    found = resources()
    assert {r["kind"] for _, r in found} >= {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Service",
        "Deployment",
        "HorizontalPodAutoscaler",
    }
    for file, resource in found:
        try:
            kubernetes_validate.validate(resource, VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            pytest.fail(f"{file}: {resource['kind']}/{resource['metadata']['name']}: {e}")


def test_the_validation_refuses_a_field_kubernetes_does_not_know() -> None:
    deployment = copy.deepcopy(the("Deployment", "atrium-gateway"))
    pod(deployment)["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/health"}}

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSION, strict=True)


def secret_files() -> set[str]:
    """The files of .atrium/ the atrium-keys Secret is made from, as secrets.yaml says."""
    return set(FROM_FILE.findall((KUBERNETES / "secrets.yaml").read_text()))


@pytest.fixture
def mounts(tmp_path: Path) -> Path:
    """The pod's /etc/atrium: the ConfigMap as project/, and keys/ holding the files of a
    project ``atrium init`` made that secrets.yaml makes the atrium-keys Secret from."""
    source = tmp_path / "source"
    done = cli(source, "init", str(source), env={"NO_COLOR": "1"})
    assert done.exit_code == 0, done.stderr
    root = tmp_path / "etc-atrium"
    (root / "project").mkdir(parents=True)
    for key, text in the("ConfigMap", "atrium-project")["data"].items():
        (root / "project" / key).write_text(text)
    (root / "keys").mkdir()
    for key in secret_files():
        (root / "keys" / key).write_bytes((source / ".atrium" / key).read_bytes())
    return root


def test_the_atrium_keys_secret_is_made_from_the_master_key_alone() -> None:
    assert secret_files() == {MASTER_KEY}


def cli(project: Path, *args: str, env: dict[str, str]) -> CliResult:
    """``atrium ARGS`` of ``project``, in this process: what the tests run this way only writes
    files and the store, and a subprocess would cost the CLI's imports, about a second."""
    return run_atrium("--project", str(project), *args, env=env)


def run_init(mounts: Path, project: Path) -> subprocess.CompletedProcess[str]:
    """The init container's command, on this machine."""
    (command,) = {tuple(c["command"]) for c in init_containers()}
    assert command[:2] == ("sh", "/etc/atrium/project/init.sh")
    script = mounts / "project" / "init.sh"
    return subprocess.run(
        ["sh", str(script), str(mounts), str(project)], capture_output=True, text=True, timeout=30
    )


def init_containers() -> list[dict[str, Any]]:
    return [c for d in named("Deployment") for c in pod(d)["initContainers"]]


def project_settings(project: Path) -> Settings:
    env = {"ATRIUM_DATABASE_URL": "postgresql://atrium@postgres:5432/atrium"}
    return load_settings(project, environ=env)


def test_the_init_container_lays_out_a_valid_project_with_only_the_master_key(
    mounts: Path, tmp_path: Path
) -> None:
    project = tmp_path / "srv-atrium"
    project.mkdir()

    done = run_init(mounts, project)

    assert (done.returncode, done.stderr) == (0, "")
    settings = project_settings(project)
    registry = load_registry(settings)
    assert sorted(e.name for e in registry) == ["atrium", "content-manager", "marketplace", "soul"]
    assert load_ai_config(settings).default_provider == "anthropic"
    master = settings.state_dir / MASTER_KEY
    assert master.read_bytes() == (mounts / "keys" / MASTER_KEY).read_bytes()
    assert master.stat().st_mode & 0o777 == 0o600
    assert settings.state_dir.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in settings.state_dir.iterdir()) == [MASTER_KEY]


def test_the_init_container_copies_the_old_key_files_a_secret_still_holds_privately(
    mounts: Path, tmp_path: Path
) -> None:
    # A Secret made before the store held the keys: they are imported into an empty store.
    source = tmp_path / "source/.atrium"  # the project the mounts fixture made
    for key in (*OLD_KEY_FILES, "caller-keys.pub.json"):
        (mounts / "keys" / key).write_bytes((source / key).read_bytes())
    project = tmp_path / "srv-atrium"

    done = run_init(mounts, project)

    assert done.returncode == 0, done.stderr
    for key in OLD_KEY_FILES:
        path = project / ".atrium" / key
        assert path.read_bytes() == (mounts / "keys" / key).read_bytes()
        assert path.stat().st_mode & 0o777 == 0o600, key
    # Written from the store by whoever runs backends, never a stale copy.
    assert not (project / ".atrium" / "caller-keys.pub.json").exists()


def test_the_init_container_stops_a_pod_without_the_master_key_saying_so(
    mounts: Path, tmp_path: Path
) -> None:
    # Facing an empty store, such a pod would seal new keys under a master key of its own.
    (mounts / "keys" / MASTER_KEY).unlink()
    (mounts / "keys" / "session-key").write_bytes(os.urandom(32))  # other files do not do
    project = tmp_path / "srv-atrium"

    done = run_init(mounts, project)

    assert done.returncode == 1
    assert done.stderr.startswith("atrium: the atrium-keys Secret has no secret-key")
    assert "deploy/kubernetes/secrets.yaml" in done.stderr
    assert "Traceback" not in done.stderr
    assert not project.exists()  # stopped before laying anything out


def test_the_init_container_refuses_an_empty_master_key(mounts: Path, tmp_path: Path) -> None:
    (mounts / "keys" / MASTER_KEY).write_bytes(b"")

    done = run_init(mounts, tmp_path / "srv-atrium")

    assert done.returncode == 1
    assert "no secret-key" in done.stderr


def test_each_server_runs_in_its_own_deployment_behind_the_gateways_backend_host(
    mounts: Path, tmp_path: Path
) -> None:
    project = tmp_path / "srv-atrium"
    assert run_init(mounts, project).returncode == 0
    settings = project_settings(project)
    service = the("Service", settings.backend_host)
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}

    for entry in load_registry(settings):
        assert not isinstance(entry.config, RemoteServer)
        port = entry.config.port
        # Reachable from the gateway's pods: not on loopback only.
        command = entry.config.command or ()
        assert command[command.index("--host") + 1] == "0.0.0.0", entry.name
        deployment = the("Deployment", f"atrium-mcp-{entry.name}")
        (container,) = pod(deployment)["containers"]
        assert container["args"] == ["atrium", "infra", "services", "start", entry.name]
        assert container["ports"] == [{"name": entry.name, "containerPort": port}]
        assert service_ports[entry.name] == {
            "name": entry.name,
            "port": port,
            "targetPort": entry.name,
        }
        labels = pod_labels(deployment)
        assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert len(service_ports) == len(list(load_registry(settings)))


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_every_container_runs_the_one_atrium_image() -> None:
    images = {
        c["image"]
        for d in named("Deployment")
        for c in pod(d)["initContainers"] + pod(d)["containers"]
    }

    assert len(images) == 1, images  # built from deploy/Containerfile: replace it in one go


def test_every_port_name_is_one_kubernetes_accepts() -> None:
    names = [
        p["name"] for d in named("Deployment") for c in pod(d)["containers"] for p in c["ports"]
    ]

    assert names
    for name in names:
        assert PORT_NAME.match(name), name


def test_every_container_asks_for_resources_and_every_server_is_probed_on_health() -> None:
    for deployment in named("Deployment"):
        spec = pod(deployment)
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["initContainers"] + spec["containers"]:
            assert container["resources"]["requests"], container["name"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
        for container in spec["containers"]:
            port = container["ports"][0]["name"]
            for probe in ("readinessProbe", "livenessProbe"):
                check = container[probe]["httpGet"]
                assert (check["path"], check["port"]) == ("/health", port), probe


def test_a_stopping_gateway_has_longer_than_its_grace_period_and_its_preStop_pause(
    mounts: Path, tmp_path: Path
) -> None:
    project = tmp_path / "srv-atrium"
    assert run_init(mounts, project).returncode == 0
    grace_s = project_settings(project).shutdown_grace_s
    spec = pod(the("Deployment", "atrium-gateway"))
    (gateway,) = spec["containers"]
    pause_s = gateway["lifecycle"]["preStop"]["sleep"]["seconds"]

    assert grace_s > 10  # SSE: more than the default for calls that stream
    assert spec["terminationGracePeriodSeconds"] > pause_s + grace_s + UVICORN_GRACE_MARGIN_S


def test_the_gateway_scales_on_cpu_and_keeps_one_replica_through_disruptions() -> None:
    autoscaler = the("HorizontalPodAutoscaler", "atrium-gateway")
    budget = the("PodDisruptionBudget", "atrium-gateway")
    deployment = the("Deployment", "atrium-gateway")

    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "atrium-gateway"
    assert autoscaler["spec"]["minReplicas"] >= 2
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels(deployment).items()
    assert the("Service", "atrium-gateway")["spec"]["selector"].items() <= (
        pod_labels(deployment).items()
    )


def test_the_secrets_pods_read_are_declared_except_the_master_key_made_from_a_project() -> None:
    declared = {s["metadata"]["name"]: s for s in named("Secret")}
    read: set[tuple[str, str | None]] = set()
    for deployment in named("Deployment"):
        spec = pod(deployment)
        for container in spec["containers"]:
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    read.add((ref["name"], ref["key"]))
            for source in container.get("envFrom", []):
                read.add((source["secretRef"]["name"], None))
        for volume in spec["volumes"]:
            if "secret" in volume:
                read.add((volume["secret"]["secretName"], None))

    for name, key in read:
        if name == "atrium-keys":
            continue  # kubectl create secret --from-file, from the project's .atrium/
        assert name in declared, name
        assert key is None or key in declared[name]["stringData"], (name, key)
    assert ("atrium-keys", None) in read


def test_the_namespace_enforces_the_restricted_pod_security_standard() -> None:
    (namespace,) = named("Namespace")
    labels = namespace["metadata"]["labels"]

    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for _, resource in resources():
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace["metadata"]["name"]


def test_the_pinned_version_is_one_the_validator_knows() -> None:
    assert kubernetes_validate.utils.major_minor(VERSION) in {
        kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()
    }


def test_a_server_started_as_its_deployment_starts_it_serves_a_gateway_from_another_address(
    mounts: Path, tmp_path: Path
) -> None:
    # The pod's project, its server on a free port; the gateway's pod is "another address":
    # 127.0.0.2 stands for the atrium-mcp Service, which a server on loopback would refuse.
    # Its .atrium/ holds the master key alone: it signs and verifies with the store's keys.
    project = tmp_path / "srv-atrium"
    source = tmp_path / "source"  # the project the mounts fixture made: the first host
    assert run_init(mounts, project).returncode == 0
    server = project / "services/mcp/atrium.yaml"
    server.write_text(server.read_text().replace("port: 5010", f"port: {free_port_in(5000, 5999)}"))
    for name in ("soul", "content-manager", "marketplace"):
        (project / f"services/mcp/{name}.yaml").unlink()
    settings = project / "atrium.yaml"
    settings.write_text(
        settings.read_text().replace("backend_host: atrium-mcp", "backend_host: 127.0.0.2")
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        # The store the init'd project made (with its admin), as every pod shares one.
        "ATRIUM_DATABASE_URL": f"sqlite:///{source / '.atrium/atrium.db'}",
        "ATRIUM_GATEWAY_HOST": "127.0.0.1",
        "ATRIUM_GATEWAY_PORT": str(port),
        "ATRIUM_PUBLIC_URL": base,
        "NO_COLOR": "1",
    }
    synced = cli(project, "cloud", "sync", "local", "mcp", "--direction", "to-db", "-y", env=env)
    assert synced.exit_code == 0, synced.stderr
    (container,) = pod(the("Deployment", "atrium-mcp-atrium"))["containers"]
    log = tmp_path / "out.log"
    # Issued where `atrium init` ran, before any pod: its key file goes into the store then,
    # sealed under the master key the pods are given, and the pod's gateway verifies with it.
    issued = cli(
        source, "admin", "token", "issue", "--user", "admin", "--server", "atrium", env=env
    )
    assert issued.exit_code == 0, issued.stderr
    token = issued.stdout.split()[-1]

    with (
        started([*atrium(project), *container["args"][1:]], env, log),
        started([*atrium(project), "gateway"], env, log),
    ):
        wait_until(
            lambda: routed(base, "atrium"),
            timeout_s=60,
            what="the atrium server",
            detail=lambda: tail(log),
        )
        listed = httpx2.post(
            f"{base}/api/v1/mcp/atrium/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            timeout=30,
        )

    assert listed.status_code == 200, listed.text
    assert "list_playbooks" in {tool["name"] for tool in listed.json()["result"]["tools"]}
    (first_key,) = json.loads((source / ".atrium/signing-keys.json").read_text())["keys"]
    assert jwt_kid(token) == first_key["kid"]
    assert not (project / ".atrium/signing-keys.json").exists()


def jwt_kid(token: str) -> str:
    header = token.split(".")[0]
    kid: str = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]
    return kid
