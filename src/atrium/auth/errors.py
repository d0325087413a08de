"""OAuth errors, each knowing its wire form.

``OAuthError`` is what the authorization server answers (RFC 6749 §5.2: a JSON body with
``error`` and ``error_description``, status 400 or 401); the resource-server side turns the
same errors into ``WWW-Authenticate`` challenges (RFC 6750 §3, RFC 9449 §7.1). The ``error``
codes are the registered ones; each subclass fixes the status its RFC asks for.
"""

from __future__ import annotations

from typing import Any


class OAuthError(Exception):
    """An OAuth error response: ``error`` code, human description, HTTP status, extra headers."""

    status = 400

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        if status is not None:
            self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


# RFC 6749 §5.2: error_description is printable ASCII without '"' and '\'.
_DESCRIPTION_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}


def shown(value: object, limit: int = 120) -> str:
    """``value`` fit to quote in an ``error_description``: other characters become '?', and
    a long value is cut to ``limit`` characters."""
    text = "".join(c if c in _DESCRIPTION_CHARS else "?" for c in str(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_client(description: str) -> OAuthError:
    # RFC 6749 §5.2: 401 when the client tried to authenticate.
    return OAuthError("invalid_client", description, status=401)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_scope(description: str) -> OAuthError:
    return OAuthError("invalid_scope", description)


def invalid_target(description: str) -> OAuthError:
    # RFC 8707 §2.
    return OAuthError("invalid_target", description)


def unauthorized_client(description: str) -> OAuthError:
    return OAuthError("unauthorized_client", description)


def unsupported_grant_type(description: str) -> OAuthError:
    return OAuthError("unsupported_grant_type", description)


def invalid_dpop_proof(description: str) -> OAuthError:
    # RFC 9449 §5 (token endpoint) and §7.1 (resource server, with a 401 challenge).
    return OAuthError("invalid_dpop_proof", description)


def use_dpop_nonce(nonce: str) -> OAuthError:
    # RFC 9449 §8: the server demands a nonce; the client retries with it.
    return OAuthError(
        "use_dpop_nonce",
        "Authorization server requires nonce in DPoP proof",
        headers={"DPoP-Nonce": nonce},
    )


def invalid_token(description: str) -> OAuthError:
    # RFC 6750 §3.1.
    return OAuthError("invalid_token", description, status=401)


def insufficient_scope(description: str) -> OAuthError:
    return OAuthError("insufficient_scope", description, status=403)


def invalid_client_metadata(description: str) -> OAuthError:
    # RFC 7591 §3.2.2.
    return OAuthError("invalid_client_metadata", description)


def invalid_redirect_uri(description: str) -> OAuthError:
    return OAuthError("invalid_redirect_uri", description)
