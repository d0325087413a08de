from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from atrium.settings import Settings
from atrium.store import CodeRecord, RefreshRecord, Store
from atrium.store.grants import REVOCATION_MARGIN

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


def code(code_hash: str, **changes: object) -> CodeRecord:
    values: dict[str, object] = {
        "code_hash": code_hash,
        "client_id": "c1",
        "user_id": "u1",
        "redirect_uri": "http://127.0.0.1:33418/callback",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "scope": "mcp:tools",
        "family_id": "f1",
        "expires_at": T0 + timedelta(minutes=1),
    }
    values.update(changes)
    return CodeRecord(**values)  # type: ignore[arg-type]


def refresh(token_hash: str, **changes: object) -> RefreshRecord:
    values: dict[str, object] = {
        "token_hash": token_hash,
        "family_id": "f1",
        "client_id": "c1",
        "subject": "u1",
        "scope": "mcp:tools",
        "expires_at": T0 + 30 * DAY,
    }
    values.update(changes)
    return RefreshRecord(**values)  # type: ignore[arg-type]


async def test_a_code_is_consumed_once_then_reported_as_reused(
    database_settings: Settings,
) -> None:
    added = code("h1", resource="https://gw.example/mcp", jkt="thumb")
    async with await Store.open(database_settings, clock=Clock()) as store:
        await store.grants.add_code(added)

        first = await store.grants.consume_code("h1")
        second = await store.grants.consume_code("h1")

    used = replace(added, created_at=T0, used_at=T0)
    assert first == (used, False)
    assert second == (used, True)


async def test_get_code_reads_a_code_without_using_it(store: Store) -> None:
    await store.grants.add_code(code("h1", created_at=T0))

    found = await store.grants.get_code("h1")
    unknown = await store.grants.get_code("h2")

    _, reused = await store.grants.consume_code("h1")
    assert (found, unknown) == (code("h1", created_at=T0), None)
    assert reused is False


async def test_an_expired_code_is_still_returned_for_the_caller_to_refuse(
    database_settings: Settings,
) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        await store.grants.add_code(code("h1"))
        clock.now += timedelta(hours=1)

        found, reused = await store.grants.consume_code("h1")

    assert found is not None
    assert (found.expires_at < clock.now, reused) == (True, False)


async def test_an_unknown_code_is_neither_found_nor_reused(store: Store) -> None:
    await store.grants.add_code(code("h1"))

    assert await store.grants.consume_code("h2") == (None, False)


async def test_of_racing_exchanges_of_one_code_exactly_one_is_first(
    database_settings: Settings,
) -> None:
    # Two engines stand for two processes: neither shares the other's connections.
    async with (
        await Store.open(database_settings) as one,
        await Store.open(database_settings) as two,
    ):
        await one.grants.add_code(code("h1"))
        attempts = [s.grants.consume_code("h1") for s in (one, two) for _ in range(3)]

        outcomes = await asyncio.gather(*attempts)

    assert Counter(reused for _, reused in outcomes) == {False: 1, True: 5}


async def test_add_then_get_refresh_returns_the_token(database_settings: Settings) -> None:
    added = refresh("r1", resource="https://gw.example/mcp", jkt="thumb")
    async with await Store.open(database_settings, clock=Clock()) as store:
        await store.grants.add_refresh(added)

        found = await store.grants.get_refresh("r1")
        unknown = await store.grants.get_refresh("r2")

    assert found == replace(added, created_at=T0)
    assert unknown is None


async def test_rotation_retires_the_old_token_and_stores_the_new(
    database_settings: Settings,
) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        await store.grants.add_refresh(refresh("r1"))
        clock.now += timedelta(hours=1)

        outcome = await store.grants.rotate_refresh("r1", refresh("r2"))

        old = await store.grants.get_refresh("r1")
        new = await store.grants.get_refresh("r2")

    assert outcome == "rotated"
    assert old is not None
    assert old.rotated_at == clock.now
    assert new == replace(refresh("r2"), created_at=clock.now)


async def test_a_rotated_token_used_again_is_reused_and_stores_nothing(store: Store) -> None:
    await store.grants.add_refresh(refresh("r1"))
    await store.grants.rotate_refresh("r1", refresh("r2"))

    outcome = await store.grants.rotate_refresh("r1", refresh("r3"))

    assert outcome == "reused"
    assert await store.grants.get_refresh("r3") is None


