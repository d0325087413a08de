"""Stored secrets, encrypted at rest (issue 14, marketplace).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02

Types are spelled out here, not imported from ``atrium.store.tables`` (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # placeholder: filled in by the secrets work


def downgrade() -> None:
    pass
