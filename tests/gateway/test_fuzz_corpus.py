"""A fixed corpus of bad (and some good) requests against a real gateway with OAuth on and the
real test backend, on SQLite and on PostgreSQL (issue 18, "Done when").

Every case is one HTTP request. For each, whatever it holds: no 5xx; a JSON-RPC body whenever
the gateway answers itself (an error for every refusal, ``null`` as the id of what has none);
and exactly one audit record per answered request, found by the answer's ``x-request-id``:
one per JSON-RPC request of a body the gateway forwarded, one for any other body. And, over the
whole corpus, no tool the server denies ever ran, and nothing nested past ``MAX_DEPTH`` reached
the backend.

The cases are data (``CASES``): ids of every JSON type, nesting, duplicate keys, batches mixing
good and bad, notifications, headers duplicated, oversized or contradicting the body, wrong
content types, oversized bodies, unicode and control characters in names, in the three ways
a client speaks (one-shot, 2026-07-28, a legacy session) and on the OpenAPI route.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx2
import orjson
import pytest

from atrium.gateway.jsonrpc import MAX_DEPTH, nesting
from atrium.settings import Settings
from atrium.store import Store
from tests.gateway.backend import Received
from tests.gateway.conftest import MAX_BODY_BYTES, Backend
from tests.gateway.helpers import (
    ACCEPT,
    JSON,
    LEGACY,
    META,
    MODERN,
    Gateway,
    legacy_session,
    running_gateway,
    save_servers,
    server_record,
)
from tests.polling import until
from tests.processes import free_port

Era = Literal["one-shot", "modern", "legacy", "raw"]
SERVER = "vault"  # oauth.required, delete_* and admin_* denied
VAULT = {"oauth": {"required": True}, "tools": {"denied": ["delete_*", "admin_*"]}}
DENIED = ("delete_everything", "admin_reset")
SCOPES = ("user", "tools:read", "tools:write")


@dataclass(frozen=True)
class Case:
    """One request of the corpus. ``body`` is sent as is; ``headers`` come after the era's own
    (a name given twice is sent twice); ``token`` is which Authorization the caller sends."""

    name: str
    body: bytes | None
    era: Era = "one-shot"
    headers: tuple[tuple[str, str], ...] = ()
    server: str = SERVER
    endpoint: str = "mcp"  # "mcp", "jsonrpc", or "tools/<tool>" (the OpenAPI route)
    method: str = "POST"
    token: Literal["good", "none", "garbage", "elsewhere"] = "good"
    records: int = 1  # audit records of the request: one per request of a forwarded batch
    routing: bool = True  # 2026-07-28: send Mcp-Method / Mcp-Name read from the body
    relayed: bool = False  # the backend's own answer (issue 18 §11: not always JSON-RPC)
    # Refused by the HTTP server (uvicorn: control characters in a header) before any app code:
    # no request the gateway answered, so no record.
    reaches_gateway: bool = True


# -- building bodies -----------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def call(
    tool: str = "echo",
    *,
    id: Any = 1,
    arguments: Any = None,
    modern: bool = False,
    method: str = "tools/call",
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "name": tool,
        "arguments": {"text": "hi"} if arguments is None else arguments,
    }
    if modern:
        params["_meta"] = META
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params}


def listing(*, id: Any = 1, modern: bool = False) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/list",
        "params": {"_meta": META} if modern else {},
    }


def note(method: str = "notifications/initialized", **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def with_id(id_text: str, *, modern: bool) -> bytes:
    """A call of ``echo`` whose id is the JSON text ``id_text``, as written."""
    params = dumps(call(modern=modern)["params"]).decode()
    return f'{{"jsonrpc":"2.0","id":{id_text},"method":"tools/call","params":{params}}}'.encode()


def nested(levels: int, *, modern: bool) -> bytes:
    """A call of ``echo`` whose params nest ``levels`` levels (params, arguments, then ``x``)."""
    inner = levels - 2
    x = '{"a":' * inner + '"leaf"' + "}" * inner
    meta = f',"_meta":{dumps(META).decode()}' if modern else ""
    params = f'{{"name":"echo","arguments":{{"text":"hi","x":{x}}}{meta}}}'
    return f'{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}'.encode()


# -- the corpus ----------------------------------------------------------------------------

ID_TEXTS = {
    "int": "1",
    "zero": "0",
    "negative": "-7",
    "int64 max": "9223372036854775807",
    "past uint64": "18446744073709551616",
    "fraction": "1.5",
    "exponent": "1e3",
    "string": '"call-1"',
    "empty string": '""',
    "long string": '"' + "i" * 5000 + '"',
    "unicode string": '"\u202eid\u00e9\U0001f600"',
    "true": "true",
    "false": "false",
    "null": "null",
    "empty object": "{}",
    "object": '{"a":1}',
    "array": "[1]",
}


def id_cases() -> list[Case]:
    return [
        Case(f"id {label} ({era})", with_id(text, modern=era == "modern"), era=era)
        for era in ("one-shot", "modern")
        for label, text in ID_TEXTS.items()
    ]


def nesting_cases() -> list[Case]:
    cases = [
        Case(
            f"params nested {levels} levels ({era})",
            nested(levels, modern=era == "modern"),
            era=era,
        )
        for era in ("one-shot", "modern")
        for levels in (MAX_DEPTH, MAX_DEPTH + 1, 255, 1000, 1100)
    ]
    deep_id = "[" * 300 + "]" * 300
    deep_result = '{"jsonrpc":"2.0","id":5,"result":' + '{"a":' * 300 + "1" + "}" * 300 + "}"
    deep_batch = "[" * 200 + dumps(call()).decode() + "]" * 200
    deep_args = '{"text":"hi","x":' + "[" * 500 + "]" * 500 + "}"
    return [
        *cases,
        Case("id nested 300 levels", with_id(deep_id, modern=False)),
        Case("a response nested 300 levels", deep_result.encode(), era="modern", routing=False),
        Case("a batch nested 200 levels", deep_batch.encode()),
        Case("openapi arguments nested 500 levels", deep_args.encode(), endpoint="tools/echo"),
        Case(
            "openapi arguments nested to the limit",
            b'{"text":"hi","x":' + b"[" * 62 + b"]" * 62 + b"}",
            endpoint="tools/echo",
        ),
    ]


def duplicate_key_cases() -> list[Case]:
    body = '{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}'
    return [
        Case(
            "duplicate id",
            b'{"jsonrpc":"2.0","id":1,"id":{"a":1},"method":"tools/list","params":{}}',
        ),
        Case(
            "duplicate method",
            b'{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}',
        ),
        Case(
            "duplicate params",
            body.format(
                params='{"name":"delete_everything"},"params":{"name":"echo","arguments":{"text":"x"}}'
            ).encode(),
        ),
        Case(
            "duplicate tool name, the denied one last",
            body.format(
                params='{"name":"echo","name":"delete_everything","arguments":{}}'
            ).encode(),
        ),
        Case(
            "duplicate tool name, the denied one first",
            body.format(
                params='{"name":"admin_reset","name":"echo","arguments":{"text":"x"}}'
            ).encode(),
        ),
        Case(
            "duplicate tool name, streamed",
            body.format(
                params='{"name":"admin_reset","name":"echo","arguments":{"text":"x"},"_meta":'
                + dumps(META).decode()
                + "}"
            ).encode(),
            era="modern",
        ),
        Case(
            "duplicate jsonrpc", b'{"jsonrpc":"2.0","jsonrpc":"1.0","id":1,"method":"tools/list"}'
        ),
    ]


def batch_cases() -> list[Case]:
    good, other = call(id=1), call(id=2)
    cases: list[Case] = []
    for era in ("one-shot", "modern"):
        modern = era == "modern"
        good, other = call(id=1, modern=modern), call(id=2, modern=modern)
        batches: dict[str, tuple[list[Any], int]] = {
            "empty batch": ([], 1),
            "batch of a number": ([1], 1),
            "batch of two calls": ([good, other], 2),
            "batch with a bad id": ([good, call(id={"a": 1})], 1),
            "batch with one id twice": ([good, call(id=1)], 1),
            "batch of a notification and a call": ([note(), good], 1),
            "batch of notifications": ([note(), note("notifications/progress")], 1),
            "batch past max_batch": ([call(id=i, modern=modern) for i in range(51)], 1),
            # Not one-shot (it opens a session): forwarded, each request answered.
            "batch with initialize": (
                [{"jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {}}, good],
                2,
            ),
            "batch in a batch": ([[good]], 1),
            "batch with a denied call": ([good, call("delete_everything", id=3)], 1),
            "batch with a response": ([good, {"jsonrpc": "2.0", "id": 4, "result": {}}], 1),
        }
        for label, (batch, records) in batches.items():
            cases.append(
                Case(f"{label} ({era})", dumps(batch), era=era, records=records, routing=False)
            )
    return cases


def notification_cases() -> list[Case]:
    return [
        Case("notification", dumps(note())),
        Case("notification, streamed", dumps(note()), era="modern"),
        Case(
            "cancellation of nothing",
            dumps(note("notifications/cancelled", requestId={"a": 1})),
            era="modern",
        ),
        Case("notification of an unknown method", dumps(note("notifications/\u0000odd"))),
        Case(
            "notification calling a denied tool",
            dumps(
                {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "delete_everything"}}
            ),
        ),
        Case("notification without a token", dumps(note()), token="none"),
        Case(
            "notification with contradicting headers",
            dumps(note()),
            era="modern",
            routing=False,
            headers=(("Mcp-Method", "tools/list"),),
        ),
        Case("notification in a session", dumps(note()), era="legacy"),
        Case(
            "response without a request",
            dumps({"jsonrpc": "2.0", "id": 77, "result": {}}),
            era="legacy",
        ),
        Case(
            "response with an error and a result",
            b'{"jsonrpc":"2.0","id":77,"result":{},"error":{"code":1,"message":"x"}}',
        ),
    ]


def header_cases() -> list[Case]:
    body = dumps(call(modern=True))
    plain = dumps(call())
    return [
        Case(
            "Mcp-Method contradicts the body",
            body,
            era="modern",
            routing=False,
            headers=(("Mcp-Method", "tools/list"), ("Mcp-Name", "echo")),
        ),
        Case(
            "Mcp-Name contradicts the body",
            body,
            era="modern",
            routing=False,
            headers=(("Mcp-Method", "tools/call"), ("Mcp-Name", "peek")),
        ),
        Case(
            "Mcp-Name missing",
            body,
            era="modern",
            routing=False,
            headers=(("Mcp-Method", "tools/call"),),
        ),
        Case("Mcp-Method twice", body, era="modern", headers=(("Mcp-Method", "tools/call"),)),
        Case(
            "MCP-Protocol-Version twice",
            body,
            era="modern",
            headers=(("MCP-Protocol-Version", LEGACY),),
        ),
        Case(
            "unknown protocol version",
            plain,
            era="raw",
            headers=(
                ("Content-Type", JSON),
                ("Accept", ACCEPT),
                ("MCP-Protocol-Version", "1999-01-01"),
            ),
        ),
        Case(
            "Mcp-Name of control characters",
            body,
            era="modern",
            routing=False,
            headers=(("Mcp-Method", "tools/call"), ("Mcp-Name", "ec\x1bho")),
            reaches_gateway=False,
        ),
        Case(
            "Mcp-Name of latin-1 bytes",
            body,
            era="modern",
            routing=False,
            headers=(("Mcp-Method", "tools/call"), ("Mcp-Name", "\xe9cho")),
        ),
        Case(
            "Mcp-Param header for no parameter",
            body,
            era="modern",
            headers=(("Mcp-Param-Region", "eu"),),
        ),
        Case("Authorization twice", plain, headers=(("Authorization", "Bearer x"),)),
        Case("no token", plain, token="none"),
        Case("a token that is no token", plain, token="garbage"),
        Case("a token for another server", plain, token="elsewhere"),
        Case("a DPoP proof with a bearer token", plain, headers=(("DPoP", "not.a.proof"),)),
        Case("Host not served here", plain, headers=(("Host", "evil.example"),)),
        Case("Origin of another site", plain, headers=(("Origin", "https://evil.example"),)),
        Case("Origin of the loopback", plain, headers=(("Origin", "http://127.0.0.1:9"),)),
        Case(
            "a session nobody opened", body, era="modern", headers=(("Mcp-Session-Id", "forged"),)
        ),
        Case(
            "a session id of control characters",
            plain,
            era="raw",
            headers=(
                ("Content-Type", JSON),
                ("Accept", ACCEPT),
                ("MCP-Protocol-Version", LEGACY),
                ("Mcp-Session-Id", "\x7f\x01"),
            ),
            reaches_gateway=False,
        ),
        Case("a header of 16 KiB", plain, headers=(("X-Filler", "f" * 16 * 1024),)),
        Case("a header of 1 MiB", plain, headers=(("X-Filler", "f" * 1024 * 1024),)),
        Case("a token of 64 KiB", plain, headers=(("Authorization", "Bearer " + "t" * 65536),)),
        Case("200 headers", plain, headers=tuple((f"X-H{i}", "v") for i in range(200))),
        Case(
            "Last-Event-ID on a POST", body, era="modern", headers=(("Last-Event-ID", "../../etc"),)
        ),
    ]


def content_type_cases() -> list[Case]:
    body = dumps(call(modern=True))
    cases = []
    for label, value in {
        "text/plain": "text/plain",
        "form": "application/x-www-form-urlencoded",
        "multipart": "multipart/form-data; boundary=x",
        "utf-16 charset": "application/json; charset=utf-16",
        "no content type": "",
    }.items():
        headers = (
            ("Accept", ACCEPT),
            ("MCP-Protocol-Version", MODERN),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "echo"),
        )
        typed = (("Content-Type", value),) if value else ()
        cases.append(
            Case(f"content type {label}", body, era="raw", headers=headers + typed, relayed=True)
        )
    cases += [
        Case(
            "Accept html only",
            body,
            era="raw",
            headers=(
                ("Content-Type", JSON),
                ("Accept", "text/html"),
                ("MCP-Protocol-Version", MODERN),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "echo"),
            ),
            relayed=True,
        ),
        Case(
            "no Accept",
            body,
            era="raw",
            headers=(
                ("Content-Type", JSON),
                ("MCP-Protocol-Version", MODERN),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", "echo"),
            ),
            relayed=True,
        ),
        Case("gzip claimed, plain sent", dumps(call()), headers=(("Content-Encoding", "gzip"),)),
    ]
    return cases


def body_cases() -> list[Case]:
    good = dumps(call())
    return [
        Case("empty body", b""),
        Case("whitespace body", b" \n\t "),
        Case("null", b"null"),
        Case("a number", b"42"),
        Case("a string", b'"tools/call"'),
        Case("truncated", good[:-3]),
        Case("trailing garbage", good + b"}{"),
        Case("two messages, no batch", good + good),
        Case("byte order mark", b"\xef\xbb\xbf" + good),
        Case("utf-16", good.decode().encode("utf-16")),
        Case("invalid utf-8", good.replace(b'"hi"', b'"\xff\xfe"')),
        Case("lone surrogate", good.replace(b'"hi"', b'"\\ud800"')),
        Case("NaN", good.replace(b'"hi"', b"NaN")),
        Case("huge number", good.replace(b'"hi"', b"1" + b"0" * 400)),
        Case("not JSON-RPC 2.0", dumps({**call(), "jsonrpc": "1.0"})),
        Case("no jsonrpc member", dumps({"id": 1, "method": "tools/list"})),
        Case("method not a string", dumps({"jsonrpc": "2.0", "id": 1, "method": ["tools/call"]})),
        Case(
            "params an array",
            dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1, 2]}),
        ),
        Case("arguments a string", dumps(call(arguments="text=hi"))),
        Case(
            "a body just under the limit",
            dumps(call(arguments={"text": "b" * (MAX_BODY_BYTES - 200)})),
        ),
        Case("a body over the limit", dumps(call(arguments={"text": "b" * MAX_BODY_BYTES}))),
        Case(
            "a body over the limit, streamed",
            dumps(call(arguments={"text": "b" * MAX_BODY_BYTES}, modern=True)),
            era="modern",
        ),
        Case("a NUL in the arguments", dumps(call(arguments={"text": "a\x00b"}))),
        Case(
            "secrets in the arguments",
            dumps(
                call("login", arguments={"username": "u", "password": "p" * 8, "api_key": "k" * 8})
            ),
        ),
    ]


NAMES = {
    "NUL": "ec\x00ho",
    "escape": "\x1b[31mecho",
    "right-to-left override": "echo\u202e",
    "emoji": "\U0001f600",
    "accented": "r\u00e9sum\u00e9",
    "128 characters": "t" * 128,
    "129 characters": "t" * 129,
    "257 characters": "t" * 257,
    "empty": "",
    "spaces": "  ",
    "a line break": "echo\nX-Injected: 1",
}


def name_cases() -> list[Case]:
    cases = [Case(f"tool name {label}", dumps(call(name))) for label, name in NAMES.items()]
    cases += [
        Case(f"tool name {label} (streamed)", dumps(call(name, modern=True)), era="modern")
        for label, name in list(NAMES.items())[:6]
    ]
    cases += [
        Case("tool name not a string", dumps({**call(), "params": {"name": 7}})),
        Case("a denied tool", dumps(call("delete_everything"))),
        Case("a denied tool, streamed", dumps(call("admin_reset", modern=True)), era="modern"),
        Case("a denied tool, differently cased", dumps(call("Delete_Everything"))),
        Case("an unknown tool", dumps(call("nope"))),
        Case("a tool that fails", dumps(call("fail"))),
        Case("method with a NUL", dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/\u0000list"})),
        Case("method of 300 characters", dumps({"jsonrpc": "2.0", "id": 1, "method": "m" * 300})),
        Case("method empty", dumps({"jsonrpc": "2.0", "id": 1, "method": ""})),
        Case("method rpc.discover", dumps({"jsonrpc": "2.0", "id": 1, "method": "rpc.discover"})),
        Case(
            "method with an escape, streamed",
            dumps({"jsonrpc": "2.0", "id": 1, "method": "\x1b]0;x\x07", "params": {"_meta": META}}),
            era="modern",
        ),
        Case("server name accented", dumps(call()), server=quote("s\u00e9rver")),
        Case("server name of 100 characters", dumps(call()), server="s" * 100),
        Case("server name with an escape", dumps(call()), server=quote("\x1b[2J")),
        Case("server switched off", dumps(call()), server="off"),
    ]
    return cases


def http_method_cases() -> list[Case]:
    return [
        Case("GET on the one-shot endpoint", None, method="GET", endpoint="jsonrpc"),
        Case("PUT", dumps(call()), method="PUT"),
        Case("PATCH on the one-shot endpoint", dumps(call()), method="PATCH", endpoint="jsonrpc"),
        Case("DELETE without a session", None, method="DELETE", era="modern", relayed=True),
        Case(
            "one-shot endpoint with a batch",
            dumps([call(id=1), call(id=2)]),
            endpoint="jsonrpc",
            records=2,
        ),
        Case(
            "one-shot endpoint with initialize",
            dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
            endpoint="jsonrpc",
        ),
        Case(
            "one-shot endpoint with a listen",
            dumps({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": {}}),
            endpoint="jsonrpc",
        ),
        Case(
            "one-shot endpoint with a task",
            dumps({"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"taskId": "x"}}),
            endpoint="jsonrpc",
        ),
        Case("one-shot endpoint with a listing", dumps(listing()), endpoint="jsonrpc"),
    ]


def openapi_cases() -> list[Case]:
    return [
        Case("openapi call", b'{"text":"hi"}', endpoint="tools/echo"),
        Case("openapi empty body", b"", endpoint="tools/peek"),
        Case("openapi arguments an array", b"[1]", endpoint="tools/echo"),
        Case("openapi not JSON", b"{text", endpoint="tools/echo"),
        Case("openapi wrong argument type", b'{"text":5}', endpoint="tools/echo"),
        Case("openapi unknown tool", b"{}", endpoint="tools/nope"),
        Case("openapi denied tool", b"{}", endpoint="tools/delete_everything"),
        Case("openapi without a token", b'{"text":"hi"}', endpoint="tools/echo", token="none"),
        Case(
            "openapi body over the limit",
            b'{"text":"' + b"o" * MAX_BODY_BYTES + b'"}',
            endpoint="tools/echo",
        ),
        Case("openapi tool name with an escape", b"{}", endpoint="tools/" + quote("\x1b[2J")),
    ]


def legacy_cases() -> list[Case]:
    return [
        Case("legacy call", dumps(call()), era="legacy"),
        Case("legacy listing", dumps(listing()), era="legacy"),
        Case("legacy batch", dumps([call(id=1), listing(id=2)]), era="legacy", records=2),
        Case("legacy denied tool", dumps(call("admin_reset")), era="legacy"),
        Case("legacy id an object", with_id('{"a":1}', modern=False), era="legacy"),
        Case("legacy params nested too deep", nested(300, modern=False), era="legacy"),
        Case(
            "legacy initialize again",
            dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
            era="legacy",
            relayed=True,
        ),
    ]


CASES = [
    *id_cases(),
    *nesting_cases(),
    *duplicate_key_cases(),
    *batch_cases(),
    *notification_cases(),
    *header_cases(),
    *content_type_cases(),
    *body_cases(),
    *name_cases(),
    *http_method_cases(),
    *openapi_cases(),
    *legacy_cases(),
]


def test_the_corpus_is_the_size_the_issue_asks_for_and_every_case_is_named_once() -> None:
    names = [case.name for case in CASES]
    assert len(set(names)) == len(names)
    assert 140 <= len(CASES) <= 220


# -- running it ------------------------------------------------------------------------------


@dataclass
class Run:
    gateway: Gateway
    http: httpx2.AsyncClient
    tokens: dict[str, str]
    session: str = ""
    answers: list[tuple[Case, httpx2.Response]] = field(default_factory=list)
    unanswered: dict[str, str] = field(default_factory=dict)

    def headers(self, case: Case) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        if case.token != "none":
            headers.append(("Authorization", f"Bearer {self.tokens[case.token]}"))
        headers += _era_headers(case, self.session)
        return headers + list(case.headers)

    async def send(self, case: Case) -> httpx2.Response:
        url = f"{self.gateway.base}/api/v1/mcp/{case.server}/{case.endpoint}"
        headers = [(name.encode(), value.encode("latin-1")) for name, value in self.headers(case)]
        request = self.http.build_request(case.method, url, content=case.body, headers=headers)
        try:
            response = await self.http.send(request)
        except httpx2.HTTPError as exc:
            self.unanswered[case.name] = repr(exc)
            raise
        self.answers.append((case, response))
        return response


def _era_headers(case: Case, session: str) -> list[tuple[str, str]]:
    if case.era == "raw":
        return []
    headers = [("Content-Type", JSON)] if case.body is not None else []
    if case.era == "one-shot":
        return headers
    headers.append(("Accept", ACCEPT))
    if case.era == "legacy":
        return [*headers, ("MCP-Protocol-Version", LEGACY), ("Mcp-Session-Id", session)]
    headers.append(("MCP-Protocol-Version", MODERN))
    return headers + (_routing(case.body) if case.routing else [])


def _routing(body: bytes | None) -> list[tuple[str, str]]:
    """The Mcp-Method and Mcp-Name headers a 2026-07-28 client sends with ``body``."""
    try:
        message = orjson.loads(body or b"")
    except orjson.JSONDecodeError:
        return []
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return []
    headers = [("Mcp-Method", _header(message["method"]))]
    params = message.get("params")
    if isinstance(params, dict) and isinstance(params.get("name"), str):
        headers.append(("Mcp-Name", _header(params["name"])))
    return headers


def _header(value: str) -> str:
    """``value`` as a header can carry it (the SDK's base64 form for what it cannot)."""
    from atrium.gateway import header_codec

    return header_codec.encode(value)


def problems_of(case: Case, response: httpx2.Response, records: int | None) -> list[str]:
    """What is wrong with the answer to ``case`` (nothing, for a pass)."""
    problems = []
    if response.status_code >= 500:
        problems.append(f"HTTP {response.status_code}: {response.text[:200]}")
    if not case.reaches_gateway:
        answered = "x-request-id" in response.headers or response.status_code != 400
        return [*problems, "answered by the gateway"] if answered else problems
    if "x-request-id" not in response.headers:
        problems.append(f"no x-request-id (HTTP {response.status_code})")
    elif records != case.records:
        problems.append(f"{records} audit records, not {case.records}")
    problems += _body_problems(case, response)
    return problems


def _body_problems(case: Case, response: httpx2.Response) -> list[str]:
    content_type = response.headers.get("content-type", "")
    if case.endpoint.startswith("tools/"):
        if response.status_code >= 400:
            body = _json(response)
            if not (isinstance(body, dict) and "error" in body and "message" in body):
                return [f"not a JSON problem: {response.text[:200]!r}"]
        return []
    if content_type.startswith("text/event-stream"):
        return (
            [] if response.status_code < 400 else [f"an event stream with {response.status_code}"]
        )
    if response.status_code >= 400 and case.relayed and not content_type.startswith(JSON):
        return []  # the backend's own refusal, relayed as it is (issue 18 §11)
    if not response.content:
        return [] if response.status_code in (200, 202, 204) else [f"empty {response.status_code}"]
    messages = _json(response)
    for message in messages if isinstance(messages, list) else [messages]:
        if not (isinstance(message, dict) and message.get("jsonrpc") == "2.0"):
            return [f"not JSON-RPC: {response.text[:200]!r}"]
        if response.status_code >= 400 and not isinstance(message.get("error"), dict):
            return [f"HTTP {response.status_code} without a JSON-RPC error"]
    return []


def _json(response: httpx2.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


@pytest.fixture
async def corpus_gateway(database_settings: Settings, backend: Backend) -> AsyncIterator[Gateway]:
    settings = dataclasses.replace(database_settings, max_body_bytes=MAX_BODY_BYTES)
    async with await Store.open(settings) as store:
        await save_servers(store, backend.port, free_port())
        await store.servers.save([server_record(SERVER, {"port": backend.port, **VAULT})])
        async with running_gateway(settings, store) as gateway:
            yield gateway


async def records_by_request(gateway: Gateway, request_ids: list[str]) -> dict[str, int]:
    """How many audit records each request has, once every record so far is written."""
    assert await gateway.parts.audit.settled(10)
    counts = {}
    for request_id in request_ids:
        counts[request_id] = len(await gateway.store.audit.for_request(request_id))
    return counts


async def test_every_answer_of_the_corpus_is_no_5xx_json_rpc_and_audited_once(
    corpus_gateway: Gateway, backend: Backend, http: httpx2.AsyncClient
) -> None:
    gateway = corpus_gateway
    tokens = {
        "good": gateway.token(SERVER, *SCOPES),
        "garbage": "not-a-jwt",
        "elsewhere": gateway.token("tools", *SCOPES),
    }
    run = Run(gateway, http, tokens)
    auth = {"Authorization": f"Bearer {tokens['good']}"}
    run.session = await legacy_session(http, gateway.url(SERVER), auth)

    for case in CASES:
        with contextlib.suppress(httpx2.HTTPError):
            await run.send(case)

    # Records are queued in the order requests end: once the marker's is written, so is every
    # record of the corpus (or it never will be).
    marker = await run.send(Case("marker", dumps(call())))
    await until(
        lambda: gateway.store.audit.for_request(marker.headers["x-request-id"]),
        what="the marker's audit record",
        interval=0.02,
    )
    ids = [r.headers["x-request-id"] for _, r in run.answers if "x-request-id" in r.headers]
    counts = await records_by_request(gateway, ids)
    failures = {
        case.name: problems
        for case, response in run.answers
        if (
            problems := problems_of(
                case, response, counts.get(response.headers.get("x-request-id", ""))
            )
        )
    }
    assert run.unanswered == {}
    assert not failures, "\n".join(f"{name}: {'; '.join(why)}" for name, why in failures.items())
    assert all(backend.witness.calls[tool] == 0 for tool in DENIED), backend.witness.calls
    assert max(map(forwarded_depth, backend.witness.requests)) <= MAX_DEPTH


def forwarded_depth(request: Received) -> int:
    """How deep the members of the messages a backend received nest (0: no JSON body)."""
    try:
        document = orjson.loads(bytes(request.body))
    except orjson.JSONDecodeError:
        return 0
    messages = document if isinstance(document, list) else [document]
    return max((nesting(message, 10 * MAX_DEPTH) - 1 for message in messages), default=0)
