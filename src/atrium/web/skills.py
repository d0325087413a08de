"""``/admin/skills``: the skills a user may read (their own and shared ones), one skill with its
versions and its analysis (``analyze_skill``: the marketplace's linter), a new skill, and an
edit that names the version it was made from: when another update came first, the page says
so (409, ``conflict``) and keeps the draft, offered again on the version now current.

Everything goes through the marketplace's tools (``web.marketplace``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from atrium.gateway.parts import GatewayParts
from atrium.web import marketplace
from atrium.web.marketplace import ToolRefusal
from atrium.web.render import page
from atrium.web.session import Viewer

PAGE_SIZE = 50
MAX_QUERY = 200


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


class SkillPages:
    def __init__(self, parts: GatewayParts) -> None:
        self.parts = parts

    async def _call(self, viewer: Viewer, tool: str, **arguments: Any) -> dict[str, Any]:
        return await marketplace.call(self.parts, viewer, tool, arguments)

    async def _names(self) -> dict[str, str]:
        return {user.id: user.username for user in await self.parts.store.users.list()}

    async def list(self, request: Request, viewer: Viewer) -> Response:
        params = request.query_params
        query = (params.get("query") or "")[:MAX_QUERY]
        arguments: dict[str, Any] = {"limit": PAGE_SIZE, "mine": params.get("mine") == "on"}
        wanted = {"query": query, "tag": params.get("tag"), "cursor": params.get("cursor")}
        arguments.update({name: value for name, value in wanted.items() if value})
        try:
            found = await self._call(viewer, "list_skills", **arguments)
            problem = None
        except ToolRefusal as refusal:
            found, problem = {"skills": []}, refusal.message
        following = None
        if found.get("next_cursor"):
            kept = {k: v for k, v in params.items() if k != "cursor" and v}
            following = urlencode({**kept, "cursor": found["next_cursor"]})
        return page(
            "skills.html",
            400 if problem else 200,
            viewer=viewer,
            nav="skills",
            skills=found.get("skills", []),
            names=await self._names(),
            query=query,
            mine=arguments["mine"],
            problem=problem,
            following=following,
            draft=None,
        )

    async def create(self, request: Request, viewer: Viewer) -> Response:
        marketplace.writer(viewer)
        form = await request.form()
        content = _text(form, "content")
        arguments = {"content": content, "shared": form.get("shared") == "on"}
        try:
            written = await self._call(viewer, "create_skill", **arguments)
        except ToolRefusal as refusal:
            return page(
                "skills.html",
                422,
                viewer=viewer,
                nav="skills",
                skills=[],
                names={},
                query="",
                mine=False,
                problem=refusal.message,
                following=None,
                draft=content,
            )
        name = written["skill"]["name"]
        return RedirectResponse(f"/admin/skills/{quote(name)}?notice=created", status_code=303)

    async def skill(self, request: Request, viewer: Viewer) -> Response:
        name, params = request.path_params["name"], request.query_params
        owner = params.get("owner") or None
        version = params.get("version")
        return await self._shown(
            viewer,
            name,
            owner,
            int(version) if version and version.isdigit() else None,
            notice=params.get("notice"),
        )

    async def _shown(
        self,
        viewer: Viewer,
        name: str,
        owner: str | None,
        version: int | None,
        *,
        status: int = 200,
        notice: str | None = None,
        problem: str | None = None,
        draft: str | None = None,
    ) -> Response:
        arguments: dict[str, Any] = {"name": name}
        if owner:
            arguments["owner"] = owner
        try:
            skill = await self._call(
                viewer, "get_skill", **arguments, **({"version": version} if version else {})
            )
            analysis = await self._call(viewer, "analyze_skill", **arguments)
        except ToolRefusal as refusal:
            return page(
                "refused.html", 404, viewer=viewer, code="not_found", message=refusal.message
            )
        return page(
            "skill.html",
            status,
            viewer=viewer,
            nav="skills",
            skill=skill,
            analysis=analysis,
            names=await self._names(),
            notice=notice,
            problem=problem,
            conflict=status == 409,
            draft=skill["content"] if draft is None else draft,
            editable=skill["mine"] and viewer.standing != "reader",
        )

    async def update(self, request: Request, viewer: Viewer) -> Response:
        """Store the next version, naming the version the draft was made from."""
        marketplace.writer(viewer)
        name = request.path_params["name"]
        form = await request.form()
        content, version = _text(form, "content"), _text(form, "version")
        arguments: dict[str, Any] = {
            "name": name,
            "version": int(version) if version.isdigit() else 0,
            "content": content,
            "shared": form.get("shared") == "on",
        }
        try:
            await self._call(viewer, "update_skill", **arguments)
        except ToolRefusal as refusal:
            conflict = refusal.argument == "version" and version.isdigit()
            return await self._shown(
                viewer,
                name,
                None,
                None,
                status=409 if conflict else 422,
                problem=refusal.message,
                draft=content,
            )
        return RedirectResponse(f"/admin/skills/{quote(name)}?notice=updated", status_code=303)
