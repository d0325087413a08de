"""The gateway as an ASGI application for any ASGI server, configured from the environment.

    uvicorn --factory atrium.gateway.asgi:app_from_environment --host 0.0.0.0 --port 8080

``ATRIUM_PROJECT`` names the project folder (else the current folder), whose
``services/atrium.yaml`` and ``ATRIUM_*`` variables configure the gateway exactly as for
``atrium gateway``; the store is opened in the application's lifespan. The ASGI server's own
options then decide the address, the workers and the forwarded headers — trust them only from
your proxies, as ``gateway.trusted_proxies`` does for ``atrium gateway``.
"""

from __future__ import annotations

from atrium.errors import AtriumError
from atrium.gateway.app import GatewayApp, create_app
from atrium.settings import load_settings, project_dir_from


def app_from_environment() -> GatewayApp:
    """A gateway for the project ``ATRIUM_PROJECT`` names; a bad configuration ends the ASGI
    server's start with the message that says what is wrong (no traceback)."""
    try:
        settings = load_settings(project_dir_from(None))
    except AtriumError as exc:
        raise SystemExit(f"atrium: {exc}") from None
    return create_app(settings, poll_s=settings.poll_s)
