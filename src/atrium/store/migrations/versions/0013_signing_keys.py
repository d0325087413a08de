"""Signing keys in the store, sealed, shared by every replica (issue 18, scale-out).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

Types are spelled out here, not imported from ``atrium.store.keys`` (see 0001).

``signing_keys`` holds each key Atrium signs with (``atrium.store.keys``): its private half
sealed under the project's master key, when it may start signing, when it was retired. The
keys of ``.atrium/signing-keys.json`` are imported at first use (``atrium.auth.keystore``), not
here: sealing needs the master key, which a migration does not read.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("nonce", sa.LargeBinary(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signs_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "retired_at IS NOT NULL OR (key_id IS NOT NULL AND nonce IS NOT NULL"
            " AND ciphertext IS NOT NULL)",
            name=op.f("ck_signing_keys_sealed"),
        ),
        sa.PrimaryKeyConstraint("purpose", "kid", name=op.f("pk_signing_keys")),
    )


def downgrade() -> None:
    op.drop_table("signing_keys")
