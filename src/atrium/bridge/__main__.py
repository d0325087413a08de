"""``python -m atrium.bridge``, as the supervisor starts it."""

from atrium.bridge.cli import main

raise SystemExit(main())
