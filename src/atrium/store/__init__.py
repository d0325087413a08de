"""The database: SQLAlchemy Core tables, Alembic migrations, typed queries per domain.

Open one ``Store`` per process with ``await Store.open(settings)``; see ``atrium.store.engine``.
"""

from atrium.store.artifacts import ArtifactQueries, ArtifactRecord
from atrium.store.clients import ClientQueries, ClientRecord
from atrium.store.content import (
    ContentQueries,
    IndexDocument,
    PostRecord,
    SearchHit,
    SlugTaken,
    Source,
)
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
from atrium.store.secrets import PROJECT_OWNER, KeyRotation, SecretQueries, SecretRecord
from atrium.store.servers import ServerQueries, ServerRecord
from atrium.store.skills import (
    SkillDocument,
    SkillQueries,
    SkillRecord,
    SkillSummary,
    UnknownSkill,
    VersionConflict,
    VersionRecord,
)
from atrium.store.users import UserQueries, UserRecord

__all__ = [
    "PROJECT_OWNER",
    "AlreadyExists",
    "ArtifactQueries",
    "ArtifactRecord",
    "ClientQueries",
    "ClientRecord",
    "CodeRecord",
    "ContentQueries",
    "ConversationQueries",
    "ConversationRecord",
    "GrantQueries",
    "IndexDocument",
    "KeyRotation",
    "MessageRecord",
    "NewMessage",
    "PostRecord",
    "RefreshRecord",
    "SearchHit",
    "SecretQueries",
    "SecretRecord",
    "ServerQueries",
    "ServerRecord",
    "SkillDocument",
    "SkillQueries",
    "SkillRecord",
    "SkillSummary",
    "SlugTaken",
    "Source",
    "Store",
    "StoreError",
    "UnknownConversation",
    "UnknownSkill",
    "UserQueries",
    "UserRecord",
    "VersionConflict",
    "VersionRecord",
]
