"""Minutes of mixed load on a real Atrium, watching for leaks and surprises (issue 18):

    .venv/bin/python bench/soak.py [--minutes 10] [--clients 12] [--store sqlite|postgres]
    make soak

Makes a project with ``atrium init`` (the administrator it prints signs in), hosts two copies
of the everything test server (``atrium-mcp-everything``, installed by ``make install``) behind
OAuth, ``everything`` and ``limited`` (``rate_limit: 10/minute``), and runs ``atrium start``
(SQLite, or a fresh schema of 127.0.0.1:5432/test with ``--store postgres``). Tokens come from
the authorization code flow with PKCE as a client runs it: dynamic registration, the sign-in
and consent forms, the token endpoint; one of them DPoP-bound. Then ``--clients`` closed-loop
clients (one session each):

* 2026-07-28 one-shot ``tools/call``: with the bearer token, or with a DPoP proof per call;
* ``initialize``-era sessions: ``initialize``, ``tools/list``, calls, a call whose answer
  streams progress over SSE, a GET SSE stream held open meanwhile, ``DELETE``;
* one caller of ``limited`` at RATE_LIMITED_PER_S calls a second, beyond its rate limit;

while the bearer token is refreshed every REFRESH_S seconds (every third time by a new code
flow), and every ``--restart-every`` seconds the ``everything`` backend is
restarted, by turns with a SIGKILL left to the supervisor and with ``atrium infra services
restart everything``.

A failure is expected only where the product documents it: 429 for the rate-limited caller;
and in a restart window (from the restart until the backend answers ``/health`` again, plus
GRACE_S) 503 / -32002, 502 for a call the dying backend broke off, a stream cut short, and
404 for a session the old backend held. Everything else is unexpected; the first few are
printed in full.

Every ``--sample-every`` seconds the RSS (``VmRSS``) and open files (``/proc/<pid>/fd``) of
the gateway and the backends are read; the table compares the first minute with the last
(median RSS, most fds). Exit status 1 on an unexpected error, or when the RSS of the gateway
(``atrium start``: the supervisor is the same process) or of ``limited`` (a backend that runs
all along) grew more than RSS_GROWTH_LIMIT or their open files more than FD_SLACK (see there
why); judged for runs of 2 minutes or more (shorter, the two minutes overlap the warm-up).
``--json PATH`` writes every figure there too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import httpx2

from atrium.client.dpop import generate_key, make_proof
from atrium.deathsig import die_with_parent
from gateway import free_port, listening_pid, steal_ticks  # bench/gateway.py

PYTHON = sys.executable
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BUILTINS = ("atrium", "soul", "content-manager", "marketplace")
SERVERS = ("everything", "limited")
OAUTH = "/api/v1/core/oauth"
REDIRECT = "http://127.0.0.1:4999/callback"
SCOPE = "user tools:write"
SIMPLE = "test_simple_text"
PROGRESS = "test_tool_with_progress"
GRACE_S = 3.0  # after the backend is back: calls that waited on it, and Retry-After: 2
REFRESH_S = 20.0
LIMIT = "10/minute"  # of ``limited``
RATE_LIMITED_PER_S = 2.0  # against 10/minute: 11 calls in 12 are refused
STREAM_HOLD_S = 2.0
CALL_TIMEOUT_S = 30.0
CLIENT_KEEP_ALIVE_S = 4.0
# The gateway's RSS may grow this much (a fraction of the first minute's median) by the last
# minute. Some growth is by design: the DPoP replay cache remembers each proof for 2 x 300 s
# (RFC 9449 §11.1, ``atrium.auth.replay``), ~300 bytes a DPoP call, so it fills for the first
# ten minutes (~5 MiB at 35 DPoP calls a second) and is flat after; caches such as SQLite's
# page cache fill by a MiB or two. 8 % of a ~140 MiB gateway is 11 MiB: room for those, while
# a leak of 150 bytes a call at ~140 calls a second (11 MiB in 9 minutes) fails the run.
RSS_GROWTH_LIMIT = 0.08
# Open files move with the clients' connections at the moment of a sample; a leak of one fd
# per restart or per session adds one a minute or one a second, past this.
FD_SLACK = 4
SHOWN_FAILURES = 5


# ---------------------------------------------------------------- the project and its processes


@dataclass
class Project:
    folder: Path
    env: dict[str, str]
    base: str
    ports: dict[str, int]
    password: str
    schema: str | None

    def url(self, server: str) -> str:
        return f"{self.base}/api/v1/mcp/{server}/mcp"

    def atrium(self, *args: str) -> list[str]:
        return [PYTHON, "-m", "atrium", "--project", str(self.folder), *args]


def make_project(folder: Path, store: str, limit: str = LIMIT) -> Project:
    """``atrium init``, the built-in servers off, the two everything servers on."""
    gateway_port = free_port()
    base = f"http://127.0.0.1:{gateway_port}"
    env = {
        **os.environ,
        "ATRIUM_PORT_RANGE": "1024-65535",
        "ATRIUM_GATEWAY_PORT": str(gateway_port),
        "ATRIUM_PUBLIC_URL": base,
        "ATRIUM_LOG_LEVEL": "warning",
        "NO_COLOR": "1",
        "PATH": f"{Path(PYTHON).parent}:{os.environ.get('PATH', '')}",
    }
    schema = None
    if store == "postgres":
        schema = f"soak_{os.getpid()}_{int(time.time())}"
        env |= {"ATRIUM_DATABASE_URL": POSTGRES_URL, "ATRIUM_DATABASE_SCHEMA": schema}
    project = Project(folder, env, base, {"gateway": gateway_port}, "", schema)
    init = subprocess.run(
        project.atrium("init"), env=env, check=True, capture_output=True, text=True
    )
    found = re.search(r"password \(shown once\): (\S+)", init.stdout)
    if not found:
        raise RuntimeError(f"atrium init printed no password:\n{init.stdout}")
    project.password = found[1]
    for name in BUILTINS:
        path = folder / f"services/mcp/{name}.yaml"
        path.write_text(path.read_text().replace("enabled: true", "enabled: false"))
    project.ports |= {name: free_port() for name in SERVERS}
    (folder / "services/mcp/soak.yaml").write_text(servers_yaml(project.ports, limit))
    return project


def servers_yaml(ports: dict[str, int], limit: str) -> str:
    # Every soak caller is the one administrator: ``everything`` gets a limit far above the
    # load, so that only ``limited`` refuses (the default is 600/minute per caller).
    limits = {"everything": "1000000/minute", "limited": limit}
    lines = ["mcp_servers:"]
    for name in SERVERS:
        lines += [
            f"  {name}:",
            "    binary: atrium-mcp-everything",
            f"    port: {ports[name]}",
            "    oauth: {required: true, scopes: [user]}",
            f"    rate_limit: {limits[name]}",
        ]
    return "\n".join(lines) + "\n"


def start_atrium(stack: ExitStack, project: Project) -> subprocess.Popen[bytes]:
    log = stack.enter_context((project.folder / "atrium-start.log").open("wb"))
    # It dies with this process, even a killed one: nothing of the soak outlives it.
    process = subprocess.Popen(
        project.atrium("start"),
        env=project.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=partial(die_with_parent, os.getpid()),
    )
    stack.callback(stop_atrium, process)
    deadline = time.monotonic() + 90
    with httpx2.Client(timeout=2) as http:
        for name in SERVERS:
            while not routed(http, f"{project.base}/api/v1/mcp/registry/{name}"):
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (project.folder / "atrium-start.log").read_text()[-3000:]
                    raise RuntimeError(f"{name} was not routed; atrium start said:\n{tail}")
                time.sleep(0.2)
    return process


def routed(http: httpx2.Client, url: str) -> bool:
    try:
        return bool(http.get(url).json().get("status") == "running")
    except (httpx2.HTTPError, ValueError):
        return False


def stop_atrium(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


async def drop_schema(schema: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


def pid_on(port: int) -> int | None:
    try:
        return listening_pid(port)
    except RuntimeError:
        return None


# ---------------------------------------------------------------- tokens, as a client gets them


@dataclass
class Tokens:
    bearer: str = ""
    refresh: str = ""
    dpop: str = ""
    dpop_key: Any = None
    limited: str = ""
    client_id: str = ""


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def form(page: httpx2.Response, values: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The page's form: where it posts, and its fields with ``values`` filled in."""
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    if page.status_code != 200 or not action:
        raise RuntimeError(f"{page.url}: HTTP {page.status_code}, no form: {page.text[:300]}")
    fields = {}
    for tag in re.findall(r"<input[^>]*>", page.text):
        name, value = re.search(r'name="([^"]+)"', tag), re.search(r'value="([^"]*)"', tag)
        if name:
            fields[name[1]] = value[1].replace("&#34;", '"').replace("&amp;", "&") if value else ""
    return str(page.url.join(action[1])), {**fields, **values}


