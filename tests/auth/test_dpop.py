"""RFC 9449 DPoP proofs: what the verifier accepts and refuses, and the replay cache under it."""

from __future__ import annotations

import base64
import hashlib
import json
import tracemalloc
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, RSAKey

from atrium.auth.dpop import WINDOW_S, DpopVerifier, access_token_hash, normalize_htu, thumbprint
from atrium.auth.errors import OAuthError
from atrium.auth.nonces import NonceIssuer
from atrium.auth.replay import MemoryReplayCache
from atrium.client.dpop import generate_key, make_proof

NOW = 1_700_000_000
URL = "https://gw.example.com/mcp"
TOKEN = "an-access-token"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier(*, nonces: NonceIssuer | None = None, clock: Clock | None = None) -> DpopVerifier:
    return DpopVerifier(replay=MemoryReplayCache(), nonces=nonces, clock=clock or Clock())


async def error_of(dpop: DpopVerifier, proofs: list[str], **request: Any) -> str:
    with pytest.raises(OAuthError) as caught:
        await dpop.verify(proofs, **{"method": "POST", "urls": [URL], **request})
    return caught.value.error


def claims(**overrides: Any) -> dict[str, Any]:
    return {"jti": "jti-1", "htm": "POST", "htu": URL, "iat": NOW, **overrides}


def signed(header: dict[str, Any], payload: dict[str, Any], key: Any) -> str:
    return jws.serialize_compact(header, json.dumps(payload), key, algorithms=[header["alg"]])


def b64url_json(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


async def test_a_valid_proof_returns_the_thumbprint_of_its_key() -> None:
    key = generate_key()
    proof = await verifier().verify(
        [make_proof(key, method="POST", url=URL, iat=NOW)], method="POST", urls=[URL]
    )
    assert proof.jkt == key.thumbprint()
    assert proof.jkt == thumbprint(key.as_dict(private=False))
    assert (proof.iat, proof.nonce) == (NOW, None)


@pytest.mark.parametrize("alg", ["ES384", "RS256", "PS256", "EdDSA"])
async def test_rsa_ed25519_and_other_curves_work(alg: str) -> None:
    key = generate_key(alg)
    proof = await verifier().verify(
        [make_proof(key, method="POST", url=URL, iat=NOW, alg=alg)], method="POST", urls=[URL]
    )
    assert proof.jkt == key.thumbprint()


@pytest.mark.parametrize("count", [0, 2])
async def test_anything_but_exactly_one_dpop_header_is_refused(count: int) -> None:
    key = generate_key()
    proofs = [make_proof(key, method="POST", url=URL, iat=NOW) for _ in range(count)]
    assert await error_of(verifier(), proofs) == "invalid_dpop_proof"


@pytest.mark.parametrize("token", ["", "not-a-jws", "a.b.c", "x" * 9000])
async def test_malformed_or_oversized_proofs_are_refused(token: str) -> None:
    assert await error_of(verifier(), [token]) == "invalid_dpop_proof"


async def test_a_proof_with_another_typ_is_refused() -> None:
    key = ECKey.generate_key("P-256")
    header = {"typ": "jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    assert await error_of(verifier(), [signed(header, claims(), key)]) == "invalid_dpop_proof"


async def test_an_unsigned_proof_with_alg_none_is_refused() -> None:
    key = ECKey.generate_key("P-256")
    header = {"typ": "dpop+jwt", "alg": "none", "jwk": key.as_dict(private=False)}
    token = f"{b64url_json(header)}.{b64url_json(claims())}."
    assert await error_of(verifier(), [token]) == "invalid_dpop_proof"


async def test_an_hmac_proof_with_a_symmetric_key_is_refused() -> None:
    key = OctKey.generate_key(256)
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": key.as_dict(private=True)}
    assert await error_of(verifier(), [signed(header, claims(), key)]) == "invalid_dpop_proof"


async def test_a_proof_embedding_a_private_key_is_refused() -> None:
    key = ECKey.generate_key("P-256")
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=True)}
    assert await error_of(verifier(), [signed(header, claims(), key)]) == "invalid_dpop_proof"


