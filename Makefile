# Build and test tooling for the oauthops.toolkit collection. `make help` lists the targets;
# `make test` is what CI runs (.ci/run).
#
# Everything generated lands in .venv/ (the dev virtualenv) and tests/output/ (work trees,
# tarballs); both are git-ignored and `make clean` removes them.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
OUTPUT := $(CURDIR)/tests/output
DIST := $(OUTPUT)/dist
# ansible-test needs the collection at .../ansible_collections/oauthops/toolkit and resolves
# symlinks (os.getcwd), so sanity runs on a copy of the files git would commit.
SANITY_TREE := $(OUTPUT)/collections/ansible_collections/oauthops/toolkit
# Playbooks that use oauthops.toolkit (make lint, make demo) resolve it from this checkout through
# a symlink: Ansible's collection loader follows it, and ansible-lint --offline installs nothing.
CHECKOUT_COLLECTIONS := $(OUTPUT)/checkout-collections
CHECKOUT_LINK := $(CHECKOUT_COLLECTIONS)/ansible_collections/oauthops/toolkit
# The venv's tools come first (ansible-lint warns otherwise), but find-python gets the caller's
# PATH so it never picks the python of the venv it is about to replace.
CALLER_PATH := $(PATH)
export PATH := $(BIN):$(PATH)
VENV_PYTHON_VERSION = $$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')

say := @printf '\n==> %s\n'

.PHONY: help venv unit integration matrix sanity build lint test demo bench clean

help:
	@echo 'make venv         create .venv (newest Python >= 3.11 found, or PYTHON=...) from requirements.txt'
	@echo 'make unit         pytest tests/unit on each backend, and the cleanup differential tests on DOT 2.4.0'
	@echo 'make integration  pytest tests/integration  (PYTEST_ADDOPTS is passed through)'
	@echo 'make matrix       modules, cleanup and cron job on every supported stack (MATRIX_CELLS=name... for some)'
	@echo 'make sanity       ansible-test sanity, all tests, no ignore files, offline'
	@echo 'make build        build the tarball, render its module docs, run galaxy-importer on it'
	@echo 'make lint         ansible-lint --profile production'
	@echo 'make test         venv, then unit integration matrix sanity build lint; stops at the first failure'
	@echo 'make demo         run playbooks/demo.yml'
	@echo 'make bench        cleanup engine vs cleartokens vs raw SQL; one module task vs django.setup() (not a test)'
	@echo 'make clean        remove .venv and tests/output'

venv: $(STAMP)

# Rebuilt from scratch when requirements.txt changes, so a removed requirement goes away too.
$(STAMP): requirements.txt
	$(say) "creating .venv from requirements.txt"
	python="$$(PATH='$(CALLER_PATH)' tests/tools/find-python)"; \
	    echo "using $$python ($$("$$python" --version))"; \
	    rm -rf '$(VENV)'; \
	    "$$python" -m venv '$(VENV)'
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --requirement requirements.txt
	$(BIN)/python -m pip check
	$(BIN)/python -m pip list --format=freeze 2>/dev/null \
	    | grep -iE '^(ansible-core|ansible-lint|django|django-oauth-toolkit|galaxy[-_]importer)=='
	touch '$@'

# Django is set up once per process, so each backend is its own pytest session; the
# differential cleanup tests also run against the oldest DOT release we support.
unit: venv
	$(say) "unit tests on SQLite, PostgreSQL and MariaDB"
	UNIT_PYTHON='$(BIN)/python' tests/tools/run-unit
	$(say) "differential cleanup tests against DOT 2.4.0 (its own virtualenv)"
	tests/tools/run-unit --dot 2.4.0

integration: venv
	$(say) "integration tests: pytest tests/integration"
	$(BIN)/python -m pytest tests/integration

# Each cell builds its own virtualenvs under tests/output/matrix (once) from pyenv's or PATH's Pythons,
# so it needs no .venv; `tests/tools/run-matrix --list` shows the cells.
matrix:
	$(say) "version matrix: controllers, target Pythons and Django/DOT stacks, on SQLite"
	tests/tools/run-matrix $(MATRIX_CELLS)

