"""Blog posts and their full-text index (issue 14, content-manager).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Types are spelled out here, not imported from ``atrium.store.tables`` (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # placeholder: filled in by the content work


def downgrade() -> None:
    pass
