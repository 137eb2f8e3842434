# Two commands for a newcomer: `make run` starts the platform, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test smoke lint fmt typecheck bench install install-dev migrate shell clean help

help:
	@echo "make run      start the platform (embedded PostgreSQL + Redis unless DATABASE_URL/REDIS_URL are set)"
	@echo "make test     lint, checks and the whole test suite"
	@echo "make smoke    a fresh clone of HEAD with only the runtime requirements: every import, then up and a run"
	@echo "make bench    benchmarks (tests/benchmarks), each against a reference measured in the same run"
	@echo "make fmt      format the code"
	@echo "make frontend build the web app (npm ci + next build), only when its sources changed"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamps record which requirements are installed, so a change to a requirements file reinstalls.
$(VENV)/.base-installed: requirements/base.txt requirements/prod.txt | $(PY)
	$(PIP) install --quiet -r requirements/prod.txt
	@touch $@

$(VENV)/.dev-installed: requirements/dev.txt $(VENV)/.base-installed
	$(PIP) install --quiet -r requirements/dev.txt
	@touch $@

install: $(VENV)/.base-installed
install-dev: $(VENV)/.dev-installed

run: install
run: frontend
	$(PY) manage.py up $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: install-dev
	$(VENV)/bin/mypy aggregator apps

fmt: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install-dev lint
test: frontend frontend-test
	DJANGO_SETTINGS_MODULE=aggregator.settings.test $(PY) manage.py check --fail-level WARNING
	DJANGO_SETTINGS_MODULE=aggregator.settings.test $(PY) manage.py makemigrations --check --dry-run
	$(MAKE) --no-print-directory typecheck
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The runtime tests (tests/platform/test_runtime_install.py) on a fresh clone of HEAD whose venv holds only
# what `make run` installs: a package the runtime imports but only dev.txt brings in shows up here, not in
# `make test`. Uncommitted changes are not in the clone.
SMOKE_DIR := var/smoke
smoke: install-dev
	@git diff --quiet HEAD || echo "make smoke: uncommitted changes are not in the clone of HEAD it tests" >&2
	rm -rf $(SMOKE_DIR)
	git clone --quiet . $(SMOKE_DIR)/checkout
	$(MAKE) --no-print-directory -C $(SMOKE_DIR)/checkout install PYTHON=$(PYTHON) VENV=.venv
	AGGREGATOR_RUNTIME_PYTHON=$(abspath $(SMOKE_DIR))/checkout/.venv/bin/python \
	AGGREGATOR_RUNTIME_CHECKOUT=$(abspath $(SMOKE_DIR))/checkout \
		$(VENV)/bin/pytest tests/platform/test_runtime_install.py -m runtime $(PYTEST_ARGS)

bench: install-dev
	$(VENV)/bin/pytest tests/benchmarks -m benchmark -p no:randomly -s $(PYTEST_ARGS)

migrate: install
	$(PY) manage.py migrate

shell: install
	$(PY) manage.py shell

clean:
	rm -rf $(VENV) var/test var/smoke .pytest_cache .mypy_cache .ruff_cache

# --- Web app (frontend/, served by Django at /) --------------------------------------------------------
.PHONY: frontend frontend-test
NPM ?= npm
FRONTEND_SOURCES := $(shell find frontend/src frontend/public -type f 2>/dev/null) frontend/package.json \
	frontend/next.config.ts frontend/tsconfig.json frontend/postcss.config.mjs

# Stamps, like the venv's: `npm ci` only when the lock file changed, the build only when a source did.
frontend/node_modules/.installed: frontend/package-lock.json
	cd frontend && $(NPM) ci --no-audit --no-fund
	@touch $@

frontend/.frontend-built: $(FRONTEND_SOURCES) frontend/node_modules/.installed
	cd frontend && NEXT_TELEMETRY_DISABLED=1 $(NPM) run build
	@touch $@

frontend: frontend/.frontend-built

# Strict type check, Vitest, the API-types drift check (regenerates them from the backend's schema and
# fails on a difference) and the dashboard's first-load JS budget. The browser tests run with pytest.
frontend-test: frontend install-dev
	cd frontend && $(NPM) run typecheck && $(NPM) test
	PYTHON=$(abspath $(PY)) frontend/scripts/gen-types.sh --check
	node frontend/scripts/bundle-size.mjs
