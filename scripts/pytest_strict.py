"""Run pytest and refuse to call an empty run a success.

pytest exits 5 when it collected no test. CI must not read that as a pass (nothing was
checked) nor confuse it with test failures (exit 1), so it gets its own message and exit 3.
"""

from __future__ import annotations

import sys

import pytest

NO_TESTS_COLLECTED = 5


def main() -> int:
    code = int(pytest.main(sys.argv[1:]))
    if code == NO_TESTS_COLLECTED:
        print("pytest collected no tests: refusing to report success", file=sys.stderr)
        return 3
    return code


if __name__ == "__main__":
    sys.exit(main())
