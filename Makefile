# jetsched — the Makefile is the interface: `make help` lists the verbs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
#: The three distributions (docs/architecture.md#distributions): jetsched, jetsched-server, jetsched-devkit.
DISTRIBUTIONS := . ./services ./libs/devkit
#: Source trees, one per package; the distributions collect them.
PACKAGES := libs/core libs/bus libs/sdk libs/dashboard libs/devkit libs/cli services/intake services/timer services/dispatcher services/reaper
SOURCES := $(addsuffix /src,$(PACKAGES)) tests
PYTEST_ARGS ?=
WHEELS ?= dist

.PHONY: help install wheels run test unit integration lint fmt typecheck bench bench-scale chaos chaos-zones fuzz clean

help:  ## list the verbs
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: $(addsuffix /pyproject.toml,$(DISTRIBUTIONS))
	@# The dashboard's browser test drives Debian's chromium (Playwright's own download has no route here).
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "warning: chromium is missing (apt-get install chromium): the dashboard browser test will fail"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q --no-build-isolation \
		$(addprefix -e ,$(DISTRIBUTIONS)) --group dev
	touch $@

install: $(VENV)/.installed  ## create .venv, install the three distributions (editable) with dev tools, and chromium (apt)

wheels: $(VENV)/.installed  ## build the wheels of jetsched, jetsched-server and jetsched-devkit into $(WHEELS)/
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w $(WHEELS) $(DISTRIBUTIONS)

run: $(VENV)/.installed  ## run everything: embedded nats-server, four services, demo worker, demo jobs
	$(BIN)/jetsched dev

#: `make test` runs the suite on this many parallel pytest-xdist workers (most tests wait on processes and
#: timers, so more than the cores pay), then the tests marked `serial` alone; 0 runs everything in-process.
TEST_WORKERS ?= 3

# Pass 1: all but `serial`, in parallel. Pass 2: `serial` (time bounds, loads of their own), alone.
# PYTEST_ARGS go to both; a pass that its selection leaves empty (exit 5) is no failure unless both are.
# The sources are compiled first: every test starts Python processes, and PYTHONDONTWRITEBYTECODE (set on
# CI's machines) would have each of them compile jetsched afresh.
test: $(VENV)/.installed  ## run the whole test suite (TEST_WORKERS=n parallel workers, then the serial tests)
	@$(BIN)/python -m compileall -q $(addsuffix /src,$(PACKAGES))
	@$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not serial" $(PYTEST_ARGS); parallel=$$?; \
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS); serial=$$?; \
	echo "make test: parallel pass exit $$parallel, serial pass exit $$serial"; \
	case "$$parallel$$serial" in 00|05|50) exit 0;; 55) exit 5;; *) exit 1;; esac

unit: $(VENV)/.installed  ## pure unit tests only (no I/O)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: $(VENV)/.installed  ## integration tests against real nats-server processes
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

lint: $(VENV)/.installed  ## ruff, mypy and the import contracts (lint-imports)
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy $(addsuffix /src/jetsched,$(PACKAGES)) tests
	$(BIN)/lint-imports

fmt: $(VENV)/.installed  ## format the code
	$(BIN)/ruff format $(SOURCES)
	$(BIN)/ruff check --fix --unsafe-fixes $(SOURCES)

typecheck: $(VENV)/.installed  ## mypy --strict
	$(BIN)/mypy $(addsuffix /src/jetsched,$(PACKAGES)) tests

bench: $(VENV)/.installed  ## print throughput, latency, round-trip and timer figures
	$(BIN)/python tests/bench/bench_throughput.py
	$(BIN)/python tests/bench/bench_timer.py
	$(BIN)/python tests/bench/bench_dispatch.py
	$(BIN)/python tests/bench/bench_workflows.py

bench-scale: $(VENV)/.installed  ## memory and restart time with 0 and 1M retained jobs, memory per pending job with 1M delayed (ARGS=--quick: 100k; --retained N…, --pending N…); one hot queue by 1-3 dispatchers on 3 nodes
	$(BIN)/python tests/bench/bench_scale.py $(ARGS)
	$(BIN)/python tests/bench/bench_hot_queue.py

chaos: $(VENV)/.installed  ## a 2-minute chaos soak (SEED=n to replay one)
	$(BIN)/python -m tests.chaos.soak --seconds $(or $(SECONDS),120) $(if $(SEED),--seed $(SEED))

FUZZ_MESSAGES ?= 100000
fuzz: $(VENV)/.installed  ## hostile messages against the real stack (FUZZ_MESSAGES=n, SEED=n, FUZZ_SKIP=a,b)
	$(BIN)/python -m tests.fuzz.run --messages $(FUZZ_MESSAGES) $(if $(SEED),--seed $(SEED)) $(if $(FUZZ_SKIP),--skip $(FUZZ_SKIP))

chaos-zones: $(VENV)/.installed  ## fault scenarios across 3 zones in network namespaces (root; SEED=n SCENARIOS="worker-zombie …")
	$(BIN)/python -m tests.zones.run $(if $(SEED),--seed $(SEED)) $(SCENARIOS)

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .jetsched build $(WHEELS)