async def test_a_proof_without_a_jwk_is_refused() -> None:
    key = ECKey.generate_key("P-256")
    header = {"typ": "dpop+jwt", "alg": "ES256"}
    assert await error_of(verifier(), [signed(header, claims(), key)]) == "invalid_dpop_proof"


@pytest.mark.parametrize("alg", ["ES384", "EdDSA"])
async def test_a_jwk_of_another_key_type_or_curve_than_alg_is_refused(alg: str) -> None:
    key = generate_key(alg)
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    token = f"{b64url_json(header)}.{b64url_json(claims())}.AAAA"
    assert await error_of(verifier(), [token]) == "invalid_dpop_proof"


async def test_a_proof_with_an_rsa_key_below_2048_bits_is_refused() -> None:
    with pytest.warns(SecurityWarning):
        key = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    proof = make_proof(key, method="POST", url=URL, iat=NOW)
    assert await error_of(verifier(), [proof]) == "invalid_dpop_proof"


async def test_a_proof_signed_by_another_key_than_its_jwk_is_refused() -> None:
    shown, signer = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": shown.as_dict(private=False)}
    assert await error_of(verifier(), [signed(header, claims(), signer)]) == "invalid_dpop_proof"


@pytest.mark.parametrize("method", ["GET", "post"])
async def test_a_proof_for_another_method_is_refused(method: str) -> None:
    proof = make_proof(generate_key(), method=method, url=URL, iat=NOW)
    assert await error_of(verifier(), [proof], method="POST") == "invalid_dpop_proof"


@pytest.mark.parametrize(
    "url", ["https://gw.example.com/other", "http://gw.example.com/mcp", "https://evil.test/mcp"]
)
async def test_a_proof_for_another_url_is_refused(url: str) -> None:
    proof = make_proof(generate_key(), method="POST", url=url, iat=NOW)
    assert await error_of(verifier(), [proof]) == "invalid_dpop_proof"


async def test_htu_matches_ignoring_query_fragment_case_and_default_port() -> None:
    key = ECKey.generate_key("P-256")
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    token = signed(header, claims(htu="https://gw.example.com/mcp?session=1#top"), key)
    urls = ["not a url", "HTTPS://GW.Example.com:443/mcp"]
    proof = await verifier().verify([token], method="POST", urls=urls)
    assert proof.jti == "jti-1"


@pytest.mark.parametrize(
    ("url", "normal"),
    [
        ("HTTP://Example.COM", "http://example.com/"),
        ("http://example.com:80/a?b#c", "http://example.com/a"),
        ("https://example.com:8443/A/%7e%2f", "https://example.com:8443/A/~%2F"),
        ("https://[::1]:443/x", "https://[::1]/x"),
    ],
)
def test_normalize_htu_follows_rfc_3986_normalization(url: str, normal: str) -> None:
    assert normalize_htu(url) == normal


@pytest.mark.parametrize("offset", [-WINDOW_S - 1, WINDOW_S + 1, 10**400])
async def test_a_proof_issued_outside_the_window_is_refused(offset: int) -> None:
    proof = make_proof(generate_key(), method="POST", url=URL, iat=NOW + offset)
    assert await error_of(verifier(), [proof]) == "invalid_dpop_proof"


@pytest.mark.parametrize("offset", [-WINDOW_S + 1, WINDOW_S - 1])
async def test_a_proof_just_inside_the_window_passes(offset: int) -> None:
    proof = make_proof(generate_key(), method="POST", url=URL, iat=NOW + offset)
    result = await verifier().verify([proof], method="POST", urls=[URL])
    assert result.iat == NOW + offset


def test_ath_is_the_rfc_9449_example_hash() -> None:
    # RFC 9449 §7.1, the example access token and the ath of its proof.
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    assert access_token_hash(token) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