async def authorization_code(
    browser: httpx2.AsyncClient, project: Project, client_id: str, server: str, challenge: str
) -> str:
    """The person at the browser: sign in as the administrator (once), allow access."""
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": SCOPE,
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": project.url(server),
    }
    page = await browser.get(f"{project.base}{OAUTH}/authorize?{urlencode(query)}")
    if 'name="password"' in page.text:
        action, fields = form(page, {"username": "admin", "password": project.password})
        page = await browser.post(action, data=fields)
    action, fields = form(page, {"decision": "approve"})
    back = await browser.post(action, data=fields)
    code = parse_qs(urlsplit(back.headers.get("location", "")).query).get("code")
    if back.status_code != 303 or not code:
        raise RuntimeError(f"consent answered HTTP {back.status_code}: {back.text[:300]}")
    return code[0]


async def token_request(
    http: httpx2.AsyncClient, project: Project, data: dict[str, str], key: Any = None
) -> dict[str, Any]:
    url = f"{project.base}{OAUTH}/token"
    headers = {"DPoP": make_proof(key, method="POST", url=url)} if key is not None else {}
    response = await http.post(url, data=data, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"token endpoint: HTTP {response.status_code}: {response.text[:300]}")
    return dict(response.json())


async def code_flow(
    browser: httpx2.AsyncClient, project: Project, tokens: Tokens, server: str, key: Any = None
) -> dict[str, Any]:
    verifier, challenge = pkce()
    code = await authorization_code(browser, project, tokens.client_id, server, challenge)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": tokens.client_id,
        "code_verifier": verifier,
    }
    return await token_request(browser, project, data, key)


