from __future__ import annotations

from datetime import UTC, datetime

from atrium.store import Store
from atrium.store.audit import AuditEvent


async def test_the_subject_and_client_of_a_call_round_trip(store: Store) -> None:
    at = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    await store.audit.add_many(
        [
            AuditEvent(
                request_id="r1",
                server="tools",
                method="tools/call",
                at=at,
                caller="alice",
                subject="5f0c2a",
                client_id="https://app.example/client.json",
            ),
            AuditEvent(request_id="r1", server="tools", method="tools/list", at=at),
        ]
    )

    recent = await store.audit.list_recent()
    of_request = await store.audit.for_request("r1")

    assert [(r.subject, r.client_id) for r in of_request] == [
        ("5f0c2a", "https://app.example/client.json"),
        (None, None),
    ]
    assert [(r.subject, r.client_id) for r in recent] == [
        (None, None),
        ("5f0c2a", "https://app.example/client.json"),
    ]
