# Parlor — the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-dev lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Command one: install, migrate, create the demo login and serve on http://$(HOST):$(PORT)
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

## Command two: install everything the tests need and run the whole suite. The tests use
## their own services (config/settings/test.py): no .env, and none of the app's Redis or LLM
## even when the shell exports them. Any failing step fails it, pytest's 5 (no tests) too.
test: TEST_ENV = env -u REDIS_URL -u LLM_BASE_URL -u OPENAI_API_KEY \
	DJANGO_SETTINGS_MODULE=config.settings.test
test: install-dev
	bash scripts/ensure-chromium.sh
	$(BIN)/ruff check .
	$(TEST_ENV) $(BIN)/python manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install-dev
	$(BIN)/python -m bench
