# Two commands on a fresh clone: `make demo` and `make test`. Everything else is a helper.
SHELL := /bin/bash
# The interpreter the venv is built with (`make demo PYTHON=python3.12`, or a path; the venv
# keeps it until PYTHON names another); one of PYTHON_VERSIONS, which keeps in step with
# requires-python in pyproject.toml (a test checks).
PYTHON ?= python3
PYTHON_VERSIONS := 3.11 3.12 3.13
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

.PHONY: demo test install kek secrets db lint format workers serve chaos browser compose-cli api-tools clean

demo: install kek db  ## in its own database: seed, sign 100k records with 2 workers, audit
	$(DEMO) $(MANAGE) demo --reset

# `make test` in two stages, so that it takes less than the sum of its parts on two cores
# (docs/development.md#how-make-test-runs):
# 1. Side by side, each into its own log: the suite on the servers without the chaos trials
#    (after installing `make api-tools`, which tests/contract needs), and the `backends` tests embedded
#    (SQLite files of their own, the in-process broker: no server, nothing shared with the
#    other part). Much of either waits on fsync, a subprocess or a server, not on a core.
# 2. The chaos trials alone: they time real runs on 3 s leases against deadlines, so nothing
#    else competes with them for the cores.
# Every part runs whatever the others did; `make test` fails if any failed.
TEST_LOGS := test-artifacts
test: install browser compose-cli  ## the whole suite on the servers, and the backend tests again embedded
	@mkdir -p $(TEST_LOGS); start=$$SECONDS; \
	echo "== the suite on the servers without the chaos trials, beside the backend tests embedded (output in $(TEST_LOGS)/test-servers.log, $(TEST_LOGS)/test-embedded.log)"; \
	SIGNING_EMBEDDED=1 $(VENV)/bin/pytest -p no:cacheprovider -m backends \
		> $(TEST_LOGS)/test-embedded.log 2>&1 & embedded=$$!; \
	( $(INSTALL_API_TOOLS) && $(VENV)/bin/pytest --ignore=tests/chaos ) \
		> $(TEST_LOGS)/test-servers.log 2>&1; servers=$$?; \
	wait $$embedded; embedded=$$?; failed=0; \
	for part in servers embedded; do \
		if [ "$${!part}" = 0 ]; then result=passed; else result=FAILED; failed=1; fi; \
		echo "== $$part: $$result"; cat $(TEST_LOGS)/test-$$part.log; \
	done; \
	echo "== both took $$((SECONDS - start)) s; now the chaos trials alone"; chaos=$$SECONDS; \
	$(VENV)/bin/pytest tests/chaos || failed=1; \
	echo "== the chaos trials took $$((SECONDS - chaos)) s, make test $$((SECONDS - start)) s"; \
	exit $$failed

.PHONY: unit test-pythons
unit: install  ## the unit tests only (no servers)
	$(VENV)/bin/pytest tests/unit

