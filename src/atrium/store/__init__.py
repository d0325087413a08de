"""The database: SQLAlchemy Core tables, Alembic migrations, typed queries per domain.

Open one ``Store`` per process with ``await Store.open(settings)``; see ``atrium.store.engine``.
"""

from atrium.store.artifacts import ArtifactQueries, ArtifactRecord
from atrium.store.engine import Store
from atrium.store.errors import StoreError
from atrium.store.servers import ServerQueries, ServerRecord

__all__ = [
    "ArtifactQueries",
    "ArtifactRecord",
    "ServerQueries",
    "ServerRecord",
    "Store",
    "StoreError",
]
