"""Blog posts and their full-text index (issue 14, content-manager).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Types are spelled out here, not imported from ``atrium.store.tables`` (see 0001).

The full-text index is of one dialect each, and outside ``atrium.store.tables.metadata``
(``atrium.store.content.include_name`` leaves it out of schema comparisons):

- SQLite: an FTS5 table with external content (SQLite docs, "FTS5", §4.4.3): it stores only
  the index, reading ``title`` and ``body`` from ``content_documents`` by rowid, and is kept in
  step by the triggers of the docs' example. A later revision that rebuilds
  ``content_documents`` (``batch_alter_table``) must create these triggers again.
- PostgreSQL: a generated ``tsvector`` column, the title weighted A and the body B (for
  ``ts_rank``), and a GIN index on it (PostgreSQL docs, "Text Search", §12.2.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FTS = "content_documents_fts"

SQLITE_INDEX = (
    f"CREATE VIRTUAL TABLE {FTS} USING fts5(title, body, content='content_documents',"
    " content_rowid='id', tokenize='porter unicode61 remove_diacritics 2')",
    f"CREATE TRIGGER {FTS}_insert AFTER INSERT ON content_documents BEGIN"
    f" INSERT INTO {FTS}(rowid, title, body) VALUES (new.id, new.title, new.body); END",
    f"CREATE TRIGGER {FTS}_delete AFTER DELETE ON content_documents BEGIN"
    f" INSERT INTO {FTS}({FTS}, rowid, title, body)"
    " VALUES ('delete', old.id, old.title, old.body); END",
    f"CREATE TRIGGER {FTS}_update AFTER UPDATE ON content_documents BEGIN"
    f" INSERT INTO {FTS}({FTS}, rowid, title, body)"
    " VALUES ('delete', old.id, old.title, old.body);"
    f" INSERT INTO {FTS}(rowid, title, body) VALUES (new.id, new.title, new.body); END",
)

POSTGRESQL_INDEX = (
    "ALTER TABLE content_documents ADD COLUMN search tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english'::regconfig, title), 'A') || "
    "setweight(to_tsvector('english'::regconfig, body), 'B')) STORED",
    "CREATE INDEX ix_content_documents_search ON content_documents USING gin (search)",
)


def upgrade() -> None:
    op.create_table(
        "blog_posts",
        sa.Column("slug", sa.String(80), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('draft', 'published')", name=op.f("ck_blog_posts_status")),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_blog_posts")),
    )
    op.create_index(op.f("ix_blog_posts_owner_updated_at"), "blog_posts", ["owner", "updated_at"])
    op.create_table(
        "content_documents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("headings", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('post', 'playbook', 'skill')", name=op.f("ck_content_documents_kind")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_documents")),
    )
    op.create_index(
        op.f("ix_content_documents_kind_key"),
        "content_documents",
        ["kind", "key"],
        unique=True,
    )
    statements = {"sqlite": SQLITE_INDEX, "postgresql": POSTGRESQL_INDEX}
    for statement in statements[op.get_bind().dialect.name]:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # The triggers go with their table; the FTS5 table takes its shadow tables along.
        op.execute(f"DROP TABLE {FTS}")
    op.drop_index(op.f("ix_content_documents_kind_key"), table_name="content_documents")
    op.drop_table("content_documents")
    op.drop_index(op.f("ix_blog_posts_owner_updated_at"), table_name="blog_posts")
    op.drop_table("blog_posts")
