# The two Quick start commands (see README): `make serve` and `make test`.
# Each sets up what it needs first, so both work on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: serve test test-quick install install-dev bench screenshots clean \
	cluster cluster-status cluster-down cluster-clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

## Set up, initialise the database and serve on http://127.0.0.1:$${PORT:-8000}
## (with no DATABASE_URL and no server at the default, on a private one: scripts/serve)
serve: install
	exec ./scripts/serve

## Set up and run the whole test suite (and the static security scan)
test: install-dev
	./scripts/install-system-deps
	$(BIN)/bandit --quiet --configfile pyproject.toml --recursive myapp app.py wsgi.py gunicorn.conf.py
	$(BIN)/pytest

## The inner loop: the in-process tests only (no gunicorn, no browser, no
## fault injection, no cluster); `make test` stays the whole suite, as CI runs it
test-quick: install-dev
	$(BIN)/pytest -m "not server and not faults and not cluster"

## Retake the README's pictures in docs/screenshots/ (the browser tests, saving them there)
screenshots: install-dev
	./scripts/install-system-deps
	UPDATE_SCREENSHOTS=1 $(BIN)/pytest tests/browser

## The benchmark (10-15 minutes; not part of `make test`): see docs/performance.md
bench:
	./bench/run

## Scale-out on one machine (README "Scale-out"): nginx :8080/:8443 -> CLUSTER_INSTANCES
## gunicorn instances -> PgBouncer :6432 -> private primary :5433 + replica :5434, under .cluster/
cluster: install
	$(BIN)/python -m cluster up

cluster-status: install
	$(BIN)/python -m cluster status

## Stops everything `make cluster` started; keeps the data in .cluster/
cluster-down: install
	$(BIN)/python -m cluster down

## Stops everything and deletes .cluster/
cluster-clean: install
	$(BIN)/python -m cluster clean

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
