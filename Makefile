# The same commands locally and in CI (.ci/run calls `make check` and `make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROJECT ?= .project
STAMP := $(VENV)/.installed

.PHONY: run test check bench install clean npm-deps system-deps

$(STAMP): pyproject.toml testing/everything/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# Test-only: the everything server the tests and the conformance suite host (not in the wheel)
	$(BIN)/python -m pip install --quiet --no-deps -e testing/everything
	touch $(STAMP)

install: $(STAMP)

## run: initialise a project on SQLite in $(PROJECT)/, list its servers and run them until Ctrl-C
run: $(STAMP)
	$(BIN)/atrium init $(PROJECT)
	$(BIN)/atrium --project $(PROJECT) plugins mcp list
	$(BIN)/atrium --project $(PROJECT) start

## test: the whole suite (PostgreSQL on 127.0.0.1:5432 must be up; in CI it is required),
## spread over PYTEST_WORKERS processes, one test file per process at a time; branch coverage
## of atrium (the subprocesses the tests start included) printed at the end, failing under
## COVERAGE_FLOOR percent
PYTEST_WORKERS ?= 4
COVERAGE_FLOOR ?= 85
COVERAGE := --cov=atrium --cov-branch --cov-report=term:skip-covered --cov-fail-under=$(COVERAGE_FLOOR)
## (the sources are compiled first: with PYTHONDONTWRITEBYTECODE set, as on the CI machine, every
## gateway, server and CLI process the tests start compiled the modules it imported again)
test: $(STAMP) npm-deps system-deps
	$(BIN)/python -m compileall -q -j0 src testing tests
	$(BIN)/python scripts/pytest_strict.py -n $(PYTEST_WORKERS) --dist loadfile $(COVERAGE) $(PYTEST_ARGS)

## system-deps: system packages the tests need (Chromium for the web console's browser tests)
system-deps:
	scripts/system-deps

## npm-deps: third-party MCP servers the tests host (pinned, in .cache/npm)
npm-deps:
	scripts/npm-deps

## conformance: the MCP conformance suite (server, 2026-07-28 and 2025-11-25) on Node 22, in .cache/conformance
.PHONY: conformance
conformance: $(STAMP)
	VENV=$(VENV) scripts/conformance $(CONFORMANCE_ARGS)

## check: lint, format and types (the tests' too)
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict src tests testing/everything/src

## bench: every benchmark under bench/, each printing its ratios (not the soak: `make soak`; nor
## bench/callgrind.py, an A/B gauge of minutes under valgrind;
## nor the servers the benchmarks start, which would wait for input forever)
bench: $(STAMP)
	@set -e; found=0; for f in bench/*.py; do [ -e "$$f" ] || continue; \
	case "$$f" in bench/soak.py|bench/stdio_echo.py|bench/trivial_server.py|bench/floor_proxy.py|bench/profile_parts.py|bench/callgrind.py) continue;; esac; \
	found=1; $(BIN)/python "$$f"; done; \
	[ $$found = 1 ] || echo "no benchmarks yet"

## soak: ten minutes of mixed load on a real project (bench/soak.py), failing on an unexpected
## error or a growing gateway; SOAK_ARGS="--minutes 2 --store postgres", say
.PHONY: soak
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(PROJECT) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
