"""Store fixtures: every test that asks for ``database_settings`` or ``store`` runs twice, on
SQLite and on PostgreSQL.

PostgreSQL isolation: each test run draws a random prefix ``atrium_test_<hex>``, and each test
gets its own schema ``<prefix>_<n>``. ``Store.open`` creates it (so that path is exercised too),
the fixture drops it with CASCADE after the test, and at the end of the session any schema left
with the run's prefix is dropped as well. Concurrent runs and tests never share a table.

The server is ``ATRIUM_TEST_POSTGRES_URL`` (default below). Unreachable, the PostgreSQL tests
skip, except with ``CI=true``, where they fail: CI must never pass without them.

Redis (``redis_url``, ``ATRIUM_TEST_REDIS_URL``) is held to the same rule. Its tests share one
server: each takes a fresh key prefix (``redis_prefix``), and its keys are deleted after it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio
import redis.exceptions

from atrium.settings import Settings, load_settings
from atrium.store import Store

POSTGRES_URL = os.environ.get(
    "ATRIUM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

REDIS_URL = os.environ.get("ATRIUM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

_schema_numbers = itertools.count(1)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


async def _ping(url: str) -> None:
    connection = await asyncpg.connect(url, timeout=5)
    await connection.close()


async def _drop_schemas(url: str, *, named: str | None = None, prefix: str | None = None) -> None:
    """Drop the schema ``named``, or every schema whose name starts with ``prefix``."""
    connection = await asyncpg.connect(url, timeout=5)
    try:
        names = await connection.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname = $1 OR starts_with(nspname, $2)",
            named,
            prefix,
        )
        for (name,) in names:
            await connection.execute(f'DROP SCHEMA "{name}" CASCADE')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_schema_prefix() -> Iterator[str]:
    """A prefix for this run's schemas, once PostgreSQL has answered."""
    try:
        asyncio.run(_ping(POSTGRES_URL))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc!r}"
        if _in_ci():
            pytest.fail(f"{reason}; with CI=true the PostgreSQL tests must run", pytrace=False)
        pytest.skip(f"{reason} (with CI=true this fails)")
    prefix = f"atrium_test_{secrets.token_hex(6)}"
    yield prefix
    asyncio.run(_drop_schemas(POSTGRES_URL, prefix=prefix))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """``Settings`` for a fresh, empty database: SQLite in ``tmp_path``, or a new schema."""
    if request.param == "sqlite":
        yield load_settings(project_dir=tmp_path, environ={})
        return
    prefix = request.getfixturevalue("postgres_schema_prefix")
    schema = f"{prefix}_{next(_schema_numbers)}"
    environ = {"ATRIUM_DATABASE_URL": POSTGRES_URL, "ATRIUM_DATABASE_SCHEMA": schema}
    yield load_settings(project_dir=tmp_path, environ=environ)
    asyncio.run(_drop_schemas(POSTGRES_URL, named=schema))


@pytest.fixture
async def store(database_settings: Settings) -> AsyncIterator[Store]:
    """A migrated ``Store`` on ``database_settings``, closed after the test."""
    async with await Store.open(database_settings) as opened:
        yield opened


async def _redis(command: str, prefix: str = "") -> None:
    """``ping``, or delete every key that starts with ``prefix``."""
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        if command == "ping":
            # redis-py types ping() for its sync and async clients alike; this one awaits.
            await client.ping()  # type: ignore[misc]
            return
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis, once it has answered."""
    try:
        asyncio.run(_redis("ping"))
    except (OSError, redis.exceptions.RedisError) as exc:
        reason = f"Redis is not reachable at {REDIS_URL}: {exc!r}"
        if _in_ci():
            pytest.fail(f"{reason}; with CI=true the Redis tests must run", pytrace=False)
        pytest.skip(f"{reason} (with CI=true this fails)")
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"atrium-test-{secrets.token_hex(6)}"
    yield prefix
    asyncio.run(_redis("delete", prefix))
