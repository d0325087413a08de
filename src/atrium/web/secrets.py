"""``/admin/secrets``: the signed-in user's secrets (scope ``user``) and, for admins, the
project's (scope ``project``): names and metadata, set a new one, rotate one; a value is shown
only when an admin reveals one secret, on a page of its own that is not kept (``no-store``).

Everything goes through the marketplace's tools (``web.marketplace``): ``get_secrets`` lists and
reveals (admins only, never for an agent, logged by the marketplace and audited by the
gateway as any reveal is), ``manage_secrets`` sets and rotates. A value posted here is never
written back into a page, not even into the form of a refused attempt.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from atrium.gateway.parts import GatewayParts
from atrium.web import marketplace
from atrium.web.guard import Refused
from atrium.web.marketplace import ToolRefusal
from atrium.web.render import page
from atrium.web.session import Viewer

SCOPES = ("user", "project")


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _scope(value: str | None) -> str:
    scope = value or "user"
    if scope not in SCOPES:
        raise Refused(400, "bad_filter", f"scope: must be one of {', '.join(SCOPES)}")
    return scope


class SecretPages:
    def __init__(self, parts: GatewayParts) -> None:
        self.parts = parts

    async def _call(self, viewer: Viewer, tool: str, **arguments: Any) -> dict[str, Any]:
        return await marketplace.call(self.parts, viewer, tool, arguments)

    async def list(self, request: Request, viewer: Viewer) -> Response:
        scope = _scope(request.query_params.get("scope"))
        return await self._listing(viewer, scope, notice=request.query_params.get("notice"))

    async def _listing(
        self,
        viewer: Viewer,
        scope: str,
        *,
        status: int = 200,
        notice: str | None = None,
        problem: str | None = None,
        name: str = "",
    ) -> Response:
        try:
            found = await self._call(viewer, "get_secrets", scope=scope)
        except ToolRefusal as refusal:
            found, problem, status = {"secrets": []}, refusal.message, 403
        names = {user.id: user.username for user in await self.parts.store.users.list()}
        return page(
            "secrets.html",
            status,
            viewer=viewer,
            nav="secrets",
            scope=scope,
            secrets=found.get("secrets", []),
            names=names,
            notice=notice,
            problem=problem,
            name=name,
        )

    async def change(self, request: Request, viewer: Viewer) -> Response:
        """``set`` (a new name, from the form) or ``rotate`` (``/secrets/{name}/rotate``)."""
        marketplace.writer(viewer)
        form = await request.form()
        scope = _scope(_text(form, "scope"))
        named = request.path_params.get("name")
        action = "rotate" if named is not None else "set"
        name = named if named is not None else _text(form, "name")
        arguments = {"action": action, "name": name, "value": _text(form, "value"), "scope": scope}
        try:
            await self._call(viewer, "manage_secrets", **arguments)
        except ToolRefusal as refusal:
            shown = name if action == "set" else ""
            return await self._listing(
                viewer, scope, status=422, problem=refusal.message, name=shown
            )
        query = urlencode(
            {"scope": scope, "notice": f"{name} {'set' if action == 'set' else 'rotated'}"}
        )
        return RedirectResponse(f"/admin/secrets?{query}", status_code=303)

    async def reveal(self, request: Request, viewer: Viewer) -> Response:
        """Admins only (the gate checks, and the marketplace again): one secret's value."""
        form = await request.form()
        scope = _scope(_text(form, "scope"))
        name = request.path_params["name"]
        try:
            found = await self._call(viewer, "get_secrets", reveal=True, names=[name], scope=scope)
        except ToolRefusal as refusal:
            return await self._listing(viewer, scope, status=403, problem=refusal.message)
        shown = found.get("secrets") or []
        if not shown:
            raise Refused(404, "not_found", f"Secret {name} is not stored in scope {scope}.")
        return page("secret.html", viewer=viewer, nav="secrets", secret=shown[0], scope=scope)
