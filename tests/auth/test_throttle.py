"""The sign-in and registration throttles: per address and per user name, each with its own
limit, shared through Redis by every replica, and still counting while Redis is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import redis.asyncio

from atrium.auth.throttle import Counters, RegistrationThrottle, SignInThrottle
from atrium.errors import ConfigError
from atrium.gateway.redis_client import connect
from atrium.settings import load_settings
from tests.processes import free_port

PER_ADDRESS = "10/minute"
PER_USER = "30/minute"


@pytest.fixture
async def exits() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


def counters_in(exits: AsyncExitStack, url: str | None, prefix: str = "atrium") -> Counters:
    """A replica's counters: a Redis client of its own on ``url``, or memory without one."""
    client = connect(url, timeout_s=0.5) if url is not None else None
    if client is not None:
        exits.push_async_callback(client.aclose)
    counters = Counters.for_redis(client, prefix)
    exits.push_async_callback(counters.close)
    return counters


def throttle(counters: Counters) -> SignInThrottle:
    return SignInThrottle(counters, per_address=PER_ADDRESS, per_user=PER_USER)


async def attempt(replica: SignInThrottle, username: str, address: str) -> bool:
    """One wrong password, as the sign-in form handles it: refused unchecked while blocked
    (and then not counted). Whether the password was checked."""
    if await replica.blocked(username, address):
        return False
    await replica.failed(username, address)
    return True


@pytest.mark.redis
async def test_two_replicas_sharing_one_redis_count_failures_together(
    exits: AsyncExitStack, redis_url: str, redis_prefix: str
) -> None:
    first = throttle(counters_in(exits, redis_url, redis_prefix))
    second = throttle(counters_in(exits, redis_url, redis_prefix))

    for n in range(5):
        assert await attempt(first, f"name{n}", "203.0.113.7")
        assert await attempt(second, f"other{n}", "203.0.113.7")

    assert await first.blocked("someone", "203.0.113.7")
    assert await second.blocked("someone", "203.0.113.7")
    assert not await second.blocked("someone", "203.0.113.8")


async def test_without_redis_each_replica_counts_alone(exits: AsyncExitStack) -> None:
    first, second = throttle(counters_in(exits, None)), throttle(counters_in(exits, None))

    for n in range(10):
        assert await attempt(first, f"name{n}", "203.0.113.7")

    assert await first.blocked("someone", "203.0.113.7")
    assert not await second.blocked("someone", "203.0.113.7")


@pytest.mark.parametrize("shared", [False, pytest.param(True, marks=pytest.mark.redis)])
async def test_one_address_hammering_a_user_locks_out_neither_that_user_nor_another_elsewhere(
    exits: AsyncExitStack, request: pytest.FixtureRequest, shared: bool
) -> None:
    url, prefix = (
        (request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix"))
        if shared
        else (None, "atrium")
    )
    replica = throttle(counters_in(exits, url, prefix))

    checked = [await attempt(replica, "alice", "198.51.100.1") for _ in range(100)]

    assert checked.count(True) == 10  # then the address is throttled, not the name
    assert await replica.blocked("bob", "198.51.100.1")
    assert not await replica.blocked("alice", "198.51.100.2")
    assert not await replica.blocked("bob", "198.51.100.2")


async def test_many_addresses_guessing_one_user_lock_that_user_alone(
    exits: AsyncExitStack,
) -> None:
    replica = throttle(counters_in(exits, None))

    checked = [await attempt(replica, "alice", f"198.51.100.{n}") for n in range(40)]

    assert checked.count(True) == 30
    assert await replica.blocked("alice", "192.0.2.1")
    assert await replica.blocked("ALICE", "192.0.2.1")  # a name's case is no way around it
    assert not await replica.blocked("bob", "192.0.2.1")


async def test_while_redis_is_down_failures_are_still_counted_in_the_process(
    exits: AsyncExitStack, caplog: pytest.LogCaptureFixture
) -> None:
    replica = throttle(counters_in(exits, f"redis://127.0.0.1:{free_port()}/0"))

    checked = [await attempt(replica, f"name{n}", "203.0.113.9") for n in range(12)]

    assert checked.count(True) == 10
    assert await replica.blocked("someone", "203.0.113.9")
    warnings = [r for r in caplog.records if "auth throttles count in this process" in r.message]
    assert len(warnings) == 1  # said once, not at every sign-in


@pytest.mark.redis
async def test_keys_stay_short_and_apart_whatever_name_is_posted(
    exits: AsyncExitStack, redis_url: str, redis_prefix: str
) -> None:
    replica = throttle(counters_in(exits, redis_url, redis_prefix))
    long_a, long_b = "a" * 100_000, "a" * 99_999 + "b"

    for _ in range(30):
        await replica.failed(long_a, "")
    await replica.failed("x/30/1/minute", "")  # limits joins the parts of a key with "/"

    assert await replica.blocked(long_a, "")
    assert not await replica.blocked(long_b, "")
    assert not await replica.blocked("x", "")
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
    finally:
        await client.aclose()
    assert len(keys) == 2
    assert max(len(key) for key in keys) < 200


@pytest.mark.redis
async def test_two_replicas_sharing_one_redis_share_each_addresss_registrations(
    exits: AsyncExitStack, redis_url: str, redis_prefix: str
) -> None:
    first = RegistrationThrottle(counters_in(exits, redis_url, redis_prefix), "3/hour")
    second = RegistrationThrottle(counters_in(exits, redis_url, redis_prefix), "3/hour")

    for replica in (first, second, first):
        assert await replica.retry_after("198.51.100.5") is None
        await replica.registered("198.51.100.5")

    waits = [await replica.retry_after("198.51.100.5") for replica in (first, second)]
    assert all(wait is not None and 3500 < wait <= 3600 for wait in waits)
    assert await second.retry_after("198.51.100.6") is None


@pytest.mark.parametrize("key", ["signin_failures_per_address", "signin_failures_per_user"])
def test_a_sign_in_limit_that_is_not_a_rate_is_a_config_error_naming_its_key(
    tmp_path: Path, key: str
) -> None:
    (tmp_path / "atrium.yaml").write_text(f"oauth:\n  {key}: 0/minute\n")

    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path, environ={})

    (problem,) = raised.value.problems
    assert (problem.key_path, problem.line) == (f"oauth.{key}", 2)
