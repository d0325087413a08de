"""Values of server YAML kept elsewhere: ``{$env: NAME}``, ``{$file: path}``, ``{$secret: NAME}``.

A reference stays unresolved in the YAML and in the store, so no secret is written there;
``atrium.registry.secrets`` resolves it when the server starts. ``SecretValue`` (a literal,
``$env`` or ``$file``) is what ``headers:`` of a remote server take; ``EnvValue`` adds
``$secret``, a secret stored with the marketplace's ``manage_secrets`` (scope ``project``), for
the ``env:`` of a hosted server, where the supervisor reads the store before it starts the
process. A remote server's headers are read by the gateway on every call, from the YAML alone.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag

from atrium.secretbox import check_name

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Reference(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EnvRef(_Reference):
    """``{$env: NAME}``: the value of an environment variable, read when the server starts."""

    env: str = Field(alias="$env", pattern=ENV_NAME.pattern)


class FileRef(_Reference):
    """``{$file: path}``: the contents of a file (relative to the project), read at start."""

    file: str = Field(alias="$file", min_length=1)


class SecretRef(_Reference):
    """``{$secret: NAME}``: the project's stored secret ``NAME``, read from the store at start."""

    # check_name says the rule, where a pattern would only be quoted back.
    secret: Annotated[str, AfterValidator(check_name)] = Field(alias="$secret")


_KINDS: dict[str, type[_Reference]] = {"$env": EnvRef, "$file": FileRef, "$secret": SecretRef}


def _value_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "literal"
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _KINDS:
        return str(next(iter(value)))
    return next((kind for kind, model in _KINDS.items() if isinstance(value, model)), None)


_SHELL_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


def no_shell_reference(value: str, *, in_command: bool = False) -> str:
    # ``${VAR}`` is the .mcp.json way; here it would reach the server as those characters.
    found = _SHELL_REFERENCE.search(value)
    if found is None:
        return value
    reference, name = found[0], found[1]
    if in_command:
        raise ValueError(
            f"{reference} is not expanded in 'command': pass the value in 'env' as"
            f" {{{name}: {{$env: {name}}}}} and let the program read it"
        )
    raise ValueError(
        f"{reference} is not expanded in server YAML: write {{$env: {name}}} to pass the"
        " variable's value"
    )


_Literal = Annotated[str, AfterValidator(no_shell_reference), Tag("literal")]

# Literal values are allowed for non-secrets; secrets belong in $env / $file references.
SecretValue = Annotated[
    _Literal | Annotated[EnvRef, Tag("$env")] | Annotated[FileRef, Tag("$file")],
    Discriminator(
        _value_kind,
        custom_error_type="value_kind",
        custom_error_message="must be a string, {$env: VARIABLE} or {$file: path}",
    ),
]

# ... and in a hosted server's env:, stored secrets too.
EnvValue = Annotated[
    _Literal
    | Annotated[EnvRef, Tag("$env")]
    | Annotated[FileRef, Tag("$file")]
    | Annotated[SecretRef, Tag("$secret")],
    Discriminator(
        _value_kind,
        custom_error_type="value_kind",
        custom_error_message=(
            "must be a string, {$env: VARIABLE}, {$file: path} or {$secret: NAME}"
        ),
    ),
]