async def test_a_revoked_or_unknown_token_is_not_rotated(store: Store) -> None:
    await store.grants.add_refresh(refresh("r1"))
    await store.grants.revoke_family("f1", T0 + 30 * DAY)

    revoked = await store.grants.rotate_refresh("r1", refresh("r2"))
    unknown = await store.grants.rotate_refresh("r9", refresh("r3"))

    assert (revoked, unknown) == ("revoked", "unknown")
    assert await store.grants.get_refresh("r2") is None
    assert await store.grants.get_refresh("r3") is None


async def test_of_racing_rotations_of_one_token_exactly_one_wins(
    database_settings: Settings,
) -> None:
    async with (
        await Store.open(database_settings) as one,
        await Store.open(database_settings) as two,
    ):
        await one.grants.add_refresh(refresh("r1"))
        attempts = [
            s.grants.rotate_refresh("r1", refresh(f"new-{i}-{n}"))
            for i, s in enumerate((one, two))
            for n in range(3)
        ]

        outcomes = await asyncio.gather(*attempts)

        stored = [await one.grants.get_refresh(f"new-{i}-{n}") for i in (0, 1) for n in range(3)]

    assert Counter(outcomes) == {"rotated": 1, "reused": 5}
    assert len([r for r in stored if r is not None]) == 1


async def test_revoke_family_revokes_its_tokens_once_and_is_an_active_revocation(
    database_settings: Settings,
) -> None:
    async with await Store.open(database_settings, clock=Clock()) as store:
        await store.grants.add_refresh(refresh("r1"))
        await store.grants.rotate_refresh("r1", refresh("r2"))
        await store.grants.add_refresh(refresh("other", family_id="f2"))

        first = await store.grants.revoke_family("f1", T0 + 30 * DAY)
        again = await store.grants.revoke_family("f1", T0 + 30 * DAY)

        active = await store.grants.active_revocations()
        other = await store.grants.get_refresh("other")

    assert (first, again) == (2, 0)
    assert active == {"f1": "family"}
    assert other is not None
    assert other.revoked_at is None


async def test_a_token_added_to_a_revoked_family_is_stored_revoked(store: Store) -> None:
    await store.grants.revoke_family("f1", T0 + 30 * DAY)

    await store.grants.add_refresh(refresh("late"))

    found = await store.grants.get_refresh("late")
    assert found is not None
    assert found.revoked_at is not None
    assert await store.grants.rotate_refresh("late", refresh("r2")) == "revoked"


async def test_a_revoked_jti_is_active_until_it_expires(database_settings: Settings) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        await store.grants.revoke_jti("jti-1", T0 + timedelta(hours=1))
        await store.grants.revoke_jti("jti-1", T0 + timedelta(hours=1))
        await store.grants.revoke_jti("jti-2", T0 + timedelta(hours=3))

        before = await store.grants.active_revocations()
        clock.now += timedelta(hours=2)
        after = await store.grants.active_revocations()

    assert before == {"jti-1": "jti", "jti-2": "jti"}
    assert after == {"jti-2": "jti"}


async def test_the_revocations_fingerprint_changes_only_with_a_new_revocation(
    database_settings: Settings,
) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        empty = await store.grants.revocations_fingerprint()
        await store.grants.revoke_jti("jti-1", T0 + DAY)
        one = await store.grants.revocations_fingerprint()
        clock.now += timedelta(seconds=1)
        await store.grants.revoke_jti("jti-1", T0 + DAY)
        unchanged = await store.grants.revocations_fingerprint()
        await store.grants.revoke_family("f1", T0 + DAY)
        two = await store.grants.revocations_fingerprint()

    assert empty == (0, None, 0, None)
    assert one == unchanged == (1, T0, 0, None)
    assert two == (2, clock.now, 0, None)