async def sign_in(browser: httpx2.AsyncClient, project: Project) -> Tokens:
    """Register a client (RFC 7591), then a code flow for each token the clients use."""
    registration = {
        "redirect_uris": [REDIRECT],
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "client_name": "soak",
    }
    response = await browser.post(f"{project.base}{OAUTH}/register", json=registration)
    if response.status_code != 201:
        raise RuntimeError(f"registration: HTTP {response.status_code}: {response.text[:300]}")
    tokens = Tokens(client_id=response.json()["client_id"], dpop_key=generate_key())
    answer = await code_flow(browser, project, tokens, "everything")
    tokens.bearer, tokens.refresh = answer["access_token"], answer["refresh_token"]
    answer = await code_flow(browser, project, tokens, "everything", tokens.dpop_key)
    if answer.get("token_type", "").lower() != "dpop":
        raise RuntimeError(f"the DPoP token request got a {answer.get('token_type')} token")
    tokens.dpop = answer["access_token"]
    tokens.limited = (await code_flow(browser, project, tokens, "limited"))["access_token"]
    return tokens


# ---------------------------------------------------------------- what happened


@dataclass
class Failure:
    started: float
    ended: float
    role: str
    kind: str
    detail: str
    session_born: float | None = None  # set for a request in a session opened then


@dataclass
class Window:
    """A restart: from the command (or the kill) until the backend answered again."""

    started: float
    back: float
    how: str

    @property
    def ended(self) -> float:
        return self.back + GRACE_S


@dataclass
class Sample:
    at: float
    process: str
    rss_kib: int
    fds: int


@dataclass
class Soak:
    project: Project
    tokens: Tokens
    started: float
    deadline: float
    restart_every: float
    calls: Counter[str] = field(default_factory=Counter)
    per_second: Counter[int] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    fatal: list[str] = field(default_factory=list)
    traceback: str = ""

    def running(self) -> bool:
        return time.monotonic() < self.deadline and not self.fatal

    def count(self, role: str) -> None:
        self.calls[role] += 1
        self.per_second[int(time.monotonic() - self.started)] += 1

    def fail(self, started: float, role: str, kind: str, detail: str, born: float | None) -> None:
        self.failures.append(Failure(started, time.monotonic(), role, kind, detail, born))


# ---------------------------------------------------------------- one request, checked


