# Parlor — the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install install-dev lint bench serve-prod

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

## Production on this machine (SPEC 4.6): nginx on $(PORT) (8080 unless PORT is set) in
## front of $(WORKERS) uvicorn workers, with the production settings from the environment
## (or .env): PostgreSQL at DATABASE_URL and Redis at REDIS_URL; SECURE_SSL_REDIRECT=false
## for plain HTTP. Migrates and collects the static files first; in the foreground until
## ^C, which stops the workers (they drain) and then nginx. Needs Debian's nginx
## (scripts/ensure-nginx.sh installs it as root).
WORKERS ?= 2
serve-prod: SERVE_PROD_PORT = $(if $(filter file,$(origin PORT)),8080,$(PORT))
serve-prod: install
	exec $(BIN)/python deploy/serve_prod.py --port $(SERVE_PROD_PORT) --workers $(WORKERS) --migrate
