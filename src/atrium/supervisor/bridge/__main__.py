"""``python -m atrium.supervisor.bridge``, as the supervisor starts it."""

from atrium.supervisor.bridge.cli import main

raise SystemExit(main())
