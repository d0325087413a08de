"""The ``marketplace`` server's secrets tools (issue 14): secrets encrypted at rest, per owner.

* ``manage_secrets(action, name, value, scope)``: ``set`` stores a new secret (refused when
  the name is taken: nothing is overwritten by mistake), ``rotate`` gives an existing one a new
  value (version + 1; when and by whom it was created stay), ``delete`` removes it. The result
  holds names and metadata, never the value.
* ``get_secrets(reveal, names, scope)``: names and metadata (version, created, updated, owner).
  Values only with ``reveal: true`` and only for a caller holding ``admin``; every reveal is
  logged here (who, which names, the gateway's request id; never a value), beside the
  gateway's audit record of the call.

Ownership: a secret belongs to the subject that set it (scope ``user``, the default), and no
one else sees it, admins included: no argument names another owner. Scope ``project`` holds
the project's own secrets, those ``{$secret: NAME}`` in a hosted server's ``env:`` reads
(``atrium.registry.secrets``); listing, changing and revealing them takes ``admin``. There is
no sharing between users: a secret others' servers need belongs in the project scope. An
anonymous caller is refused: a secret is always someone's.

The ``value`` argument is a string in the input schema but is read as anything and checked
here: a wrong one is refused in words that never quote it, where the SDK's validation error
would (pydantic prints the input). The gateway's audit hides it (``atrium.redaction``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field, WithJsonSchema

from atrium.auth.assertion import CallerIdentity
from atrium.errors import AtriumError
from atrium.secretbox import MAX_VALUE_BYTES, NAME_RULE, SecretBox, check_name, check_value
from atrium.servers.toolkit import AtriumServer
from atrium.servers.trust import current_caller
from atrium.settings import Settings
from atrium.store import PROJECT_OWNER, AlreadyExists, SecretRecord, Store

logger = logging.getLogger(__name__)

Action = Literal["set", "rotate", "delete"]
Scope = Literal["user", "project"]
MAX_NAMES = 100

SecretName = Annotated[str, Field(description=f"The secret's name: {NAME_RULE}.")]
ScopeArgument = Annotated[
    Scope,
    Field(
        description=(
            "user (default): your own secrets. project: the project's, which hosted servers"
            " read as {$secret: NAME} in their env; admins only."
        )
    ),
]
ValueArgument = Annotated[
    Any,
    WithJsonSchema(
        {
            "type": "string",
            "description": (
                "The secret itself, for set and rotate (omit it for delete): at most"
                f" {MAX_VALUE_BYTES} bytes of UTF-8, no NUL character."
            ),
        }
    ),
]


class SecretInfo(BaseModel):
    """One secret as listed: metadata, and its value only when revealed."""

    name: str
    scope: Scope
    owner: str = Field(description="Your subject for scope user; 'project' for scope project.")
    version: int = Field(description="1 when set, one more at every rotate.")
    created_at: datetime
    updated_at: datetime
    updated_by: str = Field(description="The subject that set or last rotated it.")
    value: str | None = Field(description="The value; null unless revealed.")


class SecretListing(BaseModel):
    """The structured content of ``get_secrets``."""

    scope: Scope
    revealed: bool = Field(description="Whether the values are included.")
    secrets: list[SecretInfo]
    missing: list[str] = Field(description="Names asked for that are not stored in this scope.")


class SecretChange(BaseModel):
    """The structured content of ``manage_secrets``: what changed, never the value."""

    action: Action
    name: str
    scope: Scope
    owner: str = Field(description="Your subject for scope user; 'project' for scope project.")
    version: int | None = Field(description="The version now; null once deleted.")
    created_at: datetime | None = Field(description="Null once deleted.")
    updated_at: datetime | None = Field(description="Null once deleted.")


def add_secrets_tools(server: AtriumServer[Store], settings: Settings) -> None:
    """Register ``manage_secrets`` and ``get_secrets`` on ``server``."""

    @server.tool(
        title="Manage secrets",
        description=(
            "Store, rotate or delete a secret, encrypted at rest. set: a new secret (refused if"
            " the name exists); rotate: a new value for an existing one (version + 1); delete:"
            " remove it. Yours by default; scope project (admins) holds the secrets hosted"
            " servers read as {$secret: NAME}. The value is never shown back."
        ),
        # Destructive: rotate replaces a value and delete removes one, neither undoable. Not
        # idempotent: a second set is refused, a second rotate makes another version.
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=False,
            open_world_hint=False,
        ),
    )
    async def manage_secrets(
        action: Annotated[Action, Field(description="set, rotate or delete.")],
        name: SecretName,
        ctx: Context[Store, Any],
        value: ValueArgument = None,
        scope: ScopeArgument = "user",
    ) -> SecretChange:
        caller = _signed_in(ctx)
        _checked_name(name, "name")
        owner = _owner(caller, scope, "change")
        store = ctx.request_context.lifespan_context
        if action == "delete":
            return await _delete(store, caller, owner, name, scope, value)
        record = await _write(store, settings, caller, (owner, name, scope), action, value)
        return _change(action, record, scope)

    @server.tool(
        title="Get secrets",
        description=(
            "List your secrets (or, for admins, the project's with scope project): names,"
            " versions, when and by whom set. reveal: true adds the values, for admins only,"
            " and is logged. names limits the answer to those names."
        ),
        annotations=ToolAnnotations(
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
    async def get_secrets(
        ctx: Context[Store, Any],
        reveal: Annotated[
            bool, Field(description="Include the values (admin only; every reveal is logged).")
        ] = False,
        names: Annotated[
            list[str] | None,
            Field(description="Only these secrets; omit for all.", max_length=MAX_NAMES),
        ] = None,
        scope: ScopeArgument = "user",
    ) -> SecretListing:
        caller = _signed_in(ctx)
        if reveal and not caller.admin:
            raise ToolError(
                "reveal: showing values takes the admin scope; call without reveal to list"
                " names and metadata"
            )
        wanted = None if names is None else [_checked_name(n, "names") for n in names]
        owner = _owner(caller, scope, "read")
        store = ctx.request_context.lifespan_context
        try:
            records = await store.secrets.list(owner, wanted)
            values = await _revealed(store, settings, caller, owner, records) if reveal else {}
        except AtriumError as exc:
            raise ToolError(f"the secrets could not be read: {exc}") from None
        found = {record.name for record in records}
        return SecretListing(
            scope=scope,
            revealed=reveal,
            secrets=[_info(record, scope, values.get(record.name)) for record in records],
            missing=sorted(set(wanted or ()) - found),
        )


def _signed_in(ctx: Context[Store, Any]) -> CallerIdentity:
    try:
        caller: CallerIdentity | None = current_caller(ctx)
    except LookupError:  # a server run --unauthenticated: nobody vouched for anyone
        caller = None
    if caller is None or caller.subject is None:
        raise ToolError(
            "secrets belong to a signed-in user: call the marketplace with an access token"
        )
    return caller


def _checked_name(name: str, argument: str) -> str:
    try:
        return check_name(name)
    except ValueError as exc:
        raise ToolError(f"{argument}: {exc}") from None


def _owner(caller: CallerIdentity, scope: Scope, doing: str) -> str:
    if scope == "user":
        assert caller.subject is not None
        return caller.subject
    if not caller.admin:
        raise ToolError(
            f"scope: only an admin may {doing} the project's secrets; use scope 'user' for your own"
        )
    return PROJECT_OWNER


def _value(value: Any, action: str) -> str:
    """The value to store; a ``ToolError`` that never quotes it otherwise."""
    if value is None:
        raise ToolError(f"value: '{action}' needs the secret's value")
    if not isinstance(value, str):
        raise ToolError(f"value: must be a string, not {_json_type(value)}")
    try:
        check_value(value)
    except ValueError as exc:
        raise ToolError(f"value: {exc}") from None
    return value


_KINDS = ((bool, "a boolean"), (int | float, "a number"), (list, "an array"), (dict, "an object"))


def _json_type(value: Any) -> str:
    return next((said for kind, said in _KINDS if isinstance(value, kind)), "something else")


async def _write(
    store: Store,
    settings: Settings,
    caller: CallerIdentity,
    where: tuple[str, str, Scope],
    action: Action,
    value: Any,
) -> SecretRecord:
    """``set`` or ``rotate``: the secret as stored now."""
    owner, name, scope = where
    text = _value(value, action)
    assert caller.subject is not None
    try:
        box = SecretBox.load(settings)
        if action == "set":
            record = await store.secrets.create(owner, name, text, box=box, by=caller.subject)
        else:
            found = await store.secrets.replace(owner, name, text, box=box, by=caller.subject)
            if found is None:
                raise ToolError(
                    f"name: there is no secret {name} in scope '{scope}' to rotate; store it"
                    " with action 'set'"
                )
            record = found
    except AlreadyExists:
        raise ToolError(
            f"name: secret {name} exists already in scope '{scope}'; give it a new value with"
            " action 'rotate'"
        ) from None
    except AtriumError as exc:
        raise ToolError(f"the secret was not stored: {exc}") from None
    logger.info(
        "secret %s (scope %s) %s by %s: version %d (request %s)",
        name,
        scope,
        "set" if action == "set" else "rotated",
        caller.subject,
        record.version,
        caller.request_id,
    )
    return record


async def _delete(
    store: Store, caller: CallerIdentity, owner: str, name: str, scope: Scope, value: Any
) -> SecretChange:
    if value is not None:
        raise ToolError("value: 'delete' takes no value; omit it")
    try:
        deleted = await store.secrets.delete(owner, name)
    except AtriumError as exc:
        raise ToolError(f"the secret was not deleted: {exc}") from None
    if not deleted:
        raise ToolError(f"name: there is no secret {name} in scope '{scope}'")
    logger.info(
        "secret %s (scope %s) deleted by %s (request %s)",
        name,
        scope,
        caller.subject,
        caller.request_id,
    )
    return SecretChange(
        action="delete",
        name=name,
        scope=scope,
        owner=_shown_owner(owner),
        version=None,
        created_at=None,
        updated_at=None,
    )


async def _revealed(
    store: Store,
    settings: Settings,
    caller: CallerIdentity,
    owner: str,
    records: list[SecretRecord],
) -> dict[str, str]:
    """The values of ``records``, and the log line that says who saw which."""
    names = [record.name for record in records]
    values = await store.secrets.reveal(owner, names, box=SecretBox.load(settings))
    logger.warning(
        "secret values revealed to %s (client %s, request %s): %s of %s",
        caller.subject,
        caller.client_id or "-",
        caller.request_id,
        ", ".join(names) or "(none)",
        _shown_owner(owner),
    )
    return values


def _change(action: Action, record: SecretRecord, scope: Scope) -> SecretChange:
    return SecretChange(
        action=action,
        name=record.name,
        scope=scope,
        owner=_shown_owner(record.owner),
        version=record.version,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _info(record: SecretRecord, scope: Scope, value: str | None) -> SecretInfo:
    return SecretInfo(
        name=record.name,
        scope=scope,
        owner=_shown_owner(record.owner),
        version=record.version,
        created_at=record.created_at,
        updated_at=record.updated_at,
        updated_by=record.updated_by,
        value=value,
    )


def _shown_owner(owner: str) -> str:
    return "project" if owner == PROJECT_OWNER else owner
