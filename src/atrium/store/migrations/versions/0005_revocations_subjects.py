"""Revocations per subject, and sign-in sessions that can be ended.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

``subject_revocations`` revokes every access token issued to a subject before a moment (a user
disabled, deleted, given fewer scopes or a new password); ``users.session_epoch`` ends every
sign-in session of a user when it moves. Types are spelled out here, not imported from
``atrium.store.tables`` (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subject_revocations",
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("revoked_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_subject_revocations")),
    )
    # SQLite cannot alter a table in place; batch mode rebuilds it there (a plain ALTER on
    # PostgreSQL). Existing sessions carry no epoch and end: their users sign in once more.
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("session_epoch", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_epoch")
    op.drop_table("subject_revocations")