async def test_purge_expired_deletes_only_what_can_no_longer_be_used(
    database_settings: Settings,
) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        await store.grants.add_code(code("expired-unused"))
        await store.grants.add_code(code("used-long-ago"))
        await store.grants.consume_code("used-long-ago")
        clock.now += 2 * DAY
        await store.grants.add_code(code("used-recently"))
        await store.grants.consume_code("used-recently")
        await store.grants.add_code(code("fresh", expires_at=clock.now + timedelta(minutes=1)))
        await store.grants.add_refresh(refresh("expired", expires_at=clock.now - DAY))
        await store.grants.add_refresh(refresh("live"))
        await store.grants.revoke_jti("jti-expired", clock.now - DAY)
        await store.grants.revoke_jti("jti-live", clock.now + DAY)

        purged = await store.grants.purge_expired()

        codes = {h: await store.grants.consume_code(h) for h in ["used-recently", "fresh"]}
        refreshes = [await store.grants.get_refresh(h) for h in ["expired", "live"]]
        gone = [await store.grants.consume_code(h) for h in ["expired-unused", "used-long-ago"]]
        fingerprint = await store.grants.revocations_fingerprint()

    assert purged == 4
    assert [reused for _, reused in codes.values()] == [True, False]
    assert [r is not None for r in refreshes] == [False, True]
    assert gone == [(None, False), (None, False)]
    assert fingerprint[0] == 1


async def test_a_revocation_is_loaded_and_kept_a_margin_past_its_expiry(
    database_settings: Settings,
) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        await store.grants.revoke_jti("jti-1", T0)
        clock.now = T0 + REVOCATION_MARGIN - timedelta(seconds=1)
        within = (await store.grants.active_revocations(), await store.grants.purge_expired())
        clock.now = T0 + REVOCATION_MARGIN + timedelta(seconds=1)
        past = (await store.grants.active_revocations(), await store.grants.purge_expired())

    assert within == ({"jti-1": "jti"}, 0)
    assert past == ({}, 1)


async def test_revoke_subject_ends_its_codes_and_optionally_its_refresh_tokens(
    database_settings: Settings,
) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        await store.grants.add_code(code("pending"))
        await store.grants.add_code(code("spent"))
        await store.grants.consume_code("spent")
        await store.grants.add_code(code("someone-elses", user_id="u2"))
        await store.grants.add_refresh(refresh("r1"))
        await store.grants.add_refresh(refresh("r2", subject="u2", family_id="f2"))

        narrowed = await store.grants.revoke_subject("u1", DAY, revoke_refresh=False)
        kept = await store.grants.get_refresh("r1")
        clock.now += timedelta(seconds=5)
        disabled = await store.grants.revoke_subject("u1", DAY, revoke_refresh=True)

        codes = [(await store.grants.get_code(h)) is not None for h in ("pending", "spent")]
        other_code = await store.grants.get_code("someone-elses")
        refreshes = [await store.grants.get_refresh(h) for h in ("r1", "r2")]
        active = await store.grants.active_subject_revocations()

    assert (narrowed, disabled) == (T0, T0 + timedelta(seconds=5))
    assert codes == [False, True]  # an unused code mints nothing more; a used one tells of reuse
    assert other_code is not None
    assert kept is not None
    assert kept.revoked_at is None
    assert [r.revoked_at if r else None for r in refreshes] == [disabled, None]
    assert active == {"u1": disabled}


async def test_a_subject_revocation_never_moves_back_and_moves_the_fingerprint(
    database_settings: Settings,
) -> None:
    clock = Clock()
    async with await Store.open(database_settings, clock=clock) as store:
        before = await store.grants.revocations_fingerprint()
        await store.grants.revoke_subject("u1", 30 * DAY, revoke_refresh=False)
        first = await store.grants.revocations_fingerprint()
        clock.now += timedelta(minutes=1)
        await store.grants.revoke_subject("u1", timedelta(seconds=1), revoke_refresh=False)
        renewed = await store.grants.revocations_fingerprint()
        clock.now = T0 + 30 * DAY + REVOCATION_MARGIN - timedelta(seconds=1)
        still = await store.grants.active_subject_revocations()
        clock.now += timedelta(seconds=2)
        purged = await store.grants.purge_expired()
        after = await store.grants.active_subject_revocations()

    assert len({before, first, renewed}) == 3
    # Renewed to a later moment, and kept as long as the longer of the two asked.
    assert still == {"u1": T0 + timedelta(minutes=1)}
    assert (purged, after) == (1, {})
