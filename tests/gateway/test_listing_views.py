"""A lone ``tools/list`` answer relayed from the catalog's parsed copy of the server's last
listing (``Exchange._listing``, ``ToolCatalog.listing``, ``ToolAccess.view``; issue 17).

What must hold, tried the way it could break: every caller gets exactly what parsing the whole
answer afresh and narrowing it for them would give, whoever listed the same bytes before
(a caller who may call more, or less); a listing whose bytes change is learnt anew; a catalog
whose hints were changed since is told them again; answers in any other shape take the whole
way; the copy is bounded and goes with the catalog.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import orjson
import pytest

from atrium.gateway import access as access_module
from atrium.gateway import exchange as exchange_module
from atrium.gateway.access import LISTING_MIN_BYTES, MAX_LISTINGS, ToolAccess, ToolCatalog
from atrium.gateway.exchange import Exchange
from atrium.gateway.jsonrpc import parse
from tests.gateway.test_access_listing import CALLERS, ODD_TOOLS, SERVERS, TOOLS, access_for

# Long enough for the copy (``LISTING_MIN_BYTES``): each tool described at length.
PADDING = "x" * 1000
LISTINGS: dict[str, list[Any]] = {
    "regular": [{**tool, "description": PADDING} for tool in TOOLS],
    "irregular": [
        {**tool, "description": PADDING} if isinstance(tool, dict) else tool for tool in ODD_TOOLS
    ],
}


def request(request_id: int | str = 1) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": "tools/list"})


def answer(tools: list[Any], request_id: int | str = 1, **result: Any) -> bytes:
    body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": {**result, "tools": tools}})
    assert len(body) >= LISTING_MIN_BYTES
    return body


def relayed(access: ToolAccess, body: bytes, request_id: int | str = 1) -> tuple[bytes, Exchange]:
    exchange = Exchange("r", access.server, 0.0, inbound=parse(request(request_id)), access=access)
    return exchange._inspect_json(body), exchange


def afresh(server: str, scopes: tuple[str, ...] | None, body: bytes) -> Any:
    """What the whole answer parsed now and narrowed for this caller alone is: the way every
    answer took before (``LISTING_MIN_BYTES`` out of reach), with a catalog of its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(exchange_module, "LISTING_MIN_BYTES", 1 << 40)
        out, _ = relayed(access_for(server, scopes), body)
    return orjson.loads(out)


def with_catalog(server: str, scopes: tuple[str, ...] | None, catalog: ToolCatalog) -> ToolAccess:
    fresh = access_for(server, scopes)
    return ToolAccess(fresh.server, fresh.config, fresh.policy, fresh.caller, catalog)


@pytest.mark.parametrize("listing", list(LISTINGS))
@pytest.mark.parametrize("server", list(SERVERS))
def test_each_caller_gets_what_narrowing_the_whole_answer_afresh_gives_in_any_order(
    server: str, listing: str
) -> None:
    body = answer(LISTINGS[listing], cacheScope="public")
    expected = {scopes: afresh(server, scopes, body) for scopes in CALLERS}
    # Every caller after every other, twice: what one saw must not reach the next.
    for first, second in itertools.permutations(CALLERS, 2):
        catalog = ToolCatalog()
        for scopes in (first, second, first, second):
            out, exchange = relayed(with_catalog(server, scopes, catalog), body)
            assert orjson.loads(out) == expected[scopes], (server, first, second, scopes)
            assert exchange.outcomes == {1: ("ok", None)}
        assert len(catalog._listings) == 1


def test_a_narrowed_view_is_private_and_a_whole_one_is_the_backends_own_bytes() -> None:
    body = answer(LISTINGS["regular"], cacheScope="public")
    catalog = ToolCatalog()

    whole, _ = relayed(with_catalog("reports", ("reports",), catalog), body)
    narrowed, _ = relayed(with_catalog("reports", ("user", "tools:read"), catalog), body)

    assert whole is body
    assert orjson.loads(narrowed)["result"]["cacheScope"] == "private"
    assert [t["name"] for t in orjson.loads(narrowed)["result"]["tools"]] == ["peek", "admin_peek"]
    # The copy itself is as parsed: no caller's view was written into it.
    assert catalog._listings["reports"].result == orjson.loads(body)["result"]


def test_a_listing_whose_bytes_change_is_learnt_anew() -> None:
    catalog = ToolCatalog()
    reader = with_catalog("sign-in", ("user", "tools:read"), catalog)
    before = [{"name": "peek", "annotations": {"readOnlyHint": True}, "description": PADDING * 11}]
    after = [{"name": "peek", "annotations": {"readOnlyHint": False}, "description": PADDING * 11}]

    first, _ = relayed(reader, answer(before))
    second, _ = relayed(reader, answer(after))

    assert [t["name"] for t in orjson.loads(first)["result"]["tools"]] == ["peek"]
    assert orjson.loads(second)["result"]["tools"] == []
    assert catalog.read_only("sign-in", "peek") is False


