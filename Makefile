# mh-platform — the commands. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
MHP := $(VENV)/bin/mhp
STAMP := $(VENV)/.installed
# semgrep pins click and jsonschema below the project's versions, so it lives in its own venv
TOOLS_VENV ?= .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed
SEMGREP := $(TOOLS_VENV)/bin/semgrep
SEMGREP_OFFLINE := --metrics off --disable-version-check  # no network: rules are local files
# T14 DAST tools (sqlmap, wapiti3) in their own venv, never in the app's: requirements/dast.txt
DAST_VENV ?= .venv-dast
DAST_STAMP := $(DAST_VENV)/.installed
DAST_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 5000
PYTEST_ARGS ?=

.PHONY: help install run test test-sqlite test-postgres lint static bench bench-deps browser-deps translations extract-messages \
  sbom manifest verify-manifest verify-manifest-recompile secrets-baseline clean \
  dast dast-deps

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) translations ## create .venv and install the project with its dev tools

translations: $(STAMP) ## compile the zh_CN/en message catalogs
	@if ls mh_platform/web/translations/*/LC_MESSAGES/messages.po >/dev/null 2>&1; then \
	  $(VENV)/bin/pybabel -q compile -d mh_platform/web/translations; fi

TRANSLATIONS := mh_platform/web/translations

extract-messages: $(STAMP) ## re-extract the strings (_, _l, and N_ for domain error messages) and update both catalogs
	$(VENV)/bin/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k N_ --no-location --no-wrap \
	  -o $(TRANSLATIONS)/messages.pot mh_platform
	$(VENV)/bin/pybabel update -i $(TRANSLATIONS)/messages.pot -d $(TRANSLATIONS) \
	  --no-fuzzy-matching --ignore-obsolete --no-wrap

var/master.key: | $(STAMP)
	mkdir -p var
	$(MHP) keys init --file var/master.key

run: install var/master.key ## migrate, seed the demo city if empty, serve on http://127.0.0.1:5000
	$(MHP) db upgrade
	$(MHP) demo seed --if-empty
	$(MHP) demo accounts
	$(MHP) serve --host $(HOST) --port $(PORT) --with-scheduler

browser-deps: ## Debian's chromium for the Playwright page tests
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

test: install browser-deps dast-deps ## the whole suite on SQLite, then on PostgreSQL when MHP_TEST_POSTGRES_URL is set
	$(MAKE) --no-print-directory test-sqlite
	@if [ -n "$$MHP_TEST_POSTGRES_URL" ]; then $(MAKE) --no-print-directory test-postgres; \
	 else echo "MHP_TEST_POSTGRES_URL not set: PostgreSQL run skipped (CI sets it)"; fi

test-sqlite: install $(DAST_STAMP)
	MHP_TEST_DB_URL= $(VENV)/bin/pytest -q $(PYTEST_ARGS)

test-postgres: install ## the database-backed tests again on PostgreSQL
	MHP_TEST_DB_URL=$$MHP_TEST_POSTGRES_URL $(VENV)/bin/pytest -q $(PYTEST_ARGS) \
	  tests/integration tests/migrations tests/web tests/jobs

$(TOOLS_STAMP): requirements/semgrep.txt
	test -x $(TOOLS_VENV)/bin/python || python3 -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install -q --require-hashes --no-deps -r requirements/semgrep.txt
	touch $(TOOLS_STAMP)

$(DAST_STAMP): requirements/dast.txt
	test -x $(DAST_VENV)/bin/python || python3 -m venv $(DAST_VENV)
	$(DAST_VENV)/bin/pip install -q --require-hashes --no-deps -r requirements/dast.txt
	touch $(DAST_STAMP)

dast-deps: $(DAST_STAMP) ## build .venv-dast (sqlmap, wapiti3) from the hash-pinned requirements/dast.txt

# T14 (docs/security_tests.md): the planted-defect controls, then sqlmap + wapiti as every role on SQLite,
# then on PostgreSQL when MHP_TEST_POSTGRES_URL is set; non-zero on any finding or tool error
dast: install $(DAST_STAMP) ## T14 DAST: controls, then sqlmap + wapiti per role on SQLite (and PostgreSQL) → build/dast/
	MHP_TEST_DB_URL= $(VENV)/bin/pytest -q -p no:cacheprovider -m dast tests/security/test_dast_controls.py
	timeout 14400 $(PY) scripts/dast.py scan --db sqlite --out build/dast/sqlite $(DAST_ARGS)
	@if [ -n "$$MHP_TEST_POSTGRES_URL" ]; then \
	  timeout 14400 $(PY) scripts/dast.py scan --db "$$MHP_TEST_POSTGRES_URL" --out build/dast/postgres $(DAST_ARGS); \
	 else echo "MHP_TEST_POSTGRES_URL not set: PostgreSQL DAST run skipped"; fi

# T23 (docs/security_tests.md): bandit medium/high, semgrep's rule tests then the scan, detect-secrets
define STATIC_CHECKS
	$(VENV)/bin/bandit -q -r mh_platform bench scripts -ll
	$(SEMGREP) --test $(SEMGREP_OFFLINE) -q --config .semgrep/python.yml .semgrep/python.py
	$(SEMGREP) --test $(SEMGREP_OFFLINE) -q --config .semgrep/templates.yml .semgrep/templates.html
	timeout 300 $(SEMGREP) scan $(SEMGREP_OFFLINE) --error -q --config .semgrep mh_platform migrations
	$(PY) scripts/check_secrets.py
endef

lint: install $(TOOLS_STAMP) ## ruff, mypy, the import contract, then the T23 static checks (bandit, semgrep, secrets)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy mh_platform/core mh_platform/crypto mh_platform/services
	$(VENV)/bin/lint-imports
	$(STATIC_CHECKS)

static: install $(TOOLS_STAMP) ## T23 only: bandit -ll, semgrep with the local rules (and their tests), detect-secrets
	$(STATIC_CHECKS)

secrets-baseline: install ## after a reviewed change: refresh .secrets.baseline (then audit new entries)
	$(VENV)/bin/detect-secrets scan --baseline .secrets.baseline

sbom: install ## CycloneDX SBOM of the environment → build/sbom.cdx.json (and of the hash-pinned runtime set)
	mkdir -p build
	$(VENV)/bin/cyclonedx-py environment $(PY) --pyproject pyproject.toml --output-reproducible -o build/sbom.cdx.json
	$(VENV)/bin/cyclonedx-py requirements requirements/app.txt --pyproject pyproject.toml --output-reproducible \
	  -o build/sbom-runtime.cdx.json
	@echo "SBOM: build/sbom.cdx.json (this environment), build/sbom-runtime.cdx.json (requirements/app.txt)"

manifest: ## release manifest: sha256 of every file of the mh_platform package → build/release-manifest.sha256
	mkdir -p build
	python3 scripts/release_manifest.py write build/release-manifest.sha256

verify-manifest: ## check a deployed tree against the manifest (ROOT=dir holding mh_platform/, MANIFEST=file); any bytecode fails
	python3 scripts/release_manifest.py verify $${MANIFEST:-build/release-manifest.sha256} $${ROOT:-.}

verify-manifest-recompile: ## deploy step: verify the sources, then replace all bytecode with pycs compiled from them (PYTHON=the app's interpreter)
	$${PYTHON:-python3} scripts/release_manifest.py verify --recompile $${MANIFEST:-build/release-manifest.sha256} $${ROOT:-.}

bench-deps: ## wrk (Debian package), the load generator of the mixed-traffic benchmark
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null)

bench: install bench-deps ## benchmarks against baselines measured in the same run → bench/results.json
	$(PY) -m bench.run $(BENCH)

clean:
	rm -rf var/*.sqlite3* .pytest_cache build/sbom*.cdx.json
