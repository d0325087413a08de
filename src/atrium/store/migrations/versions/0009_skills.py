"""Skills and their versions (issue 14, marketplace).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

Types are spelled out here, not imported from ``atrium.store.tables`` (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "skills",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("shared", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_skills")),
    )
    op.create_index(op.f("ix_skills_owner_name"), "skills", ["owner", "name"], unique=True)
    op.create_index(op.f("ix_skills_name"), "skills", ["name"])
    op.create_table(
        "skill_versions",
        sa.Column("skill_id", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["skill_id"],
            ["skills.id"],
            name=op.f("fk_skill_versions_skill_id_skills"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("skill_id", "version", name=op.f("pk_skill_versions")),
    )
    op.create_table(
        "skill_tags",
        sa.Column("skill_id", sa.String(32), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["skill_id"],
            ["skills.id"],
            name=op.f("fk_skill_tags_skill_id_skills"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("skill_id", "tag", name=op.f("pk_skill_tags")),
    )
    op.create_index(op.f("ix_skill_tags_tag"), "skill_tags", ["tag"])


def downgrade() -> None:
    op.drop_index(op.f("ix_skill_tags_tag"), table_name="skill_tags")
    op.drop_table("skill_tags")
    op.drop_table("skill_versions")
    op.drop_index(op.f("ix_skills_name"), table_name="skills")
    op.drop_index(op.f("ix_skills_owner_name"), table_name="skills")
    op.drop_table("skills")
