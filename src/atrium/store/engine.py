"""``Store``: the one handle on the database, opened at the edge and passed down.

``Store.open`` prepares the SQLite file or PostgreSQL schema, creates the async engine and
migrates to the newest revision, so code holding a ``Store`` always sees the current tables.
Close it when done (it owns the connection pool)::

    async with await Store.open(settings) as store:
        servers = await store.servers.list()

or, in a Starlette lifespan, ``store = await Store.open(settings)`` ... ``await store.close()``.
"""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from atrium.errors import ConfigError, Problem
from atrium.settings import SETTINGS_FILE, Settings
from atrium.store import migrate, postgres, sqlite
from atrium.store.artifacts import ArtifactQueries
from atrium.store.audit import AuditQueries
from atrium.store.clients import ClientQueries
from atrium.store.content import ContentQueries
from atrium.store.conversations import ConversationQueries
from atrium.store.errors import translated
from atrium.store.grants import GrantQueries
from atrium.store.keys import KeyQueries
from atrium.store.secrets import SecretQueries
from atrium.store.servers import Clock, ServerQueries, utc_now
from atrium.store.skills import SkillQueries
from atrium.store.users import UserQueries

SCHEMA_VARIABLE = "ATRIUM_DATABASE_SCHEMA"


class Store:
    """The database: the async engine and the typed queries of each domain."""

    engine: AsyncEngine
    servers: ServerQueries
    artifacts: ArtifactQueries
    audit: AuditQueries
    clients: ClientQueries
    users: UserQueries
    grants: GrantQueries
    conversations: ConversationQueries
    secrets: SecretQueries
    content: ContentQueries
    skills: SkillQueries
    keys: KeyQueries

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.servers = ServerQueries(engine, clock=clock)
        self.artifacts = ArtifactQueries(engine, clock=clock)
        self.audit = AuditQueries(engine)
        self.clients = ClientQueries(engine, clock=clock)
        self.users = UserQueries(engine, clock=clock)
        self.grants = GrantQueries(engine, clock=clock)
        self.conversations = ConversationQueries(engine, clock=clock)
        self.secrets = SecretQueries(engine, clock=clock)
        self.content = ContentQueries(engine, clock=clock)
        self.skills = SkillQueries(engine, clock=clock)
        self.keys = KeyQueries(engine, clock=clock)

    @classmethod
    async def open(cls, settings: Settings, *, clock: Clock = utc_now) -> Store:
        """Connect to ``settings.database_url`` and migrate it to the newest revision.

        Raises ``ConfigError`` for a schema set with SQLite, ``StoreError`` when the database
        cannot be reached, created or migrated.
        """
        engine = _create_engine(settings)
        try:
            with translated(engine.url, migrate.ACTION):
                await migrate.upgrade(engine, _schema(settings))
        except BaseException:
            # Even a failed open may leave a pooled connection; an undisposed one leaks.
            await engine.dispose()
            raise
        return cls(engine, clock=clock)

    async def close(self) -> None:
        """Close every pooled connection; the ``Store`` must not be used afterwards."""
        await self.audit.close()
        await self.engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def _create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        _refuse_schema(settings)
        path = sqlite.database_path(url)
        if path is not None:
            with translated(url, f"create the database file {path}"):
                sqlite.prepare_file(path)
        engine = create_async_engine(url)
        sqlite.install_hooks(engine)
        return engine
    return create_async_engine(url, connect_args=postgres.connect_args(_schema(settings)))


def _schema(settings: Settings) -> str | None:
    # An empty ATRIUM_DATABASE_SCHEMA= means "not set", as an empty variable usually does.
    return settings.database_schema or None


def _refuse_schema(settings: Settings) -> None:
    if _schema(settings) is None:
        return
    message = (
        f"schema '{settings.database_schema}' needs PostgreSQL; SQLite has no schemas "
        "(unset it, or set a postgresql:// database URL)"
    )
    if SCHEMA_VARIABLE in settings.environ:
        problem = Problem(f"environment variable {SCHEMA_VARIABLE}", message)
    else:
        problem = Problem(SETTINGS_FILE, message, key_path="store.schema")
    raise ConfigError([problem])
