"""The console's routes, mounted by the gateway (``gateway.app._routes``).

Every response under ``/admin`` passes ``SecurityHeaders``; every page but sign-in passes the
gate (``web.guard``): a session, a CSRF token on each POST, the role it asks for.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from atrium.gateway.parts import GatewayParts
from atrium.web.agents import AgentPages
from atrium.web.audit import AuditPages
from atrium.web.dashboard import Dashboard
from atrium.web.guard import Gate, not_found, refusal
from atrium.web.people import PeoplePages
from atrium.web.secrets import SecretPages
from atrium.web.security import SecurityHeaders
from atrium.web.servers import ServerPages
from atrium.web.session import Sessions, Viewer
from atrium.web.signin import SignIn
from atrium.web.skills import SkillPages
from atrium.web.usage import UsagePage

STATIC = Path(str(files("atrium.web").joinpath("static")))


async def _not_found(request: Request) -> Response:
    return refusal(not_found(f"Page '{request.url.path}'"))


def _marketplace_routes(
    gate: Gate, agents: AgentPages, skills: SkillPages, secrets: SecretPages
) -> list[BaseRoute]:
    post = ["POST"]
    return [
        Route("/agents", gate(agents.list)),
        Route("/agents/{name}", gate(agents.chat)),
        Route("/agents/{name}/messages", gate(agents.send), methods=post),
        Route("/conversations/{conversation_id}", gate(agents.conversation)),
        Route("/skills", gate(skills.list)),
        Route("/skills", gate(skills.create), methods=post),
        Route("/skills/{name}", gate(skills.skill)),
        Route("/skills/{name}", gate(skills.update), methods=post),
        Route("/secrets", gate(secrets.list)),
        Route("/secrets", gate(secrets.change), methods=post),
        Route("/secrets/{name}/rotate", gate(secrets.change), methods=post),
        Route("/secrets/{name}/reveal", gate(secrets.reveal, admin=True), methods=post),
    ]


def _admin_routes(gate: Gate, people: PeoplePages) -> list[BaseRoute]:
    post = ["POST"]
    return [
        Route("/users", gate(people.users, admin=True)),
        Route("/users", gate(people.create, admin=True), methods=post),
        Route("/users/{username}/role", gate(people.set_role, admin=True), methods=post),
        Route("/users/{username}/{action}", gate(people.set_disabled, admin=True), methods=post),
        Route("/clients", gate(people.clients, admin=True)),
        Route("/clients/{client_id:path}/revoke", gate(people.revoke, admin=True), methods=post),
        Route("/clients/{client_id:path}/rotate", gate(people.rotate, admin=True), methods=post),
    ]


def console_routes(parts: GatewayParts) -> list[BaseRoute]:
    sessions = Sessions(parts.auth)
    gate = Gate(sessions)
    signin = SignIn(parts.auth, sessions)
    dashboard = Dashboard(parts, sessions)
    servers = ServerPages(parts, sessions)
    audit = AuditPages(parts)
    usage = UsagePage(parts)
    agents, skills, secrets = AgentPages(parts), SkillPages(parts), SecretPages(parts)
    people = PeoplePages(parts)

    async def signout(request: Request, viewer: Viewer) -> Response:
        return await signin.signout(request)

    server = "/servers/{name}"
    inner: list[BaseRoute] = [
        Route("/", gate(dashboard.page)),
        Route("/events", gate(dashboard.events)),
        Route("/signin", signin.start),
        Route("/callback", signin.callback),
        Route("/signout", gate(signout), methods=["POST"]),
        Route(server, gate(servers.page)),
        Route(f"{server}/tools", gate(servers.tools)),
        Route(f"{server}/tools/{{tool:path}}", gate(servers.try_tool), methods=["POST"]),
        Route(f"{server}/log", gate(servers.log_events, admin=True)),
        Route(f"{server}/{{action}}", gate(servers.control, admin=True), methods=["POST"]),
        Route("/audit", gate(audit.list)),
        Route("/audit/{request_id}", gate(audit.record)),
        Route("/usage", gate(usage.page)),
        *_marketplace_routes(gate, agents, skills, secrets),
        *_admin_routes(gate, people),
        Mount("/static", StaticFiles(directory=STATIC)),
        Route("/{rest:path}", _not_found, methods=["GET", "POST"]),
    ]
    secured = [Middleware(SecurityHeaders)]
    return [
        Route("/admin", gate(dashboard.page), middleware=secured),
        Mount("/admin", routes=inner, middleware=secured),
    ]
