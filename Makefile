# The two commands of the README: `make run` (install, then the demo) and `make test`;
# `make test-quick` is the fast loop of development (README "Development").
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip --disable-pip-version-check --quiet
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export GX_ANALYTICS_ENABLED ?= false

.PHONY: run test test-quick install install-test system-packages lint format messages bench clean server worker

run: install  ## install, then build the demo database and run the demo
	$(BIN)/pdca demo

# pytest-xdist workers: one more than the cores, because part of the suite waits on the
# servers and flow-run processes it starts (measured on 2 cores: 2 workers about 12 min,
# 3 workers 10.5-11, 4 workers 13.5: beyond that the suite is CPU-bound and they contend);
# a test module stays on one worker, so its module-scoped worlds are built once; modules are
# handed out in collection order, the longest first (tests/conftest.py: LONGEST_FIRST), not
# xdist's default of the most tests first. TEST_WORKERS=0 runs in this process (pdb, -x).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: install-test system-packages  ## the whole suite, slow tests included
	$(BIN)/pytest $(XDIST)

test-quick: install-test  ## the fast loop: every test that needs no server and no large world
	$(BIN)/pytest $(XDIST) -m "not slow"

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# constraints.txt pins every package (direct and transitive) to the versions tested here.
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -c constraints.txt -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) install -c constraints.txt -e ".[test]"
	touch $@ $(VENV)/.installed

system-packages:  ## PostgreSQL, Chromium, chromedriver and a CJK font for the tests (apt-get, when missing)
	.ci/system-packages.sh

lint: install-test  ## ruff and sqlfluff, as the test suite runs them
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint sql

format: install-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The settings of both pybabel commands are [tool.babel] in pyproject.toml.
messages: install  ## reports/locale: pdca.pot from the sources, each .po updated, what is untranslated
	$(BIN)/pybabel extract
	$(BIN)/pybabel update
	$(BIN)/python -m tasks.common.i18n

bench: install  ## the performance benchmarks; each prints its baseline beside its figure
	$(BIN)/python bench/bench_import.py
	$(BIN)/python bench/bench_dispatch.py
	$(BIN)/python bench/bench_check.py

# Operations (README "Operations"): `make server` in one terminal, `make worker` in another.
PREFECT_PORT ?= 4200
worker: export PREFECT_API_URL ?= http://127.0.0.1:$(PREFECT_PORT)/api
worker: export PDCA_CHECKOUT ?= $(CURDIR)
server: export PREFECT_UI_API_URL ?= http://127.0.0.1:$(PREFECT_PORT)/api

server: install  ## Prefect server and UI on http://127.0.0.1:4200 (analytics off)
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) --analytics-off

worker: install  ## the pdca work pool (if missing), every deployment of prefect.yaml, a worker
	$(BIN)/prefect work-pool inspect pdca >/dev/null 2>&1 \
		|| $(BIN)/prefect work-pool create pdca --type process
	$(BIN)/prefect --no-prompt deploy --all
	$(BIN)/pdca worker --pool pdca

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
