"""A confidential client's previous secret, valid for an overlap after a rotation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

``atrium admin clients rotate-secret`` keeps the old secret's hash and until when it still
authenticates, so the machines using it can move to the new one without downtime. Types are
spelled out here, not imported from ``atrium.store.tables`` (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SQLite cannot alter a table in place; batch mode rebuilds it there (a plain ALTER on
    # PostgreSQL).
    with op.batch_alter_table("oauth_clients") as batch:
        batch.add_column(sa.Column("previous_secret_hash", sa.String(128), nullable=True))
        batch.add_column(
            sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("oauth_clients") as batch:
        batch.drop_column("previous_secret_expires_at")
        batch.drop_column("previous_secret_hash")
