"""The audit trail summed per hour, for the console's usage page (issue 16).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

Types are spelled out here, not imported from ``atrium.store.rollup`` (see 0001).

``audit_usage`` holds, per hour, server, tool, caller and latency bin, the sums the usage page
shows (``atrium.store.rollup``); the audit writer keeps it in the same transaction as its
inserts. The upgrade fills it from the rows already there, with the writer's bins (ten to each
factor of e): on SQLite the ``atrium_latency_bin`` function every store connection registers
(``atrium.store.sqlite``), on PostgreSQL the same formula in SQL. A revision that changes the
bins must fill the table again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOUR = {
    "sqlite": "CAST(strftime('%s', at) AS INTEGER) / 3600 * 3600",
    "postgresql": "CAST(floor(extract(epoch FROM at)) AS BIGINT) / 3600 * 3600",
}
LATENCY_BIN = {
    "sqlite": "atrium_latency_bin(duration_ms)",
    "postgresql": "CAST(floor(ln(LEAST(GREATEST(duration_ms, 0.001), 1e12)) * 10) AS INTEGER)",
}
BACKFILL = """
INSERT INTO audit_usage (hour, server, tool_call, tool, subject, latency_bin,
                         requests, errors, in_app, total_ms, min_ms, max_ms)
SELECT {hour}, server, tool IS NOT NULL, coalesce(tool, ''), coalesce(subject, ''),
       {latency_bin}, count(*), sum(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END),
       sum(CASE WHEN origin = 'in-app' THEN 1 ELSE 0 END), sum(duration_ms),
       min(duration_ms), max(duration_ms)
FROM audit_events
GROUP BY 1, 2, 3, 4, 5, 6
"""


def upgrade() -> None:
    op.create_table(
        "audit_usage",
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("server", sa.String(64), nullable=False),
        sa.Column("tool_call", sa.Boolean(), nullable=False),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("latency_bin", sa.SmallInteger(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("in_app", sa.Integer(), nullable=False),
        sa.Column("total_ms", sa.Float(), nullable=False),
        sa.Column("min_ms", sa.Float(), nullable=False),
        sa.Column("max_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour",
            "server",
            "tool_call",
            "tool",
            "subject",
            "latency_bin",
            name=op.f("pk_audit_usage"),
        ),
        sqlite_with_rowid=False,
    )
    op.create_index(op.f("ix_audit_usage_subject_hour"), "audit_usage", ["subject", "hour"])
    dialect = op.get_bind().dialect.name
    op.execute(BACKFILL.format(hour=HOUR[dialect], latency_bin=LATENCY_BIN[dialect]))


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_usage_subject_hour"), table_name="audit_usage")
    op.drop_table("audit_usage")
