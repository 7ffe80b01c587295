# Two commands on a fresh clone: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MANAGE := $(PY) manage.py
# demo and serve use a database of their own (and in embedded mode a file of its
# own), so that the demo's reset never reaches the database real work is done in:
# `manage.py` commands use DATABASE_URL's (signing by default). `make demo
# DEMO_DATABASE=name` picks another.
DEMO_DATABASE ?= signing_demo
DEMO := SIGNING_DATABASE_NAME=$(DEMO_DATABASE)
# The file settings reads (and where `kek` and the embedded-mode decision are written).
ENV_FILE := $(or $(SIGNING_ENV_FILE),.env)

.PHONY: demo test install kek secrets db lint format workers serve chaos browser compose-cli clean

demo: install kek db  ## in its own database: seed, sign 100k records with 2 workers, audit
	$(DEMO) $(MANAGE) demo --reset

test: install browser compose-cli  ## the whole suite on the servers, then the backend tests again embedded
	$(VENV)/bin/pytest
	SIGNING_EMBEDDED=1 $(VENV)/bin/pytest -m backends

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	@echo "installing pinned dependencies into $(VENV) (log: $(VENV)/install.log)"
	@$(VENV)/bin/pip install --disable-pip-version-check -c constraints.txt -e ".[dev]" \
		> $(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; exit 1; }
	@touch $@

kek: install  ## write a random SIGNING_KEK to .env unless one is set already
	@if [ -n "$$SIGNING_KEK" ] || grep -qs '^SIGNING_KEK=' "$(ENV_FILE)"; then :; else \
		umask 077; if [ -s "$(ENV_FILE)" ] && [ -n "$$(tail -c 1 "$(ENV_FILE)")" ]; then echo >> "$(ENV_FILE)"; fi; \
		echo "SIGNING_KEK=$$($(PY) -c 'from keyring.sealing import generate_kek; print(generate_kek())')" >> "$(ENV_FILE)"; \
		echo "wrote a random SIGNING_KEK to $(ENV_FILE) (keep it: it opens the private keys)"; fi

# Every secret docker-compose.yml needs besides the KEK: random and URL-safe (BROKER_URL
# carries them), written only when neither the environment nor the env file has one.
COMPOSE_SECRETS := DJANGO_SECRET_KEY REDIS_PASSWORD RABBITMQ_PASSWORD POSTGRES_PASSWORD \
	SIGNING_DB_OWNER_PASSWORD SIGNING_DB_APP_PASSWORD

secrets: kek  ## write every secret docker-compose needs (the KEK too) to .env, keeping those set
	@umask 077; for name in $(COMPOSE_SECRETS); do \
		if [ -n "$${!name}" ] || grep -qs "^$$name=" "$(ENV_FILE)"; then continue; fi; \
		if [ -s "$(ENV_FILE)" ] && [ -n "$$(tail -c 1 "$(ENV_FILE)")" ]; then echo >> "$(ENV_FILE)"; fi; \
		echo "$$name=$$($(PYTHON) -c 'import secrets; print(secrets.token_hex(32))')" >> "$(ENV_FILE)"; \
		echo "wrote a random $$name to $(ENV_FILE)"; \
	done

db: install  ## create the demo's database if missing, then migrate (and the app role's grants)
	$(DEMO) $(MANAGE) ensure_db
	$(DEMO) $(MANAGE) migrate --noinput -v 0

serve: install kek db  ## the demo's dashboard on http://127.0.0.1:8000/ and 2 workers; Ctrl-C stops both
	$(DEMO) $(MANAGE) serve

workers: install kek  ## 2 worker processes in the foreground, on DATABASE_URL's database (for manage.py sign)
	$(MANAGE) ensure_db
	$(MANAGE) migrate --noinput -v 0
	$(MANAGE) rundramatiq --processes 2 --threads 4

chaos: install  ## kill and restart workers, Redis and PostgreSQL mid-run; print a table
	$(MANAGE) chaos

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

browser:  ## Debian's Chromium for the browser tests (installed when missing and root)
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then echo "installing chromium (apt)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium is missing and this is not root: the browser tests will be skipped"; fi; \
	fi

compose-cli:  ## docker-compose, to validate docker-compose.yml in the tests (installed when missing and root)
	@if ! command -v docker-compose >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then echo "installing docker-compose (apt)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
		else echo "docker-compose is missing and this is not root: the compose tests will be skipped"; fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis .demo .embedded test-artifacts
