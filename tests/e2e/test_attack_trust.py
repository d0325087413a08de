"""Red team: attacks on the trust between the gateway and its backends, on session ownership,
and on the ``atrium`` server's CLI executor, against one real Atrium (``atrium init`` +
``atrium start``: supervisor, gateway and real backend processes on loopback).

Every test asserts the SECURE behaviour: a failing test is an attack that got through.

The instance hosts:

* ``atrium``: the built-in server with its default allow-list, opened to users;
* ``ops``: the same built-in server with a broadened allow-list (``plugins mcp``, ``infra``,
  ``admin token issue``), as an operator might configure it with ``ATRIUM_ALLOWED_COMMANDS``;
* ``probe`` / ``other`` / ``anon``: a user's toolkit server (``probe_server.py`` below), run
  under three names; ``probe`` denies its ``danger`` tool at the gateway, ``anon`` lets
  anonymous callers in; each records the tools it ran in a file;
* ``time``: the third-party stdio server ``mcp-server-time`` behind the stdio bridge;
* ``remote-plain`` / ``remote-fwd``: remote servers answered by a capturing HTTP server in this
  process, without and with ``forward_identity``;
* ``remote-probe``: a remote server whose URL is the ``probe`` backend's own port, with
  ``forward_identity`` (an assertion minted for one name must not open another backend).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from atrium.auth.access_tokens import TokenIssuer
from atrium.auth.assertion import PRIVATE_FILE, PUBLIC_FILE, TYPE
from atrium.auth.keys import KeySet
from tests.e2e.instance import Instance, started_instance
from tests.gateway.helpers import legacy_headers, legacy_session
from tests.polling import until, wait_until
from tests.processes import free_port

TIME = Path(sys.executable).parent / "mcp-server-time"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}
USER_SCOPES = ("user", "tools:read", "tools:write")
ALICE = ("user-alice", "alice-app")
ALICE_OTHER_CLIENT = ("user-alice", "alice-other-app")
MALLORY = ("user-mallory", "mallory-app")
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}")

PROBE_SERVER = '''
"""A user's toolkit server: who calls, a careless debugging tool, a dangerous tool."""
import json
import sys
from pathlib import Path

from atrium import AtriumServer, Context, ToolAnnotations, current_caller, run

server = AtriumServer("probe", version="1.0.0")
argv = sys.argv[1:]
index = argv.index("--calls")
CALLS = Path(argv[index + 1])
del argv[index : index + 2]


def note(tool, ctx):
    caller = current_caller(ctx)
    record = {"tool": tool, "subject": caller.subject, "client_id": caller.client_id,
              "server": caller.server, "rid": caller.request_id}
    with CALLS.open("a") as calls:
        calls.write(json.dumps(record) + "\\n")
    return record


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def whoami(ctx: Context) -> str:
    """Who the gateway says is calling."""
    return json.dumps(note("whoami", ctx))


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def leak(ctx: Context) -> str:
    """A careless debugging tool: echoes the caller assertion it received."""
    request = ctx.request_context.request
    return request.headers.get("atrium-caller-assertion", "")


@server.tool()
def danger(ctx: Context) -> str:
    """Denied by the gateway's policy for this server."""
    note("danger", ctx)
    return "danger ran"


if __name__ == "__main__":
    run(server, argv)
