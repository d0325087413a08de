"""The DPoP replay cache in Redis: single use across replicas, forgetting, and Redis down."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from atrium.auth.dpop import DpopVerifier
from atrium.auth.errors import OAuthError
from atrium.auth.replay_redis import RedisReplayCache
from atrium.client.dpop import generate_key, make_proof
from atrium.gateway.redis_client import connect
from tests.polling import until
from tests.processes import free_port

pytestmark = pytest.mark.redis

URL = "https://gw.example.com/mcp"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    connection = connect(redis_url, timeout_s=2)
    yield connection
    await connection.aclose()


async def test_a_key_is_new_the_first_time_and_a_replay_after(
    client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    cache = RedisReplayCache(client, prefix=redis_prefix)

    assert await cache.first_use("jkt:jti-1", ttl_s=60) is True
    assert await cache.first_use("jkt:jti-1", ttl_s=60) is False
    assert await cache.first_use("jkt:jti-2", ttl_s=60) is True


async def test_a_key_is_stored_with_its_ttl_under_the_prefix(
    client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    await RedisReplayCache(client, prefix=redis_prefix).first_use("jkt:jti", ttl_s=2.5)

    assert 0 < await client.pttl(f"{redis_prefix}:dpop:jkt:jti") <= 2500


async def test_a_key_is_forgotten_once_its_ttl_runs_out(
    client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    cache = RedisReplayCache(client, prefix=redis_prefix)
    assert await cache.first_use("jkt:jti", ttl_s=0.05)

    await until(
        lambda: cache.first_use("jkt:jti", ttl_s=0.05),
        what="the key's TTL",
        timeout_s=5,
        interval=0.01,
    )


async def test_caches_with_other_prefixes_do_not_share_keys(
    client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    one = RedisReplayCache(client, prefix=f"{redis_prefix}-one")
    two = RedisReplayCache(client, prefix=f"{redis_prefix}-two")

    assert await one.first_use("jkt:jti", ttl_s=60)
    assert await two.first_use("jkt:jti", ttl_s=60)


async def test_a_proof_replayed_to_another_replica_is_refused(
    redis_url: str, redis_prefix: str
) -> None:
    # Two verifiers, each with a client of its own, as two gateway processes would have.
    first, second = connect(redis_url, timeout_s=2), connect(redis_url, timeout_s=2)
    try:
        replicas = [
            DpopVerifier(replay=RedisReplayCache(connection, prefix=redis_prefix))
            for connection in (first, second)
        ]
        proof = make_proof(generate_key(), method="POST", url=URL, iat=int(time.time()))
        await replicas[0].verify([proof], method="POST", urls=[URL])

        with pytest.raises(OAuthError) as caught:
            await replicas[1].verify([proof], method="POST", urls=[URL])
    finally:
        await first.aclose()
        await second.aclose()

    assert caught.value.error == "invalid_dpop_proof"


async def test_an_unreachable_redis_refuses_the_proof_with_503() -> None:
    connection = connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    try:
        with pytest.raises(OAuthError) as caught:
            await RedisReplayCache(connection).first_use("jkt:jti", ttl_s=60)
    finally:
        await connection.aclose()

    assert (caught.value.error, caught.value.status) == ("temporarily_unavailable", 503)
    assert caught.value.headers["Retry-After"] == "5"
