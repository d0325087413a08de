"""The secrets a server's log tail must not show in the console: the values of the references
(``$env``, ``$file``, ``$secret``) in its ``env:`` and, for a remote server, its ``headers:``.

A reference exists so that the secret is written nowhere Atrium shows; a server that prints
its configuration, or a library that logs a request with its credentials, would otherwise
show it to whoever opens the server's page. Each value is replaced by ``***`` wherever it
appears in a line (values shorter than ``redaction.MIN_SCRUBBED`` would mask every ``1``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from atrium.errors import AtriumError
from atrium.redaction import MIN_SCRUBBED, SHOWN
from atrium.registry.references import SecretRef
from atrium.registry.schema import RemoteServer, ServerConfig
from atrium.registry.secrets import resolve_secret
from atrium.secretbox import SecretBox
from atrium.settings import Settings
from atrium.store import PROJECT_OWNER, Store

logger = logging.getLogger(__name__)


async def secret_values(config: ServerConfig, settings: Settings, store: Store) -> list[str]:
    """The values of the server's referenced secrets that can be read here, longest first."""
    references = [*config.env.values()]
    if isinstance(config, RemoteServer):
        references.extend(config.headers.values())
    found: set[str] = set()
    stored = {ref.secret for ref in references if isinstance(ref, SecretRef)}
    for reference in references:
        if isinstance(reference, (str, SecretRef)):
            continue  # a literal is no secret by the schema's rule; stored ones come below
        try:
            found.add(resolve_secret(reference, settings))
        except ValueError:
            continue  # unset here: then the server did not get it from this host either
    if stored:
        try:
            box = SecretBox.load(settings)
            found.update((await store.secrets.reveal(PROJECT_OWNER, stored, box=box)).values())
        except AtriumError as error:
            logger.warning("console: cannot read stored secrets to hide them: %s", error)
    return sorted((v for v in found if len(v) >= MIN_SCRUBBED), key=len, reverse=True)


def hidden(lines: Iterable[str], secrets: list[str]) -> list[str]:
    """``lines`` with every one of ``secrets`` shown as ``***``."""
    shown = []
    for line in lines:
        for secret in secrets:
            line = line.replace(secret, SHOWN)
        shown.append(line)
    return shown
