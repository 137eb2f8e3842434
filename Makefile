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