sanity: venv
	$(say) "copying the collection's files (git ls-files, untracked included) to $(SANITY_TREE)"
	rm -rf '$(SANITY_TREE)' && mkdir -p '$(SANITY_TREE)'
	git ls-files -z --cached --others --exclude-standard \
	    | tar --create --null --files-from=- --ignore-failed-read --file=- \
	    | tar --extract --file=- --directory='$(SANITY_TREE)'
	@# Without a .git of its own ansible-test finds this repository's, where tests/output/ is
	@# ignored, and then skips every file.
	git -C '$(SANITY_TREE)' init --quiet
	$(say) "making ansible-test's pip bootstrap work offline"
	$(BIN)/python tests/tools/ansible-test-offline
	$(say) "ansible-test sanity on Python $(VENV_PYTHON_VERSION)"
	cd '$(SANITY_TREE)' && $(BIN)/ansible-test sanity --requirements --python "$(VENV_PYTHON_VERSION)"

build: venv
	$(say) "building the collection into $(DIST)"
	rm -rf '$(DIST)' && mkdir -p '$(DIST)'
	$(BIN)/ansible-galaxy collection build --output-path '$(DIST)' .
	$(say) "installing the tarball into an empty collections path and rendering its module docs"
	ANSIBLE_COLLECTIONS_PATH='$(DIST)/installed' $(BIN)/ansible-galaxy collection install --force -p '$(DIST)/installed' '$(DIST)'/oauthops-toolkit-*.tar.gz
	@cd '$(DIST)' && export ANSIBLE_COLLECTIONS_PATH='$(DIST)/installed' ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false; \
	    modules="$$($(BIN)/ansible-doc -t module --list --json oauthops.toolkit \
	        | $(BIN)/python -c 'import json, sys; print(" ".join(sorted(json.load(sys.stdin))))')"; \
	    echo "modules in the tarball: $$modules"; \
	    case " $$modules " in *' oauthops.toolkit.oauth_application '*) ;; \
	        *) echo 'ERROR: oauthops.toolkit.oauth_application is not in the built collection' >&2; exit 1;; esac; \
	    $(BIN)/ansible-doc -t module $$modules > module-docs.txt; \
	    echo "rendered $$(wc -l < module-docs.txt) lines of module docs into $(DIST)/module-docs.txt"
	$(say) "galaxy-importer on the tarball (its ansible-test step is off: see tests/tools/galaxy-importer.cfg)"
	@# It reports lint findings as WARNING and real problems as ERROR; only the exit status and
	@# ERROR lines fail the build.
	cd '$(DIST)' && GALAXY_IMPORTER_CONFIG='$(CURDIR)/tests/tools/galaxy-importer.cfg' \
	    $(BIN)/python -m galaxy_importer.main oauthops-toolkit-*.tar.gz | tee importer.log
	@if grep -E '^(ERROR|CRITICAL):' '$(DIST)/importer.log'; then \
	    echo 'ERROR: galaxy-importer reported the errors above' >&2; exit 1; fi

$(CHECKOUT_LINK):
	mkdir -p '$(dir $@)' && ln -sfn '$(CURDIR)' '$@'

lint: venv $(CHECKOUT_LINK)
	$(say) "ansible-lint --profile production"
	ANSIBLE_COLLECTIONS_PATH='$(CHECKOUT_COLLECTIONS)' $(BIN)/ansible-lint --profile production

# Sub-makes run one at a time, in this order, and the first failure stops the run.
test: venv
	@for target in unit integration matrix sanity build lint; do \
	    start=$$SECONDS; \
	    $(MAKE) --no-print-directory "$$target" \
	        || { printf '\n*** make test: %s FAILED (see above) ***\n' "$$target" >&2; exit 1; }; \
	    printf '==> %s passed in %d s\n' "$$target" "$$((SECONDS - start))"; \
	done
	$(say) "make test: unit integration matrix sanity build lint all passed"

demo: venv $(CHECKOUT_LINK)
	$(say) "running the demo playbook"
	ANSIBLE_COLLECTIONS_PATH='$(CHECKOUT_COLLECTIONS)' \
	    $(BIN)/ansible-playbook -i playbooks/inventory/demo.ini playbooks/demo.yml

# Benchmarks print ratios measured within one run; they are not part of `make test`.
bench: venv
	$(say) "token cleanup: engine vs manage.py cleartokens vs raw set-based SQL, per backend and size"
	$(BIN)/python tests/bench/cleanup_bench.py $(BENCH_ARGS)
	$(say) "one oauth_application task vs a bare django.setup()"
	$(BIN)/python tests/bench/application_task.py

clean:
	$(say) "removing .venv and tests/output"
	rm -rf '$(VENV)' '$(OUTPUT)' .pytest_cache