def test_hints_another_listing_changed_are_told_again_by_the_same_bytes() -> None:
    catalog = ToolCatalog()
    reader = with_catalog("sign-in", ("user", "tools:read"), catalog)
    body = answer(LISTINGS["regular"])
    relayed(reader, body)
    # A tool lookup (``lookup.py``) learnt another listing meanwhile.
    catalog.learn("sign-in", [{"name": "peek", "annotations": {"readOnlyHint": False}}])

    relayed(reader, body)

    assert catalog.read_only("sign-in", "peek") is True


@pytest.mark.parametrize(
    "body",
    [
        # Spaces, another order of members, an id that is not the request's, a batch of one,
        # an error, a result that is no object, a member after the result, a short listing.
        orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tools": LISTINGS["regular"]}}).replace(
            b'"id":1', b'"id": 1'
        ),
        orjson.dumps({"id": 1, "jsonrpc": "2.0", "result": {"tools": LISTINGS["regular"]}}),
        orjson.dumps({"jsonrpc": "2.0", "id": 2, "result": {"tools": LISTINGS["regular"]}}),
        orjson.dumps([{"jsonrpc": "2.0", "id": 1, "result": {"tools": LISTINGS["regular"]}}]),
        orjson.dumps({"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": PADDING * 11}}),
        b'{"jsonrpc":"2.0","id":1,"result":' + orjson.dumps([PADDING] * 11) + b"}",
        b'{"jsonrpc":"2.0","id":1,"result":'
        + orjson.dumps({"tools": LISTINGS["regular"]})
        + b',"extra":'
        + orjson.dumps({"tools": []})
        + b"}",
        orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"tools": TOOLS}}),
    ],
)
def test_an_answer_of_any_other_shape_is_read_whole_and_narrowed_all_the_same(body: bytes) -> None:
    catalog = ToolCatalog()
    for scopes in CALLERS:
        out, _ = relayed(with_catalog("reports", scopes, catalog), body)

        assert orjson.loads(out) == afresh("reports", scopes, body)
    assert not catalog._listings


def test_the_request_id_of_the_answer_may_be_a_string() -> None:
    catalog = ToolCatalog()
    body = answer(LISTINGS["regular"], request_id="list-1")
    out, exchange = relayed(with_catalog("no-sign-in", None, catalog), body, "list-1")

    assert [t["name"] for t in orjson.loads(out)["result"]["tools"]] == ["peek", "admin_peek"]
    assert exchange.outcomes == {"list-1": ("ok", None)}
    assert "no-sign-in" in catalog._listings


def test_header_declarations_another_listing_changed_are_told_again_by_the_same_bytes() -> None:
    catalog = ToolCatalog()
    marked = copy.deepcopy(LISTINGS["regular"])
    marked[1]["inputSchema"] = {
        "type": "object",
        "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
    }
    body = answer(marked)
    relayed(with_catalog("sign-in", ("admin",), catalog), body)
    assert "Region" in str(catalog.header_schemas("sign-in")["echo"])
    # A listing without the mark learnt meanwhile forgets it.
    catalog.learn("sign-in", [{"name": "echo", "inputSchema": {"type": "object"}}])
    assert "echo" not in catalog.header_schemas("sign-in")

    out, _ = relayed(with_catalog("sign-in", ("admin",), catalog), body)

    assert "Region" in str(catalog.header_schemas("sign-in")["echo"])
    assert out is body
    assert list(catalog._listings) == ["sign-in"]


def test_the_copies_are_bounded_and_go_with_the_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access_module, "MAX_LISTINGS", 3)
    catalog = ToolCatalog()
    body = answer(LISTINGS["regular"])
    for index in range(5):
        access = with_catalog("sign-in", ("admin",), catalog)
        access.server = f"server-{index}"
        relayed(access, body)

    assert list(catalog._listings) == ["server-2", "server-3", "server-4"]
    catalog.forget()
    assert not catalog._listings
    assert MAX_LISTINGS > 3  # the default keeps more


def test_a_listing_too_long_to_keep_is_served_all_the_same_and_not_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    catalog = ToolCatalog()
    short, long = answer(LISTINGS["regular"]), answer(LISTINGS["regular"] * 3)
    relayed(with_catalog("no-sign-in", None, catalog), short)
    monkeypatch.setattr(access_module, "LISTING_MAX_BYTES", len(long) - 100)

    out, _ = relayed(with_catalog("no-sign-in", None, catalog), long)

    assert orjson.loads(out) == afresh("no-sign-in", None, long)
    assert not catalog._listings  # nor the shorter one before it, which it replaces
