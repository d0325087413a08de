"""``AuthorizationServer``: what every endpoint of the authorization server shares.

Opened once per gateway, in its lifespan, from ``Settings`` and the open store (``open``
reads the keys from the store; the constructor reads nothing). ``hosted`` tells which servers
exist (for RFC 8707 ``resource`` checks) without ``auth`` depending on the gateway.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.asyncio import Redis

from atrium.auth.access_tokens import TokenIssuer, TokenVerifier
from atrium.auth.cimd import MetadataFetcher
from atrium.auth.clients import ClientDirectory, console_client
from atrium.auth.dpop import DpopVerifier
from atrium.auth.errors import invalid_target
from atrium.auth.keys import KeySet
from atrium.auth.keystore import KeyStore
from atrium.auth.redirects import local_port
from atrium.auth.replay import MemoryReplayCache, ReplayCache
from atrium.auth.resource_ids import Resources
from atrium.auth.revocation_list import RevocationList
from atrium.auth.roles import Roles
from atrium.auth.session_keys import SessionKeyStore
from atrium.auth.signed import SessionKeys, SessionNonces, Signer
from atrium.auth.throttle import Counters, RegistrationThrottle, SignInThrottle
from atrium.registry.schema import ServerConfig
from atrium.settings import Settings
from atrium.store import Store

CODE_TTL_S = 60
Hosted = Callable[[str], ServerConfig | None]


class AuthorizationServer:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        keys: KeySet,
        session_keys: SessionKeys,
        hosted: Hosted,
        replay: ReplayCache | None = None,
        redis: Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``redis``: where replicas share the throttles' counters (``auth.throttle``)."""
        options = settings.oauth
        self.settings = settings
        self.store = store
        self.options = options
        self.issuer = settings.issuer
        self.hosted = hosted
        self.clock = clock
        self.keys = keys
        # Where ``keys`` are reloaded from (``open``); None: a set of the caller's own.
        self.key_store: KeyStore | None = None
        # Shared by every replica of the project: also binds MCP sessions to their callers.
        self.session_keys = session_keys
        # Where ``session_keys`` are reloaded from (``open``); None: keys of the caller's own.
        self.session_store: SessionKeyStore | None = None
        self.signer = Signer(session_keys, clock=clock)
        self.roles = Roles(options.roles)
        self.resources = Resources(settings.public_url)
        self.tokens = TokenIssuer(keys, self.issuer, ttl_s=options.access_token_ttl_s, clock=clock)
        self.verifier = TokenVerifier(keys, self.issuer, clock=clock)
        nonces = SessionNonces(session_keys, clock=clock) if options.dpop_nonce else None
        self.dpop = DpopVerifier(replay=replay or MemoryReplayCache(), nonces=nonces, clock=clock)
        self.documents = MetadataFetcher(dev_mode=options.dev_mode)
        self.clients = ClientDirectory(
            store,
            self.documents,
            dev_mode=options.dev_mode,
            builtin=(console_client(settings.public_url),),
        )
        self.revocations = RevocationList()
        self._counters = Counters.for_redis(redis, settings.redis.key_prefix)
        self.registrations = RegistrationThrottle(self._counters, options.registrations_per_address)
        self.signins = SignInThrottle.from_settings(settings, self._counters)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        store: Store,
        *,
        hosted: Hosted,
        replay: ReplayCache | None = None,
        redis: Redis | None = None,
        clock: Callable[[], float] = time.time,
    ) -> AuthorizationServer:
        """The project's authorization server: its signing keys and session keys (from the
        store, each made on first use), and the revocation list as the store holds it now."""
        key_store = KeyStore.of(settings, store, clock=clock)
        session_store = SessionKeyStore.of(settings, store, clock=clock)
        auth = cls(
            settings,
            store,
            keys=await key_store.load(),
            session_keys=await session_store.load(),
            hosted=hosted,
            replay=replay,
            redis=redis,
            clock=clock,
        )
        auth.key_store = key_store
        auth.session_store = session_store
        await auth.revocations.refresh(store)
        return auth

    async def close(self) -> None:
        await self.documents.close()
        await self._counters.close()

    def endpoint(self, name: str) -> str:
        return f"{self.settings.oauth_base}/{name}"

    async def own_ports(self) -> frozenset[int]:
        """The ports Atrium serves on this host, which no redirect may name (``redirects``):
        the gateway's and every stored server's, enabled or not."""
        ports = {self.settings.gateway_port}
        urls = [self.settings.public_url, self.issuer]
        for record in await self.store.servers.list():
            if record.port is not None:
                ports.add(record.port)
            if isinstance(url := record.config.get("url"), str):
                urls.append(url)  # a remote server that runs on this host
        for url in urls:
            if (port := local_port(url)) is not None:
                ports.add(port)
        return frozenset(ports)

    def audience_for(self, resources: list[str]) -> list[str]:
        """RFC 8707: each ``resource`` must be a hosted server or the agents API; none means the
        default audience."""
        if not resources:
            return [self.options.default_audience]
        for resource in resources:
            if self.resources.is_agents_api(resource):
                continue
            name = self.resources.server_of(resource)
            if name is None or self.hosted(name) is None:
                raise invalid_target(f"{resource!r} is not a server hosted here")
        return resources