'''


# -- a capturing remote MCP server -------------------------------------------------------------


# What the capturing server answers to each method (anything else: an empty result).
CAPTURED_RESULTS: dict[str, dict[str, Any]] = {
    "initialize": {
        "protocolVersion": LEGACY,
        "capabilities": {"tools": {}},
        "serverInfo": {"name": "capture", "version": "1"},
    },
    "tools/list": {
        "tools": [
            {
                "name": "echo",
                "inputSchema": {"type": "object"},
                "annotations": {"readOnlyHint": True},
            }
        ]
    },
    "tools/call": {"content": [{"type": "text", "text": "captured"}]},
}


class Capture:
    """A plain HTTP server answering JSON-RPC, recording every request's path and headers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, list[tuple[str, str]]]] = []
        lock = threading.Lock()
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def _record(self) -> None:
                with lock:
                    seen.append((self.command, self.path, list(self.headers.items())))

            def _answer(self, status: int, body: bytes = b"") -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self._record()
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    message = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    message = {}
                if "id" not in message:
                    self._answer(202)
                    return
                result = CAPTURED_RESULTS.get(message.get("method"), {})
                answer = {"jsonrpc": "2.0", "id": message["id"], "result": result}
                self._answer(200, json.dumps(answer).encode())

            def do_GET(self) -> None:
                self._record()
                self._answer(405)

            do_DELETE = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def requests_to(self, prefix: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
        return [seen for seen in list(self.seen) if seen[1].startswith(prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- the lab ---------------------------------------------------------------------------------


@dataclass
class Lab:
    instance: Instance
    ports: dict[str, int]
    calls: dict[str, Path]
    capture: Capture
    decoy: Path
    issuer: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> Path:
        return self.instance.project / ".atrium"

    @property
    def gateway_port(self) -> int:
        return int(self.instance.base.rsplit(":", 1)[1])

    def token(
        self,
        server: str,
        who: tuple[str, str],
        scopes: tuple[str, ...] = USER_SCOPES,
    ) -> str:
        """An access token as the token endpoint or ``admin token issue`` mints it."""
        issuer = TokenIssuer(KeySet.load(self.state), self.issuer, ttl_s=600)
        value, _ = issuer.mint(
            subject=who[0],
            client_id=who[1],
            audience=[self.instance.url(server)],
            scopes=list(scopes),
        )
        return str(value)

    def bearer(self, server: str, who: tuple[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(server, who)}"}

    def ran(self, server: str) -> list[dict[str, Any]]:
        path = self.calls[server]
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    async def audit(self, limit: int = 3000, server: str | None = None) -> list[Any]:
        """The audit trail as the store holds it (newest first), arguments included."""
        from atrium.settings import load_settings
        from atrium.store import Store

        store = await Store.open(load_settings(self.instance.project, self.instance.env))
        try:
            return list(await store.audit.list_recent(limit, server=server))
        finally:
            await store.close()

    async def audit_until(
        self, check: Any, what: str, server: str | None = None, deadline_s: float = 10
    ) -> list[Any]:
        """Poll the trail until ``check(records)`` holds (the sink writes in batches)."""

        async def enough() -> list[Any] | None:
            records = await self.audit(server=server)
            return records if check(records) else None

        return await until(enough, what=what, timeout_s=deadline_s, interval=0.3)


def _yaml(name: str, config: dict[str, Any]) -> str:
    return json.dumps({"mcp_servers": {name: config}})


def _healthy(port: int) -> bool:
    try:
        return httpx2.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx2.HTTPError:
        return False


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    folder = tmp_path_factory.mktemp("attack")
    probe = folder / "probe_server.py"
    probe.write_text(PROBE_SERVER)
    capture = Capture()
    decoy = folder / "decoy"
    (decoy / "services/mcp").mkdir(parents=True)
    (decoy / "services/mcp/decoy.yaml").write_text(
        _yaml("decoy-marker", {"transport": "remote", "url": "http://127.0.0.1:9/mcp"})
    )
    ports = {name: free_port() for name in ("atrium", "ops", "probe", "other", "anon", "time")}
    calls = {name: folder / f"calls-{name}.txt" for name in ("probe", "other", "anon")}
    required = {"required": True, "scopes": ["user", "tools:write", "admin"]}

    def toolkit(name: str, oauth: dict[str, Any], **extra: Any) -> str:
        command = [sys.executable, str(probe), "--port", "{port}", "--project", "{project}"]
        command += ["--calls", str(calls[name])]
        config = {"transport": "http", "command": command, "port": ports[name], "oauth": oauth}
        return _yaml(name, {**config, **extra})

    def remote(path: str, **extra: Any) -> dict[str, Any]:
        return {
            "transport": "remote",
            "url": f"http://127.0.0.1:{capture.port}{path}",
            "oauth": {"required": True},
            **extra,
        }

    servers = {
        "atrium": _yaml(
            "atrium",
            {
                "binary": "atrium-mcp-atrium",
                "port": ports["atrium"],
                "oauth": required,
                "tools": {"scopes": {"show_playbook": ["admin"]}},
            },
        ),
        "ops": _yaml(
            "ops",
            {
                "binary": "atrium-mcp-atrium",
                "port": ports["ops"],
                "oauth": required,
                "env": {"ATRIUM_ALLOWED_COMMANDS": "plugins mcp, infra, admin token issue"},
            },
        ),
        "probe": toolkit("probe", {"required": True}, tools={"denied": ["danger"]}),
        "other": toolkit("other", {"required": True}),
        "anon": toolkit("anon", {"required": False}),
        "time": _yaml(
            "time",
            {
                "transport": "stdio",
                "command": [str(TIME)],
                "port": ports["time"],
                "oauth": {"required": True},
            },
        ),
        "remote-plain": _yaml("remote-plain", remote("/plain/mcp")),
        "remote-fwd": _yaml("remote-fwd", remote("/fwd/mcp", forward_identity=True)),
        "remote-probe": _yaml(
            "remote-probe",
            {
                "transport": "remote",
                "url": f"http://127.0.0.1:{ports['probe']}/mcp",
                "forward_identity": True,
                "oauth": {"required": True},
            },
        ),
    }
    try:
        with started_instance(folder / "project", servers=servers) as instance:
            for name, port in ports.items():
                wait_until(partial(_healthy, port), timeout_s=90, what=f"{name} healthy")
            issuer = json.loads((instance.project / ".atrium" / PUBLIC_FILE).read_text())["issuer"]
            yield Lab(instance, ports, calls, capture, decoy, issuer)
    finally:
        capture.close()


# -- raw HTTP, as an attacker on the host writes it -------------------------------------------


def raw(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    extra: bytes = b"",
) -> tuple[int, bytes]:
    """One request exactly as written (no path normalisation); the status and whole answer."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n").encode("latin-1") + extra + b"\r\n" + body
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=15) as conn:
        conn.sendall(data)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return (int(match[1]) if match else 0), answer


def call_body(tool: str, arguments: dict[str, Any] | None = None, *, modern: bool = True) -> bytes:
    params: dict[str, Any] = {"name": tool, "arguments": arguments or {}}
    if modern:
        params["_meta"] = META
    return json.dumps(
        {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
    ).encode()


def modern_headers(tool: str, method: str = "tools/call") -> list[tuple[str, str]]:
    return [
        ("Accept", ACCEPT),
        ("Content-Type", "application/json"),
        ("MCP-Protocol-Version", MODERN),
        ("Mcp-Method", method),
        ("Mcp-Name", tool),
    ]


def direct_call(
    port: int, tool: str, assertion_headers: list[tuple[str, str]], target: str = "/mcp"
) -> tuple[int, bytes]:
    """A 2026-07-28 tools/call straight to a backend port."""
    return raw(port, "POST", target, modern_headers(tool) + assertion_headers, call_body(tool))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def real_key(state: Path) -> tuple[Ed25519PrivateKey, str]:
    jwk = json.loads((state / PRIVATE_FILE).read_text())["keys"][0]
    return Ed25519PrivateKey.from_private_bytes(_unb64(jwk["d"])), str(jwk["kid"])


def claims_for(lab: Lab, server: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": lab.issuer,
        "aud": server,
        "iat": now,
        "exp": now + 60,
        "origin": "external",
        "rid": uuid.uuid4().hex,
        "jti": uuid.uuid4().hex,
        "scope": "admin tools:write user",
        "sub": "forged-admin",
        "client_id": "forged",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def sign(
    key: Ed25519PrivateKey, kid: str, claims: dict[str, Any], *, alg: str = "EdDSA", typ: str = TYPE
) -> str:
    header = _b64(json.dumps({"alg": alg, "typ": typ, "kid": kid}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = _b64(key.sign(f"{header}.{payload}".encode()))
    return f"{header}.{payload}.{signature}"


def vouch(lab: Lab, server: str, **changes: Any) -> str:
    """What the gateway's key would sign (a captured or a mis-minted assertion)."""
    key, kid = real_key(lab.state)
    return sign(key, kid, claims_for(lab, server, **changes))


H = "Atrium-Caller-Assertion"


# -- 1. backends trust only the gateway -------------------------------------------------------


TOOL_OF = {"probe": "whoami", "atrium": "list_playbooks", "time": "get_current_time"}


@pytest.mark.parametrize("server", ["probe", "atrium", "time"])
def test_control_a_gateway_signed_assertion_opens_the_backend(lab: Lab, server: str) -> None:
    """The harness works: with a good assertion the direct call runs (so the refusals below
    are refusals, not a broken request)."""
    before = len(lab.ran("probe"))

    status, answer = direct_call(lab.ports[server], TOOL_OF[server], [(H, vouch(lab, server))])

    assert status == 200, answer
    assert b'"isError":true' not in answer.replace(b" ", b"") or server == "time", answer
    if server == "probe":
        assert len(lab.ran("probe")) == before + 1


def _forgeries(lab: Lab, server: str) -> dict[str, list[tuple[str, str]]]:
    key, kid = real_key(lab.state)
    attacker = Ed25519PrivateKey.generate()
    public = json.loads((lab.state / PUBLIC_FILE).read_text())["keys"][0]["x"]
    good = claims_for(lab, server)
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": TYPE, "kid": kid}).encode())
    payload = _b64(json.dumps(good).encode())
    mac = hmac.HMAC(public.encode(), hashes.SHA256())
    mac.update(f"{header}.{payload}".encode())
    hs256 = f"{header}.{payload}.{_b64(mac.finalize())}"
    none_header = _b64(json.dumps({"alg": "none", "typ": TYPE, "kid": kid}).encode())
    for_other = sign(key, kid, claims_for(lab, "other"))
    spliced = ".".join(
        [for_other.split(".")[0], payload, for_other.split(".")[2]]
    )  # the signature of another server's assertion over a payload for this one
    return {
        "no header": [],
        "empty header": [(H, "")],
        "alg none": [(H, f"{none_header}.{payload}.")],
        "attacker key, real kid": [(H, sign(attacker, kid, good))],
        "attacker key, own kid": [(H, sign(attacker, "attacker", good))],
        "HS256 keyed with the public key": [(H, hs256)],
        "assertion for another server (aud)": [(H, for_other)],
        "aud as a list": [(H, sign(key, kid, {**good, "aud": [server]}))],
        "expired (captured 2 minutes ago)": [
            (H, sign(key, kid, {**good, "iat": now - 130, "exp": now - 70}))
        ],
        "lifetime of an hour": [(H, sign(key, kid, {**good, "exp": now + 3600}))],
        "issued in the future": [(H, sign(key, kid, {**good, "iat": now + 600, "exp": now + 630}))],
        "another issuer": [(H, sign(key, kid, {**good, "iss": "http://evil.example"}))],
        "typ JWT": [(H, sign(key, kid, good, typ="JWT"))],
        "spliced signature": [(H, spliced)],
        "oversized": [(H, sign(key, kid, {**good, "pad": "x" * 5000}))],
        "two headers, good first": [(H, sign(key, kid, good)), (H, "junk")],
        "two headers, good last": [(H, "junk"), (H, sign(key, kid, good))],
        "two good headers, two cases": [
            (H, sign(key, kid, good)),
            (H.lower(), sign(key, kid, good)),
        ],
        "comma-joined": [(H, sign(key, kid, good) + ", " + sign(key, kid, good))],
        "underscore name": [(H.replace("-", "_"), sign(key, kid, good))],
        "as a bearer token": [("Authorization", "Bearer " + sign(key, kid, good))],
    }


@pytest.mark.parametrize("server", ["probe", "atrium", "time"])
def test_direct_requests_without_a_valid_assertion_are_refused(lab: Lab, server: str) -> None:
    port = lab.ports[server]
    before = len(lab.ran("probe"))
    outcomes = {
        name: direct_call(port, TOOL_OF[server], headers)[0]
        for name, headers in _forgeries(lab, server).items()
    }

    # 401 from the backend's check; any other 4xx is the HTTP parser refusing first.
    assert {name: status for name, status in outcomes.items() if not 400 <= status < 500} == {}
    assert len(lab.ran("probe")) == before


def test_a_valid_assertion_in_the_query_string_is_refused(lab: Lab) -> None:
    before = len(lab.ran("probe"))
    status, _ = direct_call(lab.ports["probe"], "whoami", [], f"/mcp?{H}={vouch(lab, 'probe')}")
    assert status == 401
    assert len(lab.ran("probe")) == before


PATH_TRICKS = [
    "/mcp/",
    "//mcp",
    "/./mcp",
    "/health/../mcp",
    "/health/%2e%2e/mcp",
    "/health%2f..%2fmcp",
    "/health%2F%2E%2E%2Fmcp",
    "/%6dcp",
    "/MCP",
    "/mcp;x",
    "/mcp%00",
    "/health/",
    "/health/mcp",
    "/health?/mcp",
    "/health#/mcp",
    "/health/..%2fmcp",
    "http://127.0.0.1/health/../mcp",
    "*",
]


@pytest.mark.parametrize("server", ["probe", "atrium", "time"])
def test_path_tricks_never_reach_the_mcp_app(lab: Lab, server: str) -> None:
    port = lab.ports[server]
    before = len(lab.ran("probe"))
    statuses = {target: direct_call(port, "whoami", [], target)[0] for target in PATH_TRICKS}
    # /health itself with a POST: open path, but only GET is routed there.
    statuses["POST /health"] = direct_call(port, "whoami", [], "/health")[0]

    got_in = {target: status for target, status in statuses.items() if 200 <= status < 300}
    assert got_in == {}
    assert len(lab.ran("probe")) == before


@pytest.mark.parametrize("server", ["probe", "atrium", "time"])
def test_every_method_on_mcp_needs_an_assertion(lab: Lab, server: str) -> None:
    port = lab.ports[server]
    statuses = {
        method: raw(port, method, "/mcp", [("Accept", ACCEPT), ("Mcp-Session-Id", "x")])[0]
        for method in ("GET", "DELETE", "HEAD", "OPTIONS", "PUT", "PATCH", "TRACE", "CONNECT")
    }
    assert {m: s for m, s in statuses.items() if s < 400 or s >= 500} == {}


@pytest.mark.parametrize("server", ["probe", "time"])
def test_a_websocket_upgrade_is_not_accepted(lab: Lab, server: str) -> None:
    upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()),
        ("Sec-WebSocket-Version", "13"),
    ]
    status, _ = raw(lab.ports[server], "GET", "/mcp", upgrade)
    assert status != 101
    assert not 200 <= status < 300


def test_a_pipelined_request_after_health_needs_an_assertion_too(lab: Lab) -> None:
    port = lab.ports["probe"]
    before = len(lab.ran("probe"))
    body = call_body("whoami")
    head = "\r\n".join(
        ["POST /mcp HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        + [f"{k}: {v}" for k, v in modern_headers("whoami")]
        + [f"Content-Length: {len(body)}"]
    )
    health = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    pipelined = health + head.encode() + b"\r\nConnection: close\r\n\r\n" + body
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(pipelined)
        while True:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    answers = re.findall(rb"HTTP/1\.1 (\d{3})", b"".join(chunks))
    assert answers[:1] == [b"200"]  # /health
    assert b"401" in answers[1:]
    assert len(lab.ran("probe")) == before


# -- assertions obtained legitimately through the gateway -------------------------------------


async def _leaked_assertion(lab: Lab, who: tuple[str, str]) -> str:
    """An assertion as the gateway signs it for ``probe``, already used once, as if captured
    on its way. A careless tool cannot hand one out: the backend hides it from tools."""
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(
            lab.instance.url("probe"),
            content=call_body("leak"),
            headers=dict(modern_headers("leak")) | lab.bearer("probe", who),
        )
    assert response.status_code == 200, response.text
    assert JWT.search(response.text) is None, response.text  # the tool saw no assertion
    captured = vouch(lab, "probe", sub=who[0], client_id=who[1], scope="tools:write user")
    status, answer = direct_call(lab.ports["probe"], "whoami", [(H, captured)])
    assert status == 200, answer  # its one legitimate use
    return captured


async def test_a_real_assertion_for_probe_opens_no_other_backend(lab: Lab) -> None:
    leaked = await _leaked_assertion(lab, MALLORY)
    before = {name: len(lab.ran(name)) for name in ("other", "anon")}

    statuses = {
        "other": direct_call(lab.ports["other"], "whoami", [(H, leaked)])[0],
        "anon": direct_call(lab.ports["anon"], "whoami", [(H, leaked)])[0],
        "atrium": direct_call(lab.ports["atrium"], "list_playbooks", [(H, leaked)])[0],
        "ops": direct_call(lab.ports["ops"], "list_playbooks", [(H, leaked)])[0],
        "time": direct_call(lab.ports["time"], "get_current_time", [(H, leaked)])[0],
    }

    assert statuses == dict.fromkeys(statuses, 401)
    assert {name: len(lab.ran(name)) for name in ("other", "anon")} == before


async def test_a_leaked_assertion_cannot_be_replayed_to_bypass_the_gateway_policy(lab: Lab) -> None:
    """``danger`` is denied by the gateway's policy for ``probe``. An assertion that reached
    the client (a debugging tool echoing it, a log, a proxy) must not let the client call the
    backend itself, around policy, rate limits and the audit trail."""
    leaked = await _leaked_assertion(lab, MALLORY)
    async with httpx2.AsyncClient(timeout=30) as http:
        through_gateway = await http.post(
            lab.instance.url("probe"),
            content=call_body("danger"),
            headers=dict(modern_headers("danger")) | lab.bearer("probe", MALLORY),
        )
    before = len(lab.ran("probe"))

    replayed = [direct_call(lab.ports["probe"], "danger", [(H, leaked)]) for _ in range(2)]

    assert b"danger ran" not in through_gateway.content  # the gateway does refuse it
    ran = [call for call in lab.ran("probe")[before:] if call["tool"] == "danger"]
    assert [status for status, _ in replayed] == [401, 401], (
        f"replayed assertion accepted {len(ran)} times: danger ran as {ran}"
    )


async def test_a_leaked_assertion_does_not_open_another_callers_backend_session(lab: Lab) -> None:
    """Straight to the backend with a captured assertion and whatever alice's sealed session
    id gives away: nothing runs (the assertion was used, and the id hides the backend's)."""
    async with httpx2.AsyncClient(timeout=30) as http:
        session = await legacy_session(http, lab.instance.url("probe"), lab.bearer("probe", ALICE))
    backend_id = session.rpartition(".")[0]
    leaked = await _leaked_assertion(lab, MALLORY)
    before = len(lab.ran("probe"))

    headers = [
        ("Accept", ACCEPT),
        ("Content-Type", "application/json"),
        ("MCP-Protocol-Version", LEGACY),
        ("Mcp-Session-Id", backend_id),
        (H, leaked),
    ]
    status, answer = raw(
        lab.ports["probe"], "POST", "/mcp", headers, call_body("whoami", modern=False)
    )

    assert status == 404 or status == 401, answer
    assert len(lab.ran("probe")) == before


async def test_a_client_sent_assertion_header_is_not_forwarded_to_a_backend(lab: Lab) -> None:
    leaked = await _leaked_assertion(lab, MALLORY)
    results = {}
    async with httpx2.AsyncClient(timeout=30) as http:
        for name in (H, H.lower(), H.upper()):
            response = await http.post(
                lab.instance.url("probe"),
                content=call_body("whoami"),
                headers=dict(modern_headers("whoami"))
                | lab.bearer("probe", ALICE)
                | {name: leaked},
            )
            results[name] = (response.status_code, response.text)

    for name, (status, text) in results.items():
        assert status == 200, (name, text)
        assert ALICE[0] in text, (name, text)
        assert MALLORY[0] not in text, (name, text)


async def test_a_remote_server_never_gets_an_assertion_unless_it_asks(lab: Lab) -> None:
    leaked = await _leaked_assertion(lab, MALLORY)
    smuggled = {H: leaked, "X-" + H: leaked}
    async with httpx2.AsyncClient(timeout=30) as http:
        for server in ("remote-plain", "remote-fwd"):
            auth = lab.bearer(server, ALICE)
            mcp = await http.post(
                lab.instance.url(server),
                content=json.dumps(
                    {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
                ),
                headers=dict(modern_headers("", "tools/list")[:4]) | auth | smuggled,
            )
            assert mcp.status_code == 200, mcp.text
            spec = await http.get(
                f"{lab.instance.base}/api/v1/mcp/{server}/openapi.json", headers=auth | smuggled
            )
            assert spec.status_code == 200, spec.text
            rest = await http.post(
                f"{lab.instance.base}/api/v1/mcp/{server}/tools/echo",
                json={},
                headers=auth | smuggled,
            )
            assert rest.status_code == 200, rest.text

    def assertions(prefix: str) -> list[list[str]]:
        return [
            [value for name, value in headers if name.lower() == H.lower()]
            for method, _, headers in lab.capture.requests_to(prefix)
            if method == "POST"
        ]

    def forwarded_auth(prefix: str) -> list[str]:
        return [
            value
            for _, _, headers in lab.capture.requests_to(prefix)
            for name, value in headers
            if name.lower() in ("authorization", "x-" + H.lower(), "cookie")
        ]

    plain, fwd = assertions("/plain"), assertions("/fwd")
    assert plain
    assert all(found == [] for found in plain)
    assert fwd
    assert all(len(found) == 1 for found in fwd)
    assert all(found[0] != leaked for found in fwd)
    claims = [json.loads(_unb64(found[0].split(".")[1])) for found in fwd]
    assert {c["aud"] for c in claims} == {"remote-fwd"}
    assert {c.get("sub") for c in claims} == {ALICE[0]}
    assert forwarded_auth("/plain") == []
    assert forwarded_auth("/fwd") == []


async def test_an_assertion_forwarded_to_a_remote_name_does_not_open_a_local_backend(
    lab: Lab,
) -> None:
    before = len(lab.ran("probe"))
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(
            lab.instance.url("remote-probe"),
            content=call_body("whoami"),
            headers=dict(modern_headers("whoami")) | lab.bearer("remote-probe", ALICE),
        )

    assert response.status_code == 401, response.text
    assert len(lab.ran("probe")) == before


GATEWAY_TRICKS = [
    "/api/v1/mcp/other/../probe/mcp",
    "/api/v1/mcp/other/%2e%2e/probe/mcp",
    "/api/v1/mcp/other%2f..%2fprobe/mcp",
    "/api/v1/mcp/probe/mcp/",
    "//api/v1/mcp/probe/mcp",
    "/api/v1/mcp//probe/mcp",
    "/api/v1/mcp/PROBE/mcp",
    "/api/v1/mcp/probe%00/mcp",
    "/api/v1/mcp/pro%62e/mcp",
    "/api/v1/mcp/probe/mcp;other",
    "/api/v1/mcp/probe/mcp?server=other",
    "/API/v1/mcp/probe/mcp",
    "/api/v1/mcp/probe/tools/whoami",
    "/api/v1/mcp/probe/tools/danger",
    "/api/v1/mcp/registry/probe/mcp",
]


def test_a_token_for_one_server_gets_no_assertion_for_another_through_path_tricks(
    lab: Lab,
) -> None:
    port = lab.gateway_port
    token = lab.token("other", MALLORY)
    before = len(lab.ran("probe"))
    statuses = {}
    for target in GATEWAY_TRICKS:
        headers = [*modern_headers("whoami"), ("Authorization", f"Bearer {token}")]
        statuses[target] = raw(port, "POST", target, headers, call_body("whoami"))[0]

    assert {t: s for t, s in statuses.items() if 200 <= s < 300} == {}
    assert len(lab.ran("probe")) == before


def test_no_assertion_is_written_to_any_log_or_the_store(lab: Lab) -> None:
    prefix_json = b'{"alg": "EdDSA", "typ": "atrium-caller+jwt", "kid": '
    compact = b'{"alg":"EdDSA","typ":"atrium-caller+jwt","kid":"'
    prefixes = {_b64(p[: len(p) // 3 * 3]).encode() for p in (prefix_json, compact)}
    found = []
    for path in lab.instance.project.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(prefix in data for prefix in prefixes):
                found.append(str(path.relative_to(lab.instance.project)))
    assert found == []


# -- 2. sessions bound to their owner ---------------------------------------------------------


def _tag(session: str) -> str:
    return session.rpartition(".")[2]


async def test_another_caller_cannot_use_read_or_end_a_session_and_is_audited(lab: Lab) -> None:
    url = lab.instance.url("probe")
    started = time.time() - 1
    async with httpx2.AsyncClient(timeout=30) as http:
        alice = lab.bearer("probe", ALICE)
        mallory = lab.bearer("probe", MALLORY)
        session = await legacy_session(http, url, alice)
        own = await legacy_session(http, url, mallory)
        backend_id, _, tag = session.rpartition(".")
        flip = "A" if tag[0] != "A" else "B"
        variants = {
            "as issued": session,
            "backend id alone": backend_id,
            "tag truncated by one": session[:-1],
            "tag truncated to half": session[: len(session) - len(tag) // 2],
            "empty tag": backend_id + ".",
            "extra dot": session + ".",
            "extra segment": session + "." + _tag(own),
            "double dot": backend_id + ".." + tag,
            "first tag char flipped": backend_id + "." + flip + tag[1:],
            "upper-cased tag": backend_id + "." + tag.upper(),
            "mallory's own tag on alice's id": backend_id + "." + _tag(own),
            "alice's tag with a dot in the id": backend_id + ".x." + tag,
            "padded tag": session + "==",
        }
        before = len(lab.ran("probe"))
        answers = {}
        for name, value in variants.items():
            post = await http.post(
                url,
                content=call_body("whoami", modern=False),
                headers=legacy_headers(value) | mallory,
            )
            answers[f"POST {name}"] = post.status_code
        stream = {"Accept": "text/event-stream", "MCP-Protocol-Version": LEGACY}
        get = await http.get(
            url, headers=stream | {"Mcp-Session-Id": session, "Last-Event-ID": "0"} | mallory
        )
        answers["GET with Last-Event-ID"] = get.status_code
        modern = await http.post(
            url,
            content=call_body("whoami"),
            headers=dict(modern_headers("whoami")) | {"Mcp-Session-Id": session} | mallory,
        )
        answers["POST 2026-07-28 naming the session"] = modern.status_code
        delete = await http.delete(url, headers=legacy_headers(session) | mallory)
        answers["DELETE"] = delete.status_code
        still = await http.post(
            url, content=call_body("whoami", modern=False), headers=legacy_headers(session) | alice
        )

    assert {k: v for k, v in answers.items() if v != 404} == {}
    assert still.status_code == 200, still.text
    assert ALICE[0] in still.text, still.text
    assert [c for c in lab.ran("probe")[before:] if c["subject"] == MALLORY[0]] == []

    def refused_of(records: list[Any]) -> list[Any]:
        return [
            r
            for r in records
            if r.subject == MALLORY[0] and r.status == 404 and r.at.timestamp() >= started
        ]

    records = await lab.audit_until(
        lambda rs: len(refused_of(rs)) >= len(answers), "the refusals", "probe"
    )
    refused = refused_of(records)
    methods = sorted(str(r.method) for r in refused)
    assert len(refused) >= len(answers), methods
    assert {"GET", "DELETE"} <= set(methods)


async def test_the_same_subject_through_another_client_is_another_caller(lab: Lab) -> None:
    url = lab.instance.url("probe")
    async with httpx2.AsyncClient(timeout=30) as http:
        session = await legacy_session(http, url, lab.bearer("probe", ALICE))
        other_client = await http.post(
            url,
            content=call_body("whoami", modern=False),
            headers=legacy_headers(session) | lab.bearer("probe", ALICE_OTHER_CLIENT),
        )
        admin_scopes = await http.post(
            url,
            content=call_body("whoami", modern=False),
            headers=legacy_headers(session)
            | {"Authorization": f"Bearer {lab.token('probe', MALLORY, ('admin', *USER_SCOPES))}"},
        )
    assert (other_client.status_code, admin_scopes.status_code) == (404, 404)


async def test_a_session_of_one_server_is_refused_on_another(lab: Lab) -> None:
    async with httpx2.AsyncClient(timeout=30) as http:
        session = await legacy_session(http, lab.instance.url("probe"), lab.bearer("probe", ALICE))
        before = len(lab.ran("other"))
        response = await http.post(
            lab.instance.url("other"),
            content=call_body("whoami", modern=False),
            headers=legacy_headers(session) | lab.bearer("other", ALICE),
        )
    assert response.status_code == 404
    assert "Session not found" in response.text
    assert len(lab.ran("other")) == before


async def test_anonymous_and_signed_in_callers_never_share_a_session(lab: Lab) -> None:
    url = lab.instance.url("anon")
    async with httpx2.AsyncClient(timeout=30) as http:
        # Anonymous callers may call anon's read-only tools once the gateway has listed them.
        listed = await http.post(
            url,
            content=json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
            ),
            headers=dict(modern_headers("", "tools/list")[:4]),
        )
        assert listed.status_code == 200, listed.text
        alices = await legacy_session(http, url, lab.bearer("anon", ALICE))
        anonymous = await legacy_session(http, url, {})
        before = len(lab.ran("anon"))
        anon_on_alice = await http.post(
            url, content=call_body("whoami", modern=False), headers=legacy_headers(alices)
        )
        alice_on_anon = await http.post(
            url,
            content=call_body("whoami", modern=False),
            headers=legacy_headers(anonymous) | lab.bearer("anon", ALICE),
        )
        mallory_on_anon = await http.post(
            url,
            content=call_body("whoami", modern=False),
            headers=legacy_headers(anonymous) | lab.bearer("anon", MALLORY),
        )
    assert (anon_on_alice.status_code, alice_on_anon.status_code, mallory_on_anon.status_code) == (
        404,
        404,
        404,
    )
    assert len(lab.ran("anon")) == before


async def test_a_session_id_with_non_ascii_bytes_is_refused_as_unknown(lab: Lab) -> None:
    """A tag the HMAC comparison cannot take (``hmac.compare_digest`` refuses non-ASCII
    ``str``) must still be a plain 404, audited, not a crash of the request."""
    started = time.time() - 1
    port = lab.gateway_port
    token = lab.token("probe", MALLORY)
    head = [
        ("Accept", ACCEPT),
        ("Content-Type", "application/json"),
        ("MCP-Protocol-Version", LEGACY),
        ("Authorization", f"Bearer {token}"),
    ]
    status, answer = raw(
        port,
        "POST",
        "/api/v1/mcp/probe/mcp",
        head,
        call_body("whoami", modern=False),
        extra=b"Mcp-Session-Id: abcdef.\xe9\xe9\xe9\r\n",
    )

    def attempts(records: list[Any]) -> list[Any]:
        return [r for r in records if r.subject == MALLORY[0] and r.at.timestamp() >= started]

    audited = attempts(await lab.audit_until(lambda rs: bool(attempts(rs)), "the attempt", "probe"))
    assert [(r.status, r.error) for r in audited][:1] == [(404, "Session not found")]
    assert status == 404, answer


# -- 3. the atrium server's CLI executor acts as its caller -----------------------------------


async def run_as(
    lab: Lab, who: tuple[str, str], commands: list[str], server: str = "atrium"
) -> list[dict[str, Any]]:
    """Each command through the gateway's ``atrium`` tool (on ``server``), one MCP session."""
    headers = lab.bearer(server, who)
    results = []
    async with httpx2.AsyncClient(headers=headers, timeout=90) as http:
        transport = streamable_http_client(lab.instance.url(server), http_client=http)
        async with Client(transport) as client:
            gate = asyncio.Semaphore(3)

            async def one(command: str) -> dict[str, Any]:
                async with gate:
                    result = await client.call_tool("atrium", {"command": command})
                text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
                return {
                    "command": command,
                    "error": result.is_error,
                    "text": text,
                    **(result.structured_content or {}),
                }

            results = await asyncio.gather(*(one(c) for c in commands))
    return list(results)


def _messages(response: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a JSON or SSE response."""
    if response.headers["content-type"].startswith("application/json"):
        return [json.loads(response.content)]
    found = []
    for event in response.text.replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in event.split("\n") if line.startswith("data:")]
        if any(data):  # a priming event (SEP-1699) has an id and empty data
            found.append(json.loads("\n".join(data)))
    return found


def _said(result: dict[str, Any]) -> str:
    return " ".join(str(result.get(k, "")) for k in ("text", "stdout", "stderr"))


async def test_a_user_cannot_mint_or_reach_admin_power(lab: Lab) -> None:
    commands = [
        "admin token issue --user admin --server atrium",
        "atrium admin token issue --user admin --server atrium",
        "plugins mcp list ; admin token issue --user admin --server atrium",
        "plugins mcp list && atrium admin token issue --user admin --server atrium",
        "plugins mcp list $(atrium admin token issue --user admin --server atrium)",
        "plugins mcp list `atrium admin token issue --user admin --server atrium`",
        "plugins mcp list\nadmin token issue --user admin --server atrium",
        "plugins mcp call atrium atrium command='admin token issue --user admin --server atrium'",
        "admin users create eve --password-stdin",
        "admin keys rotate",
        "infra services stop --all",
        "plugins mcp logs atrium",
        "plugins mcp list-packages",
        "plugins mcp export-registry",
        "plugins mcp validate atrium",
        "plugins mcp test atrium",
        "PLUGINS MCP LIST",
        "Plugins mcp list",
        "plugins mcp lis",
        "infra usage",
        "infra usage --by client",
        "bridge http://127.0.0.1:1/mcp",
        "connect",
        "init",
        "start",
    ]
    results = await run_as(lab, MALLORY, commands)

    minted = {r["command"]: _said(r) for r in results if JWT.search(_said(r))}
    assert minted == {}
    # None is allow-listed but the ';', '&&', '$(' lines, whose extra words `list` refuses.
    assert [r["command"] for r in results if not r["error"]] == []


async def test_raw_logs_stay_closed_to_a_user(lab: Lab) -> None:
    results = await run_as(
        lab,
        MALLORY,
        [
            "infra logs view --lines 5 --json",
            "'infra' \"logs\" view",
            "atrium infra  logs  view --server probe",
            "infra logs -- view",
        ],
    )
    opened = {r["command"]: r.get("stdout", "")[:200] for r in results if not r["error"]}
    assert opened == {}


async def test_a_user_cannot_point_a_command_at_another_url(lab: Lab) -> None:
    target = f"http://127.0.0.1:{lab.capture.port}/exec/mcp"
    commands = [
        f"plugins mcp tools atrium --url {target}",
        f"plugins mcp tools atrium --url={target}",
        f"plugins mcp tools atrium '--url' '{target}'",
        f"plugins mcp tools atrium --ur {target}",
        f"plugins mcp tools atrium --URL {target}",
        f"plugins mcp tools atrium -- --url {target}",
        f"plugins mcp tools --url {target} atrium",
        f"plugins mcp tools atrium \u2010\u2010url {target}",
        f"plugins mcp tools atrium \uff0d\uff0durl {target}",
        f"plugins mcp tools atrium --u\u0280l {target}",
        f"plugins mcp tools atrium --url\t{target}",
        f"plugins mcp tools {target}",
    ]
    await run_as(lab, MALLORY, commands)

    assert lab.capture.requests_to("/exec") == []


async def test_a_user_cannot_choose_the_project(lab: Lab) -> None:
    decoy = str(lab.decoy)
    commands = [
        f"plugins mcp list -p {decoy}",
        f"plugins mcp list -p{decoy}",
        f"plugins mcp list --project {decoy}",
        f"plugins mcp list --project={decoy}",
        f"plugins mcp list --proj {decoy}",
        f"plugins mcp list --pro={decoy}",
        f"plugins mcp list -- --project {decoy}",
        f"plugins mcp list --PROJECT {decoy}",
        f"plugins mcp list \u2014project {decoy}",
        f"plugins mcp list \uff0dp {decoy}",
        f"ATRIUM_PROJECT={decoy} plugins mcp list",
        f"--project {decoy} plugins mcp list",
        f"-p {decoy} plugins mcp list",
        f"atrium --project {decoy} plugins mcp list",
        f"plugins mcp show decoy-marker -p {decoy}",
        f"plugins mcp show {decoy}",
    ]
    results = await run_as(lab, MALLORY, commands)

    leaked = {
        r["command"]: r.get("stdout", "")[:200]
        for r in results
        if "decoy-marker" in r.get("stdout", "")
    }
    assert leaked == {}


async def test_a_user_sees_only_their_own_audit_records(lab: Lab) -> None:
    async with httpx2.AsyncClient(timeout=30) as http:
        alice_call = await http.post(
            lab.instance.url("probe"),
            content=call_body("whoami"),
            headers=dict(modern_headers("whoami")) | lab.bearer("probe", ALICE),
        )
    alice_rid = alice_call.headers["x-request-id"]
    results = await run_as(
        lab,
        MALLORY,
        [
            "infra logs request list --json --limit 1000",
            "infra logs request list --json --limit 1000 --server probe",
            f"infra logs audit {alice_rid} --full --json",
            f"infra logs audit ' {alice_rid} '",
            "infra logs audit \"%' OR '1'='1\"",
        ],
    )

    listed, by_server, *audits = results
    subjects = {r["subject"] for r in json.loads(listed["stdout"])} | {
        r["subject"] for r in json.loads(by_server["stdout"] or "[]")
    }
    assert subjects <= {MALLORY[0]}
    shown = {r["command"]: r.get("stdout", "")[:200] for r in audits if not r["error"]}
    assert shown == {}
    assert all(ALICE[0] not in _said(r) and alice_rid not in r.get("stdout", "") for r in audits)


async def test_each_run_and_each_refusal_is_audited_with_its_caller(lab: Lab) -> None:
    """The tool call (run or refused) is audited with the caller, and so is every request the
    command itself makes through the gateway (``plugins mcp tools`` lists as the caller)."""
    marker = uuid.uuid4().hex[:8]
    started = time.time() - 1
    await run_as(
        lab,
        MALLORY,
        [
            f"plugins mcp list --json # {marker}",
            f"admin token issue --user admin --server {marker}",
            "plugins mcp tools probe --json",
        ],
    )

    def mine(records: list[Any]) -> list[Any]:
        return [r for r in records if r.tool == "atrium" and marker in json.dumps(r.arguments)]

    def listed(records: list[Any]) -> list[Any]:
        return [
            r
            for r in records
            if r.server == "probe" and r.method == "tools/list" and r.at.timestamp() >= started
        ]

    records = mine(await lab.audit_until(lambda rs: len(mine(rs)) >= 2, "both runs", "atrium"))
    nested = listed(await lab.audit_until(lambda rs: bool(listed(rs)), "the listing", "probe"))
    assert len(records) == 2
    assert {r.subject for r in records} == {MALLORY[0]}
    assert nested
    assert {(r.subject, r.client_id) for r in nested} == {MALLORY}


async def test_the_audited_command_is_the_command_that_ran(lab: Lab) -> None:
    """Duplicate JSON keys: the gateway's parser and the backend's must agree on which one
    is the command, or the audit trail records a command other than the one that ran."""
    shown = "plugins mcp list"
    body = (
        '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"atrium",'
        f'"arguments":{{"command":"{shown}","command":"infra logs request list --json"}},'
        f'"_meta":{json.dumps(META)}}}}}'
    ).encode()
    async with httpx2.AsyncClient(timeout=60) as http:
        response = await http.post(
            lab.instance.url("atrium"),
            content=body,
            headers=dict(modern_headers("atrium")) | lab.bearer("atrium", MALLORY),
        )
    assert response.status_code == 200, response.text
    (answer,) = [m for m in _messages(response) if m.get("id") == 9]
    ran = answer["result"]["structuredContent"]["command"]
    rid = response.headers["x-request-id"]
    records = await lab.audit_until(
        lambda rs: any(r.request_id == rid for r in rs), "the record", "atrium"
    )
    (record,) = [r for r in records if r.request_id == rid]
    assert record.arguments["command"] == ran


async def test_a_broadened_allow_list_still_acts_as_the_caller(lab: Lab) -> None:
    """``ops`` runs the same executor with ``ATRIUM_ALLOWED_COMMANDS`` = ``plugins mcp, infra,
    admin token issue``. Acting "as the caller, never as more" must not depend on the list:
    no admin token for a user, no raw logs, no private key file read into a tool call."""
    private = json.loads((lab.state / PRIVATE_FILE).read_text())["keys"][0]["d"]
    key_file = lab.state / PRIVATE_FILE
    first = await run_as(
        lab,
        MALLORY,
        [
            "admin token issue --user admin --server probe",
            "plugins mcp logs atrium --lines 50",
            "infra logs view --lines 5",
            f"plugins mcp call probe whoami --args @{key_file}",
            "infra usage --by client --json --since 1d",
        ],
        server="ops",
    )
    minted, logs, view, exfil, usage = first
    rid = re.search(r"request id: ([0-9a-f]{32})", exfil.get("stderr", ""))
    follow = (
        await run_as(lab, MALLORY, [f"infra logs audit {rid[1]} --full --json"], server="ops")
        if rid
        else []
    )

    problems = {}
    token = JWT.search(minted.get("stdout", ""))
    if token:
        claims = json.loads(_unb64(token[0].split(".")[1]))
        problems["admin token issue"] = f"minted for sub={claims['sub']} scope={claims['scope']!r}"
    if not logs["error"] and logs.get("stdout"):
        problems["plugins mcp logs"] = logs["stdout"][:160]
    if not view["error"]:
        problems["infra logs view"] = view.get("stdout", "")[:160]
    seen = " ".join(_said(r) for r in (exfil, *follow))
    if private in seen:
        problems["--args @caller-keys.json"] = "the private caller key came back to the caller"
    if ALICE[1] in usage.get("stdout", ""):
        problems["infra usage --by client"] = "shows alice's client"
    assert problems == {}


def test_the_acting_caller_variable_cannot_be_turned_into_operator_power(lab: Lab) -> None:
    """What the CLI does with ``ATRIUM_ACTING_CALLER`` when run directly (the atrium server
    sets it; nothing else should give it more)."""
    base = [sys.executable, "-m", "atrium", "--project", str(lab.instance.project)]
    user = {
        "server": "atrium",
        "subject": MALLORY[0],
        "client_id": MALLORY[1],
        "scopes": list(USER_SCOPES),
        "origin": "external",
        "request_id": "r",
    }
    cases = {
        "malformed JSON": ("{", ["infra", "logs", "request", "list", "--json"]),
        "missing fields": (json.dumps({"subject": "x"}), ["infra", "logs", "request", "list"]),
        "scopes as a string": (
            json.dumps({**user, "scopes": "admin"}),
            ["infra", "logs", "view", "--lines", "1"],
        ),
        "user mints an admin token": (
            json.dumps(user),
            ["admin", "token", "issue", "--user", "admin", "--server", "atrium"],
        ),
    }
    running = {
        name: subprocess.Popen(
            [*base, *args],
            env={**lab.instance.env, "ATRIUM_ACTING_CALLER": value},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (value, args) in cases.items()
    }
    outcomes = {}
    for name, process in running.items():
        stdout, _ = process.communicate(timeout=60)
        outcomes[name] = (process.returncode, stdout[:120])

    assert {k: v for k, v in outcomes.items() if v[0] == 0} == {}


def test_parse_command_refuses_every_spelling_of_project_and_url() -> None:
    from atrium.servers.atrium.commands import (
        DEFAULT_ALLOWED_COMMANDS,
        AllowList,
        CommandRefused,
        parse_command,
    )

    allowed = AllowList.parse(", ".join(DEFAULT_ALLOWED_COMMANDS))
    spellings = [
        "plugins mcp list --project /x",
        "plugins mcp list --project=/x",
        "plugins mcp list -p /x",
        "plugins mcp list -p/x",
        "plugins mcp list -- --project /x",
        "plugins mcp tools a --url http://x",
        "plugins mcp tools a --url=http://x",
        "plugins mcp tools a -- --url http://x",
        "plugins mcp tools a '--url' http://x",
    ]
    accepted = []
    for command in spellings:
        try:
            parse_command(command, allowed)
        except CommandRefused:
            continue
        accepted.append(command)
    assert accepted == []


# -- keys on disk, and rotation (last: they change the instance's keys) -----------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _key_modes_ok(state: Path) -> dict[str, str]:
    problems = {}
    if _mode(state / PRIVATE_FILE) != 0o600:
        problems[PRIVATE_FILE] = oct(_mode(state / PRIVATE_FILE))
    if _mode(state / PUBLIC_FILE) & 0o022:
        problems[PUBLIC_FILE] = oct(_mode(state / PUBLIC_FILE))
    if _mode(state) & 0o077:
        problems[".atrium"] = oct(_mode(state))
    for leftover in state.glob("*.tmp"):
        problems[leftover.name] = "temporary key file left behind"
    return problems


def test_key_files_are_private_after_init(lab: Lab) -> None:
    assert _key_modes_ok(lab.state) == {}
    public = json.loads((lab.state / PUBLIC_FILE).read_text())
    assert all("d" not in key for key in public["keys"])


def test_the_documented_caller_key_rotation_command_exists(lab: Lab) -> None:
    """README: ``atrium admin keys rotate --caller`` makes a new caller key."""
    before = json.loads((lab.state / PUBLIC_FILE).read_text())["keys"][0]["kid"]
    argv = [sys.executable, "-m", "atrium", "--project", str(lab.instance.project)]
    done = subprocess.run(
        [*argv, "admin", "keys", "rotate", "--caller"],
        env=lab.instance.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    after = json.loads((lab.state / PUBLIC_FILE).read_text())["keys"][0]["kid"]
    assert done.returncode == 0, done.stderr[-400:]
    assert after != before
    assert _key_modes_ok(lab.state) == {}


async def test_a_key_rotated_out_is_refused_at_once(lab: Lab) -> None:
    """The operator runs ``atrium admin keys rotate --caller`` twice (``keep`` 2) because the
    old key leaked:
    every backend must refuse assertions signed with the dropped key, at once, even one
    that has seen no request since."""
    old_key, old_kid = real_key(lab.state)
    probe = lab.ports["other"]

    def fresh() -> str:
        return sign(old_key, old_kid, claims_for(lab, "other"))

    assert direct_call(probe, "whoami", [(H, fresh())])[0] == 200  # accepted before

    for _ in range(2):  # keep 2: the second rotation drops the old key
        lab.instance.atrium("admin", "keys", "rotate", "--caller")
    kids = [k["kid"] for k in json.loads((lab.state / PUBLIC_FILE).read_text())["keys"]]
    assert old_kid not in kids
    assert _key_modes_ok(lab.state) == {}

    status, answer = direct_call(probe, "whoami", [(H, fresh())])
    # The gateway picks the new key up when it next reloads: the rest of the instance keeps working.
    async with httpx2.AsyncClient(timeout=30) as http:

        async def accepted() -> bool:
            after = await http.post(
                lab.instance.url("other"),
                content=call_body("whoami"),
                headers=dict(modern_headers("whoami")) | lab.bearer("other", ALICE),
            )
            return after.status_code == 200

        await until(
            accepted, what="a call through the gateway with the new key", timeout_s=30, interval=0.3
        )
    assert status == 401, f"the rotated-out key still opens the backend: {answer[-200:]!r}"