async def test_a_proof_with_an_access_token_needs_ath() -> None:
    proof = make_proof(generate_key(), method="POST", url=URL, iat=NOW)
    assert await error_of(verifier(), [proof], access_token=TOKEN) == "invalid_dpop_proof"


async def test_ath_of_another_token_is_refused() -> None:
    proof = make_proof(generate_key(), method="POST", url=URL, iat=NOW, access_token="other")
    assert await error_of(verifier(), [proof], access_token=TOKEN) == "invalid_dpop_proof"


async def test_ath_of_the_presented_token_passes_and_is_ignored_without_one() -> None:
    dpop, key = verifier(), generate_key()
    for token in (TOKEN, None):
        proof = make_proof(key, method="POST", url=URL, iat=NOW, access_token=TOKEN)
        await dpop.verify([proof], method="POST", urls=[URL], access_token=token)


async def test_a_replayed_proof_is_refused_the_second_time() -> None:
    dpop = verifier()
    proof = make_proof(generate_key(), method="POST", url=URL, iat=NOW)
    await dpop.verify([proof], method="POST", urls=[URL])
    assert await error_of(dpop, [proof]) == "invalid_dpop_proof"


async def test_a_refused_proof_does_not_spend_its_jti() -> None:
    dpop, key = verifier(), generate_key()
    wrong = make_proof(key, method="POST", url=URL, iat=NOW, jti="same")
    assert await error_of(dpop, [wrong], access_token=TOKEN) == "invalid_dpop_proof"
    await dpop.verify([wrong], method="POST", urls=[URL])


async def test_a_proof_of_another_key_than_the_tokens_is_refused_without_being_spent() -> None:
    dpop, key = verifier(), generate_key()
    proof = make_proof(key, method="POST", url=URL, iat=NOW)

    assert await error_of(dpop, [proof], jkt=generate_key().thumbprint()) == "invalid_dpop_proof"
    await dpop.verify([proof], method="POST", urls=[URL], jkt=key.thumbprint())


async def test_a_checked_proof_is_spent_only_when_asked() -> None:
    dpop = verifier()
    proof = make_proof(generate_key(), method="POST", url=URL, iat=NOW)
    checked = dpop.check([proof], method="POST", urls=[URL])
    dpop.check([proof], method="POST", urls=[URL])  # checking twice spends nothing

    await dpop.spend(checked)

    with pytest.raises(OAuthError) as replayed:
        await dpop.spend(checked)
    assert replayed.value.error == "invalid_dpop_proof"


async def test_a_verifier_with_nonces_demands_one_and_accepts_it_on_retry() -> None:
    clock = Clock()
    nonces = NonceIssuer(b"k" * 32, clock=clock)
    dpop, key = verifier(nonces=nonces, clock=clock), generate_key()
    with pytest.raises(OAuthError) as caught:
        await dpop.verify(
            [make_proof(key, method="POST", url=URL, iat=NOW)], method="POST", urls=[URL]
        )
    assert caught.value.error == "use_dpop_nonce"
    nonce = caught.value.headers["DPoP-Nonce"]
    retry = make_proof(key, method="POST", url=URL, iat=NOW, nonce=nonce)
    assert (await dpop.verify([retry], method="POST", urls=[URL])).nonce == nonce


async def test_an_expired_or_forged_nonce_is_answered_with_a_fresh_one() -> None:
    clock = Clock()
    nonces = NonceIssuer(b"k" * 32, lifetime_s=60, clock=clock)
    stale = nonces.issue()
    clock.now += 61
    forged = NonceIssuer(b"x" * 32, clock=clock).issue()
    for nonce in (stale, forged):
        proof = make_proof(generate_key(), method="POST", url=URL, iat=NOW + 61, nonce=nonce)
        with pytest.raises(OAuthError) as caught:
            await verifier(nonces=nonces, clock=clock).verify([proof], method="POST", urls=[URL])
        assert caught.value.error == "use_dpop_nonce"
        assert nonces.valid(caught.value.headers["DPoP-Nonce"])


