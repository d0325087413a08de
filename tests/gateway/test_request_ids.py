"""Request ids (``exchange.new_request_id``): UUIDv7s in 32 hex digits (RFC 9562 §5.7), so the
audit's ``request_id`` index grows at its end. Tried as a caller or an operator would rely on
them: never two alike, even thousands in one millisecond; ordered by time across
milliseconds; the random part really random (no id told from the one before it); the time
they carry the time they were made."""

from __future__ import annotations

import itertools
import time
import uuid

from atrium.gateway.exchange import new_request_id


def test_an_id_is_a_uuid_v7_in_32_hex_digits_carrying_the_time_it_was_made() -> None:
    before = time.time_ns() // 1_000_000
    made = new_request_id()
    after = time.time_ns() // 1_000_000

    assert len(made) == 32
    assert set(made) <= set("0123456789abcdef")
    parsed = uuid.UUID(hex=made)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= after


def test_a_hundred_thousand_ids_are_all_different() -> None:
    made = [new_request_id() for _ in range(100_000)]  # thousands share each millisecond

    assert len(set(made)) == len(made)


def test_ids_of_later_milliseconds_sort_after_earlier_ones() -> None:
    batches = []
    for _ in range(5):
        batches.append([new_request_id() for _ in range(50)])
        time.sleep(0.003)

    for earlier, later in itertools.pairwise(batches):
        assert max(earlier) < min(later)


def test_the_random_bits_vary_in_every_position_they_hold() -> None:
    # rand_a is digits 13-15, the variant digit's two low bits, rand_b digits 17-31: each of
    # those digits takes many values over a few hundred ids; the version and variant do not.
    made = [new_request_id() for _ in range(500)]

    for position in (*range(13, 16), *range(17, 32)):
        assert len({each[position] for each in made}) >= 12, position
    assert {each[12] for each in made} == {"7"}
    assert {each[16] for each in made} == {"8", "9", "a", "b"}
