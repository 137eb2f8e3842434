# Two commands for a newcomer: `make run` starts the platform, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint fmt typecheck bench install install-dev migrate shell clean help

help:
	@echo "make run      start the platform (embedded PostgreSQL + Redis unless DATABASE_URL/REDIS_URL are set)"
	@echo "make test     lint, checks and the whole test suite"
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

bench: install-dev
	$(VENV)/bin/pytest tests/benchmarks -m benchmark -p no:randomly -s $(PYTEST_ARGS)

migrate: install
	$(PY) manage.py migrate

shell: install
	$(PY) manage.py shell

clean:
	rm -rf $(VENV) var/test .pytest_cache .mypy_cache .ruff_cache

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
