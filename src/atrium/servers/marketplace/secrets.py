"""The ``marketplace`` server's secrets tools (issue 14): secrets encrypted at rest, per owner.

* ``manage_secrets(action, name, value, scope)``: ``set`` stores a new secret (refused when
  the name is taken: nothing is overwritten by mistake), ``rotate`` gives an existing one a new
  value (version + 1; when and by whom it was created stay), ``delete`` removes it. The result
  holds names and metadata, never the value.
* ``get_secrets(reveal, names, scope)``: names and metadata (version, created, updated, owner).
  Values only with ``reveal: true``, only for a caller holding ``admin`` and never for Atrium's
  agents (client ``AGENT_CLIENT_ID``): a reveal is a person's explicit act. Every reveal is
  logged here (who, which names, the gateway's request id; never a value), beside the
  gateway's audit record of the call.

Ownership: a secret belongs to the subject that set it (scope ``user``, the default), and no
one else sees it, admins included: no argument names another owner. Scope ``project`` holds
the project's own secrets, those ``{$secret: NAME}`` in a hosted server's ``env:`` reads
(``atrium.registry.secrets``); listing, changing and revealing them takes ``admin``. There is
no sharing between users: a secret others' servers need belongs in the project scope. An
anonymous caller is refused: a secret is always someone's.

No error quotes a value. The SDK puts pydantic's error in the result, and pydantic quotes
what it refused: the whole arguments for a missing one. So pydantic refuses nothing of
``manage_secrets``: ``action`` and ``name`` are optional to it, ``value`` is taken as sent, and
all three are checked here, quoted by no message. The audit hides the value
(``atrium.redaction``). A failure of the store or key ring is logged; its detail (a database
URL, a file's path) is the operator's, and the caller gets the request id to ask with.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field, PlainValidator, WithJsonSchema

from atrium.auth.assertion import CallerIdentity
from atrium.auth.operator import AGENT_CLIENT_ID
from atrium.errors import AtriumError
from atrium.secretbox import MAX_VALUE_BYTES, NAME_RULE, SECRET_NAME, SecretBox, check_value
from atrium.servers.toolkit import AtriumServer
from atrium.servers.trust import signed_in_caller
from atrium.settings import Settings
from atrium.store import PROJECT_OWNER, AlreadyExists, SecretRecord, Store

logger = logging.getLogger(__name__)

Action = Literal["set", "rotate", "delete"]
ACTIONS: tuple[Action, ...] = ("set", "rotate", "delete")
Scope = Literal["user", "project"]
MAX_NAMES = 100

# Any JSON to pydantic, which therefore refuses none (see the module docstring); the schema
# says what a caller must send.
ActionArgument = Annotated[
    Any,
    WithJsonSchema(
        {"type": "string", "enum": list(ACTIONS), "description": "Required: set, rotate or delete."}
    ),
]
NameArgument = Annotated[
    Any, WithJsonSchema({"type": "string", "description": f"Required: the name, {NAME_RULE}."})
]
ScopeArgument = Annotated[
    Scope,
    Field(
        description=(
            "user (default): your own secrets. project: the project's, which hosted servers"
            " read as {$secret: NAME} in their env; admins only."
        )
    ),
]
# Typed ``str`` so that the SDK does not parse a value holding JSON (a service account's key
# file) into an object; taken as sent (``PlainValidator``), whatever it is, and checked here.
_VALUE = (
    "The secret itself, for set and rotate (omit it for delete): at most"
    f" {MAX_VALUE_BYTES} bytes of UTF-8, no NUL character."
)
ValueArgument = Annotated[
    str,
    PlainValidator(lambda sent: sent),
    WithJsonSchema({"type": "string", "description": _VALUE}),
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
    version: int | None = Field(None, description="The version now; null once deleted.")
    created_at: datetime | None = Field(None, description="Null once deleted.")
    updated_at: datetime | None = Field(None, description="Null once deleted.")


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
        ctx: Context[Store, Any],
        action: ActionArgument = None,
        name: NameArgument = None,
        value: ValueArgument = "",
        scope: ScopeArgument = "user",
    ) -> SecretChange:
        caller = _signed_in(ctx)
        doing = _action(action)
        secret = _checked_name(name, "name")
        owner = _owner(caller, scope, "change")
        store = ctx.request_context.lifespan_context
        if doing == "delete":
            return await _delete(store, caller, owner, secret, scope, value)
        record = await _write(store, settings, caller, (owner, secret, scope), doing, value)
        return _change(doing, record, scope)

    @server.tool(
        title="Get secrets",
        description=(
            "List your secrets (or, for admins, the project's with scope project): names,"
            " versions, when and by whom set. reveal: true adds the values, for admins only"
            " (a person's act: never an agent's), and is logged. names limits the answer to"
            " those names."
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
        if reveal:
            _may_reveal(caller)
        wanted = None if names is None else [_checked_name(n, "names") for n in names]
        owner = _owner(caller, scope, "read")
        store = ctx.request_context.lifespan_context
        try:
            records = await store.secrets.list(owner, wanted)
            values = await _revealed(store, settings, caller, owner, records) if reveal else {}
        except AtriumError as exc:
            raise _failed("the secrets were not read", exc, caller) from None
        found = {record.name for record in records}
        return SecretListing(
            scope=scope,
            revealed=reveal,
            secrets=[_info(record, scope, values.get(record.name)) for record in records],
            missing=sorted(set(wanted or ()) - found),
        )


def _signed_in(ctx: Context[Store, Any]) -> CallerIdentity:
    return signed_in_caller(
        ctx, "secrets belong to a signed-in user: call the marketplace with an access token"
    )


def _may_reveal(caller: CallerIdentity) -> None:
    if caller.client_id == AGENT_CLIENT_ID:
        # An agent holds its user's scopes, admin included; the values are still for the
        # person to ask for, not for a model's context (and a stored conversation).
        raise ToolError(
            "reveal: an agent may not reveal secret values: a reveal is a person's explicit"
            " act; call without reveal to list names and metadata"
        )
    if not caller.admin:
        raise ToolError(
            "reveal: showing values takes the admin scope; call without reveal to list"
            " names and metadata"
        )


def _action(action: Any) -> Action:
    found = next((known for known in ACTIONS if action == known), None)
    if found is None:
        said = "required" if action is None else "not an action"
        raise ToolError(f"action: {said}; use one of {', '.join(ACTIONS)}")
    return found


def _checked_name(name: Any, argument: str) -> str:
    """``name`` if it is a secret name; a ``ToolError`` that does not quote it otherwise."""
    if name is None:
        raise ToolError(f"{argument}: the secret's name is required ({NAME_RULE})")
    if not isinstance(name, str) or not SECRET_NAME.match(name):
        raise ToolError(f"{argument}: not a secret name; use {NAME_RULE}")
    return name


def _owner(caller: CallerIdentity, scope: Scope, doing: str) -> str:
    if scope == "user":
        assert caller.subject is not None
        return caller.subject
    if not caller.admin:
        raise ToolError(
            f"scope: only an admin may {doing} the project's secrets; use scope 'user' for your own"
        )
    return PROJECT_OWNER


def _value(value: object, action: str) -> str:
    """The value to store; a ``ToolError`` that never quotes it otherwise."""
    if value is None or value == "":
        raise ToolError(f"value: '{action}' needs the secret's value")
    if not isinstance(value, str):
        raise ToolError(
            f"value: must be a string, not a JSON {_JSON_TYPES.get(type(value), 'value')}"
        )
    try:
        check_value(value)
    except ValueError as exc:
        raise ToolError(f"value: {exc}") from None
    return value


_JSON_TYPES = {bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}


async def _write(
    store: Store,
    settings: Settings,
    caller: CallerIdentity,
    where: tuple[str, str, Scope],
    action: Action,
    value: object,
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
        raise _failed("the secret was not stored", exc, caller) from None
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
    store: Store, caller: CallerIdentity, owner: str, name: str, scope: Scope, value: object
) -> SecretChange:
    if value is not None and value != "":
        raise ToolError("value: 'delete' takes no value; omit it")
    try:
        deleted = await store.secrets.delete(owner, name)
    except AtriumError as exc:
        raise _failed("the secret was not deleted", exc, caller) from None
    if not deleted:
        raise ToolError(f"name: there is no secret {name} in scope '{scope}'")
    where = (name, scope, caller.subject)
    logger.info("secret %s (scope %s) deleted by %s (request %s)", *where, caller.request_id)
    return SecretChange(action="delete", name=name, scope=scope, owner=_shown_owner(owner))


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


def _failed(what: str, exc: AtriumError, caller: CallerIdentity) -> ToolError:
    """The caller's error for a failure of the store or the key ring. Its detail (a database
    URL, a key file's path) is the operator's: logged, found by the request id."""
    logger.error("%s (request %s, caller %s): %s", what, caller.request_id, caller.subject, exc)
    return ToolError(
        f"{what}: the marketplace could not use its store or key ring; an operator finds why"
        f" in its log (request {caller.request_id})"
    )


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
