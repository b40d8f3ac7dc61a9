# The two Quick start commands (see README): `make serve` and `make test`.
# Each sets up what it needs first, so both work on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DATABASE_URL ?= postgresql+psycopg2:///myapp

.PHONY: serve test test-quick install install-dev bench screenshots clean

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
serve: install
	$(BIN)/flask --app app init-db
	$(BIN)/flask --app app create-first-admin
	exec $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

## Set up and run the whole test suite (and the static security scan)
test: install-dev
	./scripts/install-system-deps
	$(BIN)/bandit --quiet --configfile pyproject.toml --recursive myapp app.py wsgi.py gunicorn.conf.py
	$(BIN)/pytest

## The inner loop: the in-process tests only (no gunicorn, no browser, no
## fault injection); `make test` stays the whole suite, as CI runs it
test-quick: install-dev
	$(BIN)/pytest -m "not server and not faults"

## Retake the README's pictures in docs/screenshots/ (the browser tests, saving them there)
screenshots: install-dev
	./scripts/install-system-deps
	UPDATE_SCREENSHOTS=1 $(BIN)/pytest tests/browser

## The benchmark (10-15 minutes; not part of `make test`): see docs/performance.md
bench:
	./bench/run

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