def rpc(method: str, params: dict[str, Any], request_id: int | None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return json.dumps(message).encode()


def messages(content_type: str, body: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a JSON or SSE answer."""
    if content_type.startswith("application/json"):
        return [json.loads(body)]
    found = []
    for event in body.decode().replace("\r\n", "\n").split("\n\n"):
        data = [line[5:].lstrip() for line in event.split("\n") if line.startswith("data:")]
        if any(data):  # a priming event has an id and no data
            found.append(json.loads("\n".join(data)))
    return found


def refusal(status: int, body: bytes) -> tuple[str, str]:
    """(kind, detail) of an answer that is not 200: the status and JSON-RPC code."""
    code: object = "-"
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        code = json.loads(body)["error"]["code"]
    return f"HTTP {status} {code}", body[:400].decode(errors="replace")


def answer_problem(
    status: int, content_type: str, body: bytes, request_id: int, streams: bool
) -> tuple[str, str] | None:
    """What is wrong with the answer to request ``request_id``, or None."""
    if status != 200:
        return refusal(status, body)
    try:
        found = messages(content_type, body)
    except ValueError:
        return "unreadable answer", body[:400].decode(errors="replace")
    answers = [m for m in found if m.get("id") == request_id]
    if not answers:
        return "stream cut (no answer)", body[-400:].decode(errors="replace")
    if "error" in answers[0]:
        return f"HTTP 200 {answers[0]['error'].get('code')}", json.dumps(answers[0])[:400]
    if answers[0].get("result", {}).get("isError"):
        return "tool error", json.dumps(answers[0])[:400]
    if streams and not any(m.get("method") == "notifications/progress" for m in found):
        return "no progress notification", body[:400].decode(errors="replace")
    return None


def broken(exc: Exception) -> str:
    """The kind of a request that got no answer: cut off mid-answer, timed out, or not sent."""
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "stream cut"
    return "timeout" if isinstance(exc, TimeoutError) else "connection"


@dataclass
class Caller:
    """One client: its HTTP session, role, and (in the initialize era) MCP session."""

    soak: Soak
    http: aiohttp.ClientSession
    role: str
    server: str = "everything"
    session: str | None = None
    session_born: float | None = None
    next_id: int = 0

    def headers(self, url: str, method: str | None, name: str | None = None) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        }
        if method is not None and self.session is None and method != "initialize":
            headers |= {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
            if name is not None:
                headers["Mcp-Name"] = name
        elif self.session is not None:
            headers |= {"MCP-Protocol-Version": LEGACY, "Mcp-Session-Id": self.session}
        return headers | self.credentials(url, "POST" if method else "GET")

    def credentials(self, url: str, method: str) -> dict[str, str]:
        tokens = self.soak.tokens
        if self.role == "dpop":
            proof = make_proof(tokens.dpop_key, method=method, url=url, access_token=tokens.dpop)
            return {"Authorization": f"DPoP {tokens.dpop}", "DPoP": proof}
        token = tokens.limited if self.server == "limited" else tokens.bearer
        return {"Authorization": f"Bearer {token}"}

    async def post(
        self, method: str, params: dict[str, Any], name: str | None = None, notify: bool = False
    ) -> aiohttp.ClientResponse | None:
        """Send one message; the checked answer's response (read), or None after a failure.
        A 503 is retried no sooner than its ``Retry-After`` says, as a client does."""
        self.next_id += 1
        request_id = None if notify else self.next_id
        url = self.soak.project.url(self.server)
        started = time.monotonic()
        self.soak.count(self.role)
        try:
            async with self.http.post(
                url, data=rpc(method, params, request_id), headers=self.headers(url, method, name)
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            what = f"POST {method}: {exc!r}"
            self.soak.fail(started, self.role, broken(exc), what, self.session_born)
            return None
        problem = self.check(response, body, notify, params.get("name") == PROGRESS)
        if problem is None:
            return response
        kind, detail = problem
        self.soak.fail(started, self.role, kind, f"POST {method}: {detail}", self.session_born)
        if response.status == 503:
            with contextlib.suppress(ValueError):
                await asyncio.sleep(min(2.0, float(response.headers.get("Retry-After", "1"))))
        return None

    def check(
        self, response: aiohttp.ClientResponse, body: bytes, notify: bool, streams: bool
    ) -> tuple[str, str] | None:
        if notify:
            return None if response.status in (200, 202) else refusal(response.status, body)
        ctype = response.headers.get("Content-Type", "")
        return answer_problem(response.status, ctype, body, self.next_id, streams)


# ---------------------------------------------------------------- the clients


def modern_call() -> dict[str, Any]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {"name": SIMPLE, "arguments": {}, "_meta": meta}


async def one_shot_client(caller: Caller) -> None:
    """2026-07-28: one self-contained ``tools/call`` after another."""
    while caller.soak.running():
        await caller.post("tools/call", modern_call(), SIMPLE)


async def rate_limited_client(caller: Caller) -> None:
    """Beyond ``limited``'s LIMIT on purpose: most answers are 429."""
    while caller.soak.running():
        paced = asyncio.create_task(asyncio.sleep(1 / RATE_LIMITED_PER_S))
        await caller.post("tools/call", modern_call(), SIMPLE)
        await paced


async def open_session(caller: Caller) -> bool:
    caller.session = None
    params = {
        "protocolVersion": LEGACY,
        "capabilities": {},
        "clientInfo": {"name": "soak", "version": "1"},
    }
    started = time.monotonic()
    response = await caller.post("initialize", params)
    session = response.headers.get("Mcp-Session-Id") if response is not None else None
    if response is not None and not session:
        caller.soak.fail(started, caller.role, "no session id", "POST initialize: none", None)
    if not session:
        return False
    caller.session, caller.session_born = session, started
    return await caller.post("notifications/initialized", {}, notify=True) is not None


async def hold_stream(caller: Caller) -> None:
    """The GET stream of the session, held open STREAM_HOLD_S and then closed by us."""
    url = caller.soak.project.url(caller.server)
    headers = caller.headers(url, None) | {"Accept": "text/event-stream"}
    started = time.monotonic()
    caller.soak.count(caller.role)
    try:
        async with caller.http.get(url, headers=headers) as response:
            if response.status != 200:
                kind, detail = refusal(response.status, await response.read())
                caller.soak.fail(started, caller.role, kind, f"GET: {detail}", caller.session_born)
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STREAM_HOLD_S):
                    async for _ in response.content.iter_any():
                        pass
                    problem = ("stream cut (GET ended)", "GET: the stream ended before we left")
                    caller.soak.fail(started, caller.role, *problem, caller.session_born)
    except (aiohttp.ClientError, TimeoutError) as exc:
        caller.soak.fail(started, caller.role, broken(exc), f"GET: {exc!r}", caller.session_born)


async def session_round(caller: Caller) -> None:
    """What a session does between ``initialize`` and ``DELETE``."""
    stream = asyncio.create_task(hold_stream(caller))
    await caller.post("tools/list", {})
    for _ in range(3):
        await caller.post("tools/call", {"name": SIMPLE, "arguments": {}})
    progress = {"name": PROGRESS, "arguments": {}, "_meta": {"progressToken": caller.next_id}}
    await caller.post("tools/call", progress)
    await stream


async def session_client(caller: Caller) -> None:
    """The ``initialize`` era: a session, its work, its end; then the next session."""
    while caller.soak.running():
        if not await open_session(caller):
            await asyncio.sleep(0.5)
            continue
        await session_round(caller)
        url = caller.soak.project.url(caller.server)
        started = time.monotonic()
        caller.soak.count(caller.role)
        try:
            async with caller.http.delete(url, headers=caller.headers(url, None)) as response:
                body = await response.read()
                if response.status not in (200, 202, 204, 405):
                    kind, detail = refusal(response.status, body)
                    born = caller.session_born
                    caller.soak.fail(started, caller.role, kind, f"DELETE: {detail}", born)
        except (aiohttp.ClientError, TimeoutError) as exc:
            what = f"DELETE: {exc!r}"
            caller.soak.fail(started, caller.role, broken(exc), what, caller.session_born)


def roles(clients: int) -> list[str]:
    """One rate-limited caller, a sixth DPoP, a third sessions, the rest 2026-07-28 bearer."""
    dpop, sessions = max(1, clients // 6), max(1, clients // 3)
    rest = max(0, clients - 1 - dpop - sessions)
    return ["limited", *["dpop"] * dpop, *["session"] * sessions, *["bearer"] * rest]


async def run_client(soak: Soak, role: str) -> None:
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)
    # The gateway closes a connection idle for ``keep_alive_timeout_s`` (5 s): a client that
    # keeps one longer (aiohttp's default is 15 s) may send on it as it closes, and be reset.
    connector = aiohttp.TCPConnector(keepalive_timeout=CLIENT_KEEP_ALIVE_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        caller = Caller(soak, http, role, "limited" if role == "limited" else "everything")
        loops: dict[str, Callable[[Caller], Awaitable[None]]] = {
            "limited": rate_limited_client,
            "session": session_client,
        }
        await loops.get(role, one_shot_client)(caller)


# ---------------------------------------------------------------- OAuth, restarts, sampling


async def oauth_client(soak: Soak) -> None:
    """Refresh the bearer token every REFRESH_S (a third of a shorter run), and every third
    time run a whole new code flow instead."""
    period = min(REFRESH_S, (soak.deadline - soak.started) / 3)
    async with httpx2.AsyncClient(timeout=CALL_TIMEOUT_S, follow_redirects=False) as browser:
        for turn in itertools.count(1):
            await asyncio.sleep(max(0.0, soak.started + turn * period - time.monotonic()))
            if not soak.running():
                return
            started = time.monotonic()
            soak.count("oauth")
            try:
                await renew(browser, soak, whole_flow=turn % 3 == 0)
            except (RuntimeError, httpx2.HTTPError, KeyError) as exc:
                soak.fail(started, "oauth", "token request failed", repr(exc), None)


async def renew(browser: httpx2.AsyncClient, soak: Soak, *, whole_flow: bool) -> None:
    project, tokens = soak.project, soak.tokens
    if whole_flow:
        answer = await code_flow(browser, project, tokens, "everything")
    else:
        data = {"grant_type": "refresh_token", "refresh_token": tokens.refresh}
        answer = await token_request(browser, project, data | {"client_id": tokens.client_id})
    tokens.bearer, tokens.refresh = answer["access_token"], answer["refresh_token"]


def alive(pid: int) -> bool:
    """Running: a zombie is dead, only not yet reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


async def backend_back(soak: Soak, old: int | None) -> int:
    """The new backend's pid, once the old one is gone and the new one answers ``/health``."""
    port = soak.project.ports["everything"]
    give_up = time.monotonic() + 60
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < give_up:
            await asyncio.sleep(0.1)
            if old is not None and alive(old):
                continue
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"http://127.0.0.1:{port}/health") as response:
                    pid = await asyncio.to_thread(pid_on, port) if response.status == 200 else None
                    if pid is not None:
                        return pid
    raise RuntimeError("the everything backend did not come back within 60 s")


async def restart_once(soak: Soak, how: str) -> None:
    old = soak.pids.get("everything")
    started = time.monotonic()
    if how == "cli":
        command = soak.project.atrium("infra", "services", "restart", "everything")
        process = await asyncio.create_subprocess_exec(
            *command, env=soak.project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"`atrium infra services restart` failed: {output.decode()}")
    elif old is not None:
        os.kill(old, signal.SIGKILL)
    soak.pids["everything"] = await backend_back(soak, old)
    soak.windows.append(Window(started, time.monotonic(), how))


async def restarter(soak: Soak) -> None:
    """Every ``restart_every`` seconds the ``everything`` backend goes, by turns by SIGKILL
    (the supervisor starts it again) and by the CLI."""
    turn = 0
    while True:
        due = soak.started + (turn + 1) * soak.restart_every
        if due >= soak.deadline:
            return
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        try:
            await restart_once(soak, "kill" if turn % 2 == 0 else "cli")
        except RuntimeError as exc:
            soak.fatal.append(str(exc))
            return
        turn += 1


def read_process(pid: int) -> tuple[int, int] | None:
    """(VmRSS in KiB, open files) of ``pid``; None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+)", status, re.MULTILINE)
    return (int(found[1]), fds) if found else None


async def sampler(soak: Soak, every: float) -> None:
    while soak.running():
        now = time.monotonic()
        for name, pid in list(soak.pids.items()):
            read = read_process(pid)
            if read is not None:
                soak.samples.append(Sample(now, name, *read))
        await asyncio.sleep(every)


async def run_soak(soak: Soak, clients: int, sample_every: float) -> None:
    tasks = [run_client(soak, role) for role in roles(clients)]
    await asyncio.gather(*tasks, oauth_client(soak), restarter(soak), sampler(soak, sample_every))


# ---------------------------------------------------------------- the verdict


def expected(failure: Failure, windows: list[Window]) -> str | None:
    """The documented reason for ``failure``, or None: it is unexpected."""
    if failure.role == "limited" and failure.kind.startswith("HTTP 429"):
        return "rate limited (429)"
    during = any(w.started <= failure.ended and failure.started <= w.ended for w in windows)
    # A session opened before a restart ended (the old backend drains a while) may be one the
    # new backend never knew.
    restarted = failure.session_born is not None and any(
        failure.session_born <= w.ended and w.started <= failure.ended for w in windows
    )
    if restarted and failure.kind.startswith("HTTP 404"):
        return "restart: session gone (404)"
    if during and failure.kind in ("HTTP 503 -32002", "HTTP 502 -32603"):
        return f"restart: {failure.kind}"
    if (during or restarted) and failure.kind.startswith("stream cut"):
        return "restart: stream cut"
    return None


def window_of(soak: Soak, minutes: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """The first and the last minute (halves of a run shorter than two minutes)."""
    length = min(60.0, minutes * 30.0)
    return (soak.started, soak.started + length), (soak.deadline - length, soak.deadline)


@dataclass
class Figures:
    first_rss_mib: float
    last_rss_mib: float
    first_fds: int
    last_fds: int

    @property
    def growth(self) -> float:
        return self.last_rss_mib / self.first_rss_mib - 1


def figures(soak: Soak, name: str, minutes: float) -> Figures | None:
    """Median RSS and most open files of ``name`` in the first and the last minute."""
    first, last = (
        [s for s in soak.samples if s.process == name and low <= s.at <= high]
        for low, high in window_of(soak, minutes)
    )
    if not first or not last:
        return None
    return Figures(
        round(statistics.median(s.rss_kib for s in first) / 1024, 1),
        round(statistics.median(s.rss_kib for s in last) / 1024, 1),
        max(s.fds for s in first),
        max(s.fds for s in last),
    )


def by_minute(soak: Soak, name: str) -> list[float]:
    """Median RSS of ``name`` in each minute of the run (MiB): flat, a plateau, or a slope."""
    minutes: dict[int, list[int]] = {}
    for s in soak.samples:
        if s.process == name:
            minutes.setdefault(int((s.at - soak.started) // 60), []).append(s.rss_kib)
    return [round(statistics.median(minutes[m]) / 1024, 1) for m in sorted(minutes)]


def judged(name: str, f: Figures) -> list[str]:
    """Why ``f`` fails the run. Judged: the gateway (``atrium start``, the supervisor in the
    same process) and ``limited``, a backend that runs all along; not ``everything``, whose
    last minute is that of a process started less than a minute before."""
    if name not in ("gateway", "limited"):
        return []
    problems = []
    if f.growth > RSS_GROWTH_LIMIT:
        problems.append(f"{name} RSS grew {f.growth:+.1%} (limit {RSS_GROWTH_LIMIT:.0%})")
    if f.last_fds > f.first_fds + FD_SLACK:
        problems.append(f"{name} open files grew {f.first_fds} -> {f.last_fds}")
    return problems


def rates(soak: Soak, minutes: float) -> tuple[float, float]:
    """Requests per second in the first and in the last minute."""
    found = []
    for low, high in window_of(soak, minutes):
        first, last = int(low - soak.started), int(high - soak.started)
        found.append(sum(soak.per_second[s] for s in range(first, last)) / max(1, last - first))
    return found[0], found[1]


def classified(soak: Soak) -> tuple[Counter[str], list[Failure]]:
    kinds: Counter[str] = Counter()
    unexpected = []
    for failure in soak.failures:
        reason = expected(failure, soak.windows)
        if reason is None:
            unexpected.append(failure)
        else:
            kinds[reason] += 1
    return kinds, unexpected


def summary(soak: Soak, args: argparse.Namespace, steal: float) -> dict[str, Any]:
    """Every figure of the run, and what fails it (under 2 minutes RSS and files are shown,
    not judged: the two minutes overlap the warm-up)."""
    processes = {n: f for n in ("gateway", *SERVERS) if (f := figures(soak, n, args.minutes))}
    kinds, unexpected = classified(soak)
    problems = [p for n, f in processes.items() for p in judged(n, f)]
    if args.minutes < 2:
        problems = []
    problems += soak.fatal + ([f"{len(unexpected)} unexpected errors"] if unexpected else [])
    backs = [w.back - w.started for w in soak.windows]
    return {
        "minutes": args.minutes,
        "clients": dict(Counter(roles(args.clients))),
        "store": args.store,
        "steal_percent": round(steal, 1),
        "load_average": os.getloadavg(),
        "processes": {name: asdict(f) | {"growth": f.growth} for name, f in processes.items()},
        "gateway_rss_by_minute": by_minute(soak, "gateway"),
        "requests": dict(soak.calls),
        "per_second": rates(soak, args.minutes),
        "restarts": dict(Counter(w.how for w in soak.windows)),
        "restart_windows": [
            (w.how, round(w.started - soak.started, 1), round(w.ended - soak.started, 1))
            for w in soak.windows
        ],
        "back_after_s": (statistics.median(backs), max(backs)) if backs else None,
        "expected": dict(kinds),
        "unexpected": [asdict(f) | {"at": f.started - soak.started} for f in unexpected],
        "problems": problems,
    }


def print_report(result: dict[str, Any], traceback: str) -> None:
    load = ", ".join(f"{v:.1f}" for v in result["load_average"])
    mix = ", ".join(f"{n} {role}" for role, n in result["clients"].items())
    print(f"\nsoak: {result['minutes']:g} min, clients: {mix}; store {result['store']}")
    print(f"steal over the run {result['steal_percent']} %, load average at the end {load}")
    print("| process | RSS first minute | RSS last minute | growth | fds first | fds last |")
    print("|---|---|---|---|---|---|")
    for name, f in result["processes"].items():
        print(
            f"| {name} | {f['first_rss_mib']:.1f} MiB | {f['last_rss_mib']:.1f} MiB "
            f"| {f['growth']:+.1%} | {f['first_fds']} | {f['last_fds']} |"
        )
    minutes = " ".join(f"{rss:.1f}" for rss in result["gateway_rss_by_minute"])
    print(f"gateway RSS, median of each minute (MiB): {minutes}")
    requests = result["requests"]
    by_role = ", ".join(f"{role} {n}" for role, n in sorted(requests.items()))
    first, last = result["per_second"]
    print(f"\nrequests: {sum(requests.values())} ({by_role})")
    print(f"requests per second: first minute {first:.0f}, last minute {last:.0f}")
    if result["back_after_s"]:
        restarts = ", ".join(f"{how} {n}" for how, n in result["restarts"].items())
        median, worst = result["back_after_s"]
        print(f"restarts of everything: {restarts}; back after {median:.1f} s (worst {worst:.1f})")
    listed = ", ".join(f"{kind} {n}" for kind, n in sorted(result["expected"].items()))
    print(f"expected errors: {listed or 'none'}")
    print(f"unexpected errors: {len(result['unexpected'])}")
    for failure in result["unexpected"][:SHOWN_FAILURES]:
        print(f"  at {failure['at']:.1f} s, {failure['role']}: {failure['kind']}: ", end="")
        print(failure["detail"])
    if result["unexpected"] and traceback:
        print(f"the gateway's first logged traceback:\n{traceback}")
    print(f"verdict: {'; '.join(result['problems']) or 'OK'}")


def first_traceback(project: Project) -> str:
    """The first traceback the gateway logged (where an unexpected 500 says to look)."""
    for path in (project.folder / "logs/gateway.log", project.folder / "atrium-start.log"):
        with contextlib.suppress(OSError):
            lines = path.read_text(errors="replace").splitlines()
            for index, line in enumerate(lines):
                if line.startswith("Traceback"):
                    return "\n".join(lines[max(0, index - 2) : index + 40])
    return ""


# ---------------------------------------------------------------- the run


@contextlib.contextmanager
def running_project(
    store: str, keep: Path | None, limit: str = LIMIT
) -> Iterator[tuple[Project, subprocess.Popen[bytes]]]:
    """The project, running; in a temporary folder unless ``keep`` names one to leave."""
    with ExitStack() as stack:
        if keep is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        else:
            keep.mkdir(parents=True)
            folder = keep
        project = make_project(folder, store, limit)
        if project.schema is not None:
            schema = project.schema
            stack.callback(lambda: asyncio.run(drop_schema(schema)))
        process = start_atrium(stack, project)
        yield project, process


async def prepared(project: Project, minutes: float, restart_every: float) -> Soak:
    async with httpx2.AsyncClient(timeout=CALL_TIMEOUT_S, follow_redirects=False) as browser:
        tokens = await sign_in(browser, project)
    now = time.monotonic()
    soak = Soak(project, tokens, now, now + minutes * 60, restart_every)
    for name in ("gateway", *SERVERS):
        pid = await asyncio.to_thread(pid_on, project.ports[name])
        if pid is None:
            raise RuntimeError(f"nothing listens on the port of {name}")
        soak.pids[name] = pid
    return soak


async def soak_for(project: Project, args: argparse.Namespace) -> Soak:
    soak = await prepared(project, args.minutes, args.restart_every)
    await run_soak(soak, args.clients, args.sample_every)
    return soak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--restart-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds")
    parser.add_argument("--json", type=Path, help="also write the figures there, as JSON")
    parser.add_argument("--keep", type=Path, help="make the project there (new) and leave it")
    parser.add_argument("--limit", default=LIMIT, help=f"of ``limited`` (default {LIMIT})")
    args = parser.parse_args()
    steal_before = steal_ticks()
    with running_project(args.store, args.keep, args.limit) as (project, _process):
        print(f"soak: {args.clients} clients for {args.minutes:g} min", file=sys.stderr)
        soak = asyncio.run(soak_for(project, args))
        soak.traceback = first_traceback(project)
    steal_after = steal_ticks()
    total = steal_after[1] - steal_before[1]
    steal = 100 * (steal_after[0] - steal_before[0]) / total if total else 0.0
    result = summary(soak, args, steal)
    print_report(result, soak.traceback)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    sys.exit(1 if result["problems"] else 0)


if __name__ == "__main__":
    main()
