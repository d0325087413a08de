"""Stored secrets, encrypted at rest (issue 14, marketplace).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Types are spelled out here, not imported from ``atrium.store.tables`` (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "secrets",
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_secrets_version")),
        sa.PrimaryKeyConstraint("owner", "name", name=op.f("pk_secrets")),
    )
    op.create_index(op.f("ix_secrets_key_id"), "secrets", ["key_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_secrets_key_id"), table_name="secrets")
    op.drop_table("secrets")
