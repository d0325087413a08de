"""The database: SQLAlchemy Core tables, Alembic migrations, typed queries per domain.

Open one ``Store`` per process with ``await Store.open(settings)``; see ``atrium.store.engine``.
"""

from atrium.store.artifacts import ArtifactQueries, ArtifactRecord
from atrium.store.clients import ClientQueries, ClientRecord
from atrium.store.conversations import (
    ConversationQueries,
    ConversationRecord,
    MessageRecord,
    NewMessage,
    UnknownConversation,
)
from atrium.store.engine import Store
from atrium.store.errors import AlreadyExists, StoreError
from atrium.store.grants import CodeRecord, GrantQueries, RefreshRecord
from atrium.store.servers import ServerQueries, ServerRecord
from atrium.store.users import UserQueries, UserRecord

__all__ = [
    "AlreadyExists",
    "ArtifactQueries",
    "ArtifactRecord",
    "ClientQueries",
    "ClientRecord",
    "CodeRecord",
    "ConversationQueries",
    "ConversationRecord",
    "GrantQueries",
    "MessageRecord",
    "NewMessage",
    "RefreshRecord",
    "ServerQueries",
    "ServerRecord",
    "Store",
    "StoreError",
    "UnknownConversation",
    "UserQueries",
    "UserRecord",
]
