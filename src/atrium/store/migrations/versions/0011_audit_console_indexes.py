"""Indexes for the web console's audit queries (issue 16).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02

The audit page filters by server, caller (``subject``), tool or outcome and reads the newest
first by keyset (``ORDER BY id DESC`` below the last id shown): an index on (column, id) serves
each filter without a scan of the table. The dashboard and the usage page sum one caller's
records since a time: (subject, at). ``at`` and ``request_id`` have their indexes since 0003.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_audit_events_server_id": ["server", "id"],
    "ix_audit_events_subject_id": ["subject", "id"],
    "ix_audit_events_tool_id": ["tool", "id"],
    "ix_audit_events_outcome_id": ["outcome", "id"],
    "ix_audit_events_subject_at": ["subject", "at"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "audit_events", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="audit_events")
