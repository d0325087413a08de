"""mcp_servers: the registry's stored copy of each server's YAML.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Types are spelled out here, not imported from ``atrium.store.tables``: a migration must keep
building the schema of its day after the tables module moves on. Names are wrapped in ``op.f``
so the naming convention is not applied to them twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mcp_servers",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("transport", sa.String(16), nullable=False),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(), nullable=True),
        sa.Column("disabled_reason", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "port IS NULL OR port BETWEEN 1 AND 65535", name=op.f("ck_mcp_servers_port_range")
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_mcp_servers")),
    )


def downgrade() -> None:
    op.drop_table("mcp_servers")
