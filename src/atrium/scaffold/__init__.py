"""``atrium init``: the scaffold of a project folder (ARCHITECTURE.md, "A user's project folder").

Writing is additive: a file the user already has is never overwritten, so ``init`` can be run
again at any time to add what is missing (a new built-in server, a deleted key).
"""

from __future__ import annotations

from atrium.scaffold.project import BUILTIN_SERVERS, BuiltinServer, InitReport, init_project

__all__ = ["BUILTIN_SERVERS", "BuiltinServer", "InitReport", "init_project"]
