"""Tool policy: ``tools.allowed`` / ``tools.denied`` globs of the server's YAML.

One rule decides both what a caller may call and what ``tools/list`` shows, so a caller sees
exactly the tools it may call (ARCHITECTURE.md, step 6). Denied wins over allowed. A refused
call is answered like an unknown tool: JSON-RPC -32602 (MCP spec, "Tools", error handling).
"""

from __future__ import annotations

from dataclasses import dataclass

from atrium.gateway.errors import INVALID_PARAMS, GatewayError
from atrium.registry.globs import matches_any
from atrium.registry.schema import ToolPolicy


@dataclass(frozen=True)
class Policy:
    allowed: tuple[str, ...]
    denied: tuple[str, ...]

    @classmethod
    def of(cls, tools: ToolPolicy) -> Policy:
        return cls(tuple(tools.allowed), tuple(tools.denied))

    @property
    def open(self) -> bool:
        """Everything allowed, nothing denied: no response needs rewriting."""
        return "*" in self.allowed and not self.denied

    def permits(self, tool: str) -> bool:
        return matches_any(self.allowed, tool) and not matches_any(self.denied, tool)

    def check_call(self, server: str, tool: str | None) -> None:
        if tool is None or not self.permits(tool):
            raise GatewayError(
                400,
                INVALID_PARAMS,
                f"Unknown tool: {tool!r} is not available on server '{server}'",
                data={"reason": "tool policy"},
            )