# CI, after `make test` on the default Python: `make demo` and the unit tests on each other
# supported Python found (on PATH, else pyenv's newest), each in a venv of its own
# (.venv-3.12, ...) and a demo database of its own ($(DEMO_DATABASE)_py312, ...).
OTHER_PYTHONS := $(filter-out $(firstword $(PYTHON_VERSIONS)),$(PYTHON_VERSIONS))
# Side by side (installs wait on the network and the disk while the other demo signs), each
# in a venv, a demo database and a Redis database of its own, so neither's workers take the
# other's messages; each one's output is printed whole once both are done.
test-pythons:  ## make demo and the unit tests on Python $(OTHER_PYTHONS), side by side, timed
	@mkdir -p test-artifacts; start=$$SECONDS; jobs=""; redis_db=2; \
	for version in $(OTHER_PYTHONS); do \
		python="$$(python$$version -c 'import sys; print(sys.executable)' 2>/dev/null)" \
			|| python="$$(command -v pyenv >/dev/null && ls -d "$$(pyenv root)/versions/$$(pyenv latest $$version 2>/dev/null)/bin/python$$version" 2>/dev/null)" \
			|| { echo "== Python $$version: not installed here (no python$$version on PATH, nor in pyenv), skipped"; continue; }; \
		log=test-artifacts/python-$$version.log; \
		echo "== Python $$version: $$python (output in $$log)"; \
		BROKER_URL=redis://127.0.0.1:6379/$$redis_db $(MAKE) --no-print-directory demo unit \
			PYTHON="$$python" VENV=.venv-$$version DEMO_DATABASE=$(DEMO_DATABASE)_py$${version/./} \
			> $$log 2>&1 & jobs="$$jobs $$!:$$version"; redis_db=$$((redis_db + 1)); \
	done; \
	failed=0; for job in $$jobs; do \
		if wait $${job%%:*}; then result=passed; else result=FAILED; failed=1; fi; \
		echo "== Python $${job#*:}: $$result"; cat test-artifacts/python-$${job#*:}.log; \
	done; \
	echo "== install, demo and unit tests on Python $(OTHER_PYTHONS) took $$((SECONDS - start)) s"; \
	exit $$failed

# Runs on every make. The interpreter: PYTHON when given, else the one the venv was built with
# (its stamp holds "version realpath") while it still runs, else python3. Refuses a version
# outside PYTHON_VERSIONS; removes and rebuilds the venv when the interpreter is not the
# stamp's, or when it has no stamp (the stamp is written last, so an install that failed or
# was stopped leaves none); reinstalls when the pins changed.
install:  ## $(VENV), built with PYTHON (3.11 to 3.13), with every pin of constraints.txt
	@set -e; \
	python='$(PYTHON)'; built="$$(cat $(VENV)/.installed 2>/dev/null || :)"; \
	if [ "$(origin PYTHON)" = file ] && [ -n "$$built" ] && "$${built#* }" -c '' >/dev/null 2>&1; then \
		python="$${built#* }"; fi; \
	if ! found="$$("$$python" -c 'import os, sys; print("%d.%d.%d %s" % (sys.version_info[:3] + (os.path.realpath(sys.executable),)))' 2>&1)"; then \
		echo "PYTHON=$$python does not run: $$found" >&2; exit 1; fi; \
	version="$${found%% *}"; \
	case " $(PYTHON_VERSIONS) " in *" $${version%.*} "*) ;; *) \
		echo "PYTHON=$$python is Python $$version ($${found#* }), which this project does not support: use Python $(firstword $(PYTHON_VERSIONS)) to $(lastword $(PYTHON_VERSIONS)), e.g. make demo PYTHON=python$(lastword $(PYTHON_VERSIONS))" >&2; \
		exit 1;; esac; \
	if [ -d $(VENV) ] && [ -z "$$built" ]; then \
		echo "$(VENV) holds no finished install (one failed or was stopped): removing it and building it again with Python $$found"; \
		rm -rf $(VENV); \
	elif [ -d $(VENV) ] && [ "$$built" != "$$found" ]; then \
		echo "$(VENV) was built with Python $$built, not $$found: removing it and building it again"; \
		rm -rf $(VENV); fi; \
	if [ ! -e $(VENV)/.installed ] || [ pyproject.toml -nt $(VENV)/.installed ] || [ constraints.txt -nt $(VENV)/.installed ]; then \
		"$$python" -m venv $(VENV); \
		echo "installing pinned dependencies into $(VENV) with Python $$version (log: $(VENV)/install.log)"; \
		$(VENV)/bin/pip install --disable-pip-version-check -c constraints.txt -e ".[dev]" \
			> $(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log; exit 1; }; \
		echo "$$found" > $(VENV)/.installed; fi

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

# Where `make serve` listens: ADDR:PORT or PORT, as `manage.py serve` (runserver) takes it.
# Another address than a loopback one needs the production settings (docs/deployment.md).
# Given on make's command line only (`make serve ADDR=...`): `=`, not `?=`, so an ADDR
# exported in the shell for something else is never picked up silently (a command-line
# variable overrides this; the environment does not).
ADDR = 127.0.0.1:8000

serve: install kek db  ## the demo's dashboard on http://$(ADDR)/ (make serve ADDR=127.0.0.1:8080) and 2 workers; Ctrl-C stops both
	$(DEMO) $(MANAGE) serve $(ADDR)

workers: install kek  ## 2 worker processes in the foreground, on DATABASE_URL's database (for manage.py sign)
	$(MANAGE) ensure_db
	$(MANAGE) migrate --noinput -v 0
	$(MANAGE) rundramatiq --processes 2 --threads 4

chaos: install  ## kill and restart workers, Redis and PostgreSQL mid-run; print a table
	$(MANAGE) chaos

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

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

# The API contract tests' tools (tests/contract): a client generator and a schema validator,
# in a venv of their own with every package pinned (their pins are not the service's).
API_TOOLS := .venv-api-tools
# One shell command, which `make test` runs beside the embedded tests (not `$(MAKE) api-tools`:
# `make -n test` would run that line, and with it the tests).
INSTALL_API_TOOLS = if [ ! -e $(API_TOOLS)/.installed ] || [ tools/api-tools/requirements.txt -nt $(API_TOOLS)/.installed ]; then \
		rm -rf $(API_TOOLS); "$$(cut -d' ' -f2 $(VENV)/.installed)" -m venv $(API_TOOLS); \
		echo "installing the API contract tools into $(API_TOOLS) (log: $(API_TOOLS)/install.log)"; \
		$(API_TOOLS)/bin/pip install --disable-pip-version-check -r tools/api-tools/requirements.txt \
			> $(API_TOOLS)/install.log 2>&1 || { tail -n 40 $(API_TOOLS)/install.log; exit 1; }; \
		touch $(API_TOOLS)/.installed; fi
api-tools: install  ## $(API_TOOLS): openapi-python-client and openapi-spec-validator, pinned
	@$(INSTALL_API_TOOLS)

clean:  ## remove the venvs (.venv, .venv-3.x, .venv-api-tools), caches, demo and embedded files, test artifacts
	rm -rf $(sort $(VENV) .venv) .venv-3.* $(API_TOOLS) .pytest_cache .ruff_cache .hypothesis .demo .embedded test-artifacts
