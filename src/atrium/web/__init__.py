"""The admin web console, served by the gateway under ``/admin`` (``console_routes``):
server-rendered pages (Jinja2), htmx served from here, live parts by server-sent events, and
sign-in through Atrium's own authorization server.

``static/htmx.min.js`` is htmx 2.0.11 as npm ships it (``htmx.org@2.0.11``, ``dist/htmx.min.js``,
sha256 d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717), committed unchanged.
"""

from atrium.web.app import console_routes

__all__ = ["console_routes"]
