"""The database schema as SQLAlchemy Core tables; Alembic migrations must build exactly this.

``tests/store/test_migrations.py`` compares the migrated database with ``metadata``, so a change
here needs a new revision in ``migrations/versions/``. Constraint names follow one convention
because Alembic can only drop or alter a constraint it can name (Alembic docs, "The Importance
of Naming Constraints").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime`` on every database.

    PostgreSQL stores ``timestamptz``; SQLite has no such type and hands back naive values, so
    values are written as UTC and read back with UTC attached. A naive value is refused rather
    than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store only timezone-aware values")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


mcp_servers = Table(
    "mcp_servers",
    metadata,
    Column("name", String(64), primary_key=True),
    # Stored whole and read whole: plain JSON (not JSONB) keeps key order alike on both databases.
    Column("config", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("transport", String(16), nullable=False),
    Column("port", Integer, nullable=True),
    Column("source", String, nullable=True),
    Column("disabled_reason", String, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("port IS NULL OR port BETWEEN 1 AND 65535", name="port_range"),
)


# What an MCP server produced and kept: each run of the atrium server's CLI tool, for now.
artifacts = Table(
    "artifacts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("server", String(64), nullable=False),
    Column("tool", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("title", String, nullable=False),
    Column("content", JSON, nullable=False),
    # Indexed: list_recent reads the newest first.
    Column("created_at", UTCDateTime, nullable=False, index=True),
)


# One row per JSON-RPC request through the gateway (and per refused HTTP request); written in
# batches by the gateway's audit writer, read by `atrium infra logs`.
audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # One HTTP request (X-Request-Id) may carry a batch of JSON-RPC requests: not unique.
    Column("request_id", String(32), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("server", String(64), nullable=False),
    Column("method", String(128), nullable=True),
    Column("tool", String(128), nullable=True),
    Column("arguments", JSON, nullable=True),
    Column("caller", String(255), nullable=False),
    # The OAuth identity behind the call: the access token's ``sub`` and its client.
    Column("subject", String(255), nullable=True),
    Column("client_id", String(255), nullable=True),
    Column("origin", String(16), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status", Integer, nullable=False),
    Column("error", String, nullable=True),
    Column("duration_ms", Float, nullable=False),
    # The console's filters, newest first (keyset on id), and a caller's usage since a time.
    *(Index(f"ix_audit_events_{c}_id", c, "id") for c in ("server", "subject", "tool", "outcome")),
    Index("ix_audit_events_subject_at", "subject", "at"),
)


# The authorization server's state (``atrium.auth``). Secrets are stored only as the hashes the
# caller computed (SHA-256 of random tokens, argon2 of passwords). No foreign keys between these
# tables: a grant is checked against its client and user when used, and an unused dynamic
# client must be deletable while an authorization code it asked for is still pending.

# OAuth clients: registered dynamically (RFC 7591), configured (confidential), or known from a
# Client ID Metadata Document (``client_id`` is the document's URL).
oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(255), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(255), nullable=True),
    Column("secret_hash", String(128), nullable=True),
    Column("redirect_uris", JSON, nullable=False),
    Column("grant_types", JSON, nullable=False),
    Column("application_type", String(16), nullable=False),
    Column("token_endpoint_auth_method", String(32), nullable=False),
    # The scopes the client may ever be granted; NULL sets no client-level limit.
    Column("scope", Text, nullable=True),
    # The registered metadata as answered to the client (RFC 7591 §3.2.1).
    Column("metadata", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    # After ``atrium admin clients rotate-secret``: the secret before, valid until its expiry.
    Column("previous_secret_hash", String(128), nullable=True),
    Column("previous_secret_expires_at", UTCDateTime, nullable=True),
    CheckConstraint("kind IN ('dynamic', 'confidential', 'metadata')", name="kind"),
)


# People who sign in at the authorization endpoint; ``id`` is the ``sub`` of their tokens.
users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("username", String(255), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(64), nullable=False),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    # The sign-in session cookie names the epoch it was issued in; bumping it (a new password,
    # role, disabling, signing out) ends every session of the user at once.
    Column("session_epoch", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


# Authorization codes (RFC 6749 §4.1.2): short-lived and single-use. A used code stays a while
# so that its reuse is recognised and the token family it started can be revoked.
authorization_codes = Table(
    "authorization_codes",
    metadata,
    Column("code_hash", String(128), primary_key=True),
    Column("client_id", String(255), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    # RFC 7636: the S256 challenge the code verifier must match.
    Column("code_challenge", String(128), nullable=False),
    Column("scope", Text, nullable=False),
    Column("resource", Text, nullable=True),
    # RFC 9449 §10: the thumbprint of the DPoP key the code is bound to.
    Column("jkt", String(128), nullable=True),
    Column("family_id", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)


# Refresh tokens, rotated at every use (OAuth 2.1, refresh token grant; RFC 9700 §4.14.2): each
# rotation adds a token to the family its code started; a rotated token used again is a replay.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", String(128), primary_key=True),
    Column("family_id", String(64), nullable=False, index=True),
    Column("client_id", String(255), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("scope", Text, nullable=False),
    Column("resource", Text, nullable=True),
    Column("jkt", String(128), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("rotated_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
)


# Revoked access tokens (by jti) and token families (RFC 7009), which every gateway process
# loads to refuse tokens that are still unexpired; a row is useless once ``expires_at`` passes.
revocations = Table(
    "revocations",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("kind IN ('jti', 'family')", name="kind"),
)


# Every access token issued to ``subject`` up to ``revoked_before`` is revoked (a user disabled,
# deleted, given fewer scopes or a new password). Kept until the last such token has expired:
# an access token lives at most auth.tokens.MAX_LIFETIME_S, so ``expires_at`` is that long after.
subject_revocations = Table(
    "subject_revocations",
    metadata,
    Column("subject", String(255), primary_key=True),
    Column("revoked_before", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)


# Conversations of the AI service's agents (``atrium.ai``), owned by ``subject``: a user's OAuth
# ``sub`` or ``operator:<name>``. Listed per owner, most recently active first, hence the index.
ai_conversations = Table(
    "ai_conversations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("subject", String(255), nullable=False),
    Column("agent", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_ai_conversations_subject_updated_at", "subject", "updated_at"),
)


# The messages of a conversation, numbered from 1 by ``seq``. ``content`` is JSON kept as text,
# parsed row by row on reading, so one damaged row cannot make a whole conversation unreadable.
ai_messages = Table(
    "ai_messages",
    metadata,
    Column(
        "conversation_id",
        String(32),
        ForeignKey("ai_conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    # The usage of the model turn that produced an assistant message; NULL for the others.
    Column("input_tokens", Integer, nullable=True),
    Column("output_tokens", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("role IN ('user', 'assistant', 'tool')", name="role"),
)


# --- secrets (issue 14): below this line ---


# Secrets of the marketplace's ``manage_secrets``, one row per (owner, name): ``owner`` is a
# user's OAuth ``sub``, or ``@project`` for the project's own, which ``$secret`` in server YAML
# reads. The value is only ever stored sealed (``atrium.secretbox``: AES-256-GCM, ``nonce``, the
# ``ciphertext`` with its tag) under the key ``key_id``, indexed for a rotation's re-encryption.
secrets = Table(
    "secrets",
    metadata,
    Column("owner", String(255), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("key_id", String(32), nullable=False, index=True),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("updated_by", String(255), nullable=False),
    CheckConstraint("version >= 1", name="version"),
)


# --- skills (issue 14): below this line ---

# Agent Skills (the marketplace server), owned by ``owner`` (a user's ``sub``), one name per
# owner. ``version`` is the current one in ``skill_versions``; ``shared`` lets every signed-in
# user read it. ``description`` is the current version's, kept here for listing.
skills = Table(
    "skills",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("name", String(64), nullable=False),
    Column("description", String(1024), nullable=False),
    Column("shared", Boolean, nullable=False, server_default=false()),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_skills_owner_name", "owner", "name", unique=True),
    # Listing pages through names in order; an agent finds a shared skill by name.
    Index("ix_skills_name", "name"),
)


# Every version of a skill, never changed once written: ``content`` is the whole SKILL.md,
# ``files`` the extra files as {relative path: text}.
skill_versions = Table(
    "skill_versions",
    metadata,
    Column("skill_id", String(32), ForeignKey("skills.id", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("content", Text, nullable=False),
    Column("files", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)


# The current version's tags (``metadata.tags`` of its SKILL.md), one row each: filterable alike
# on SQLite and PostgreSQL, where a JSON column is not.
skill_tags = Table(
    "skill_tags",
    metadata,
    Column("skill_id", String(32), ForeignKey("skills.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(64), primary_key=True),
    Index("ix_skill_tags_tag", "tag"),
)


# --- content (issue 14): below this line ---

# Blog posts (``atrium.store.content``). The slug names the project's ``content/blog/<slug>.md``,
# so it is unique across owners. A published post is shared; a draft is its owner's alone.
blog_posts = Table(
    "blog_posts",
    metadata,
    Column("slug", String(80), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("tags", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("published_at", UTCDateTime, nullable=True),
    CheckConstraint("status IN ('draft', 'published')", name="status"),
    Index("ix_blog_posts_owner_updated_at", "owner", "updated_at"),
)


# What full-text search reads: posts, playbooks, skills. ``owner`` NULL: a project document for
# every caller. The full-text index itself is of one dialect each (migration 0010), outside
# ``metadata``: see ``atrium.store.content.include_name``. ``id`` is the FTS5 rowid.
content_documents = Table(
    "content_documents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("key", String(255), nullable=False),
    Column("owner", String(255), nullable=True),
    Column("shared", Boolean, nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("headings", Text, nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_content_documents_kind_key", "kind", "key", unique=True),
    CheckConstraint("kind IN ('post', 'playbook', 'skill')", name="kind"),
)
