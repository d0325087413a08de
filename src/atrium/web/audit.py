"""``/admin/audit``: the audit trail, filtered by server, tool, caller, outcome and time, a page
at a time by keyset (``before``: the last id shown); ``/admin/audit/{request_id}``: every
record of one request. An admin sees everyone's records, anyone else only their own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import get_args
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from atrium.gateway.parts import GatewayParts
from atrium.store.audit import AuditSearch, Outcome
from atrium.web.guard import Refused, not_found
from atrium.web.render import page
from atrium.web.session import Viewer

PAGE_SIZE = 50
FILTERS = ("server", "tool", "caller", "outcome", "since", "until")
OUTCOMES: tuple[str, ...] = get_args(Outcome)


def _time(name: str, text: str | None) -> datetime | None:
    """A ``datetime-local`` value (``2026-05-01T12:30``, taken as UTC) or a full ISO time."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(400, "bad_filter", f"{name}: {text!r} is not a date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(name: str, text: str | None) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise Refused(400, "bad_filter", f"{name}: {text!r} is not a record id")
    return int(text)


class AuditPages:
    def __init__(self, parts: GatewayParts) -> None:
        self.parts = parts

    async def _names(self) -> dict[str, str]:
        return {user.id: user.username for user in await self.parts.store.users.list()}

    async def list(self, request: Request, viewer: Viewer) -> Response:
        params = request.query_params
        chosen = {name: params.get(name) or "" for name in FILTERS}
        if chosen["outcome"] and chosen["outcome"] not in OUTCOMES:
            raise Refused(400, "bad_filter", f"outcome: must be one of {', '.join(OUTCOMES)}")
        names = await self._names()
        search = AuditSearch(
            server=chosen["server"] or None,
            tool=chosen["tool"] or None,
            subject=viewer.audit_subject or self._subject(chosen["caller"], names),
            outcome=chosen["outcome"] or None,
            since=_time("since", chosen["since"]),
            until=_time("until", chosen["until"]),
            before=_number("before", params.get("before")),
        )
        records = await self.parts.store.audit.search(PAGE_SIZE + 1, search)
        more = len(records) > PAGE_SIZE
        records = records[:PAGE_SIZE]
        kept = {name: value for name, value in chosen.items() if value}
        following = urlencode({**kept, "before": records[-1].id}) if more and records else None
        return page(
            "audit.html",
            viewer=viewer,
            nav="audit",
            records=records,
            names=names,
            chosen=chosen,
            outcomes=OUTCOMES,
            servers=sorted(self.parts.directory.routes),
            following=following,
        )

    @staticmethod
    def _subject(caller: str, names: dict[str, str]) -> str | None:
        """A caller filter names a user (or gives a subject as the audit has it)."""
        if not caller:
            return None
        by_name = {name: subject for subject, name in names.items()}
        return by_name.get(caller, caller)

    async def record(self, request: Request, viewer: Viewer) -> Response:
        request_id = request.path_params["request_id"]
        records = await self.parts.store.audit.for_request(request_id, subject=viewer.audit_subject)
        if not records and await self.parts.audit.settled():
            # A call answered a moment ago may still be on its way to the store.
            records = await self.parts.store.audit.for_request(
                request_id, subject=viewer.audit_subject
            )
        if not records:
            raise not_found(f"Request '{request_id}'")
        return page(
            "record.html",
            viewer=viewer,
            nav="audit",
            request_id=request_id,
            records=records,
            names=await self._names(),
        )