@pytest.mark.parametrize("form", ["rfc9530", "base64url"])
async def test_a_content_digest_of_the_body_passes(form: str) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    sha = hashlib.sha256(body).digest()
    digest = {
        "rfc9530": "sha-256=:" + base64.b64encode(sha).decode() + ":",
        "base64url": base64.urlsafe_b64encode(sha).rstrip(b"=").decode(),
    }[form]
    key = ECKey.generate_key("P-256")
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    token = signed(header, claims(content_digest=digest), key)
    await verifier().verify([token], method="POST", urls=[URL], body=body)


async def test_a_content_digest_of_another_body_or_of_no_body_is_refused() -> None:
    key = generate_key()
    proof = make_proof(key, method="POST", url=URL, iat=NOW, body=b"signed body")
    assert await error_of(verifier(), [proof], body=b"other body") == "invalid_dpop_proof"
    assert await error_of(verifier(), [proof], body=None) == "invalid_dpop_proof"


async def test_a_body_without_a_content_digest_is_not_checked() -> None:
    proof = make_proof(generate_key(), method="POST", url=URL, iat=NOW)
    await verifier().verify([proof], method="POST", urls=[URL], body=b"anything")


async def test_the_replay_cache_forgets_a_key_after_its_ttl() -> None:
    clock = Clock(0)
    cache = MemoryReplayCache(clock=clock)
    assert await cache.first_use("a", ttl_s=10)
    clock.now = 9.9
    assert not await cache.first_use("a", ttl_s=10)
    clock.now = 10
    assert await cache.first_use("a", ttl_s=10)


async def test_the_replay_cache_evicts_expired_keys_before_live_ones() -> None:
    clock = Clock(0)
    cache = MemoryReplayCache(max_entries=2, clock=clock)
    await cache.first_use("short", ttl_s=5)
    await cache.first_use("long", ttl_s=100)
    clock.now = 6
    assert await cache.first_use("new", ttl_s=100)
    assert not await cache.first_use("long", ttl_s=100)
    assert not await cache.first_use("new", ttl_s=100)


async def test_a_full_replay_cache_refuses_new_proofs_rather_than_forget_live_ones() -> None:
    clock = Clock(0)
    cache = MemoryReplayCache(max_entries=10, clock=clock)
    for n in range(10):
        assert await cache.first_use(f"k{n}", ttl_s=60)

    for n in range(10, 1000):  # the flood
        with pytest.raises(OAuthError) as refused:
            await cache.first_use(f"k{n}", ttl_s=60)
        assert (refused.value.status, refused.value.error) == (503, "temporarily_unavailable")

    assert len(cache) == 10
    assert not await cache.first_use("k0", ttl_s=60)  # still remembered: a replay
    assert refused.value.headers["Retry-After"] == "60"
    clock.now = 60
    assert await cache.first_use("k1000", ttl_s=60)  # room again once proofs expire


async def test_the_replay_cache_holds_a_key_in_well_under_200_bytes() -> None:
    """Memory flat under load (issue 18): a gateway remembers every proof for two windows, so
    what one costs is what the process grows by. Keeping the key as given (``jkt:jti``, made
    for each proof, ~80 characters) with a float and a heap entry of its own took ~270 bytes;
    its 64-bit digest in a set and a list of its second takes 100–150."""
    clock = Clock(0)
    cache = MemoryReplayCache(max_entries=50_000, clock=clock)
    jkt = "k" * 43
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(20_000):
            clock.now = n / 1000  # a proof a millisecond: 20 expiry seconds
            assert await cache.first_use(f"{jkt}:{n:036d}", ttl_s=600)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    assert grown / 20_000 < 200
    first = f"{jkt}:{0:036d}"
    assert not await cache.first_use(first, ttl_s=600)  # every one still remembered
    clock.now = 620
    assert await cache.first_use(first, ttl_s=600)
    assert len(cache) == 1
