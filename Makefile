# Build and test tooling for the oauthops.toolkit collection. `make help` lists the targets;
# `make test` is what CI runs (.ci/run).
#
# Everything generated lands in .venv/ (the dev and test virtualenv) and tests/output/ (the demo's
# virtualenv, work trees, tarballs, docs); both are git-ignored and `make clean` removes them.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
OUTPUT := $(CURDIR)/tests/output
# `make demo` has a virtualenv of its own, from requirements-demo.txt only, so that a newcomer's
# first command never compiles anything and a demo that needs a test-only package fails here too.
DEMO_VENV := $(OUTPUT)/demo-venv
DEMO_STAMP := $(DEMO_VENV)/.requirements-installed
# Debian packages `make test` needs (make system-packages installs them as root, else says how):
# a C compiler and the MariaDB client headers to build mysqlclient; cron (crontab, the daemon) and
# procps (pgrep) for the cron tests; logrotate and systemd (systemd-analyze, systemctl --root; no systemd
# is started) for the token_cleanup role's log rotation and timer tests.
SYSTEM_PACKAGES := gcc libc6-dev pkg-config default-libmysqlclient-dev cron procps openssh-server sudo acl logrotate systemd
DIST := $(OUTPUT)/dist
EE_WORK := $(OUTPUT)/ee
DOCS := $(OUTPUT)/docs
# ansible-test needs the collection at .../ansible_collections/oauthops/toolkit and resolves
# symlinks (os.getcwd), so sanity runs on a copy of the files git would commit.
SANITY_TREE := $(OUTPUT)/collections/ansible_collections/oauthops/toolkit
# Playbooks that use oauthops.toolkit (make lint, make demo) resolve it from this checkout through
# a symlink: Ansible's collection loader follows it, and ansible-lint --offline installs nothing.
CHECKOUT_COLLECTIONS := $(OUTPUT)/checkout-collections
CHECKOUT_LINK := $(CHECKOUT_COLLECTIONS)/ansible_collections/oauthops/toolkit
# The venv's tools come first (ansible-lint warns otherwise); new-venv gives mkvenv the caller's
# PATH.
CALLER_PATH := $(PATH)
export PATH := $(BIN):$(PATH)
VENV_PYTHON_VERSION = $$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# Every recipe's Ansible commands see the suite's Ansible settings, never the caller's (their ANSIBLE_*
# variables, ./ansible.cfg, ~/.ansible.cfg, the collections in ~/.ansible): every inherited ANSIBLE_*
# variable is dropped and these four take their place, as tests/ansible_isolation.py does for pytest
# sessions and scripts run by hand (tests/unit/test_ansible_isolation.py checks that both agree).
# A target that needs collections still names its own ANSIBLE_COLLECTIONS_PATH. ansible-test keeps
# its venvs and pip bootstrap in ~/.ansible/test whatever ANSIBLE_HOME says.
$(foreach v,$(filter ANSIBLE_%,$(.VARIABLES)),$(eval unexport $(v)))
override ANSIBLE_HOME := $(OUTPUT)/ansible-home
override ANSIBLE_CONFIG := $(CURDIR)/tests/ansible.cfg
override ANSIBLE_COLLECTIONS_PATH := $(ANSIBLE_HOME)/collections
override ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := false
export ANSIBLE_HOME ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_SCAN_SYS_PATH

say := @printf '\n==> %s\n'

.PHONY: help system-packages venv unit integration matrix hosts sanity build ee docs-lint lint test demo docs bench release clean

help:
	@echo 'make system-packages'
	@echo '                  check the Debian packages make test needs; as root with apt, install them'
	@echo 'make venv         create .venv (newest Python >= 3.11 found, or PYTHON=...) from requirements-test.txt'
	@echo 'make unit         pytest tests/unit on each backend and model variant, and the cleanup differential'
	@echo '                  tests on every other DOT release they prove: sessions side by side (tests/tools/suite)'
	@echo 'make integration  pytest tests/integration: one session per backend, one per file of the rest'
	@echo 'make hosts        pytest tests/hosts: the installed tarball over SSH (loopback sshd), become_user; root only'
	@echo 'make matrix       modules, cleanup and cron job on every supported stack, cells side by side'
	@echo 'make sanity       ansible-test sanity, all tests, no ignore files, offline'
	@echo 'make build        build the tarball, render its module docs, run galaxy-importer on it'
	@echo 'make ee           ansible-builder introspect on the installed tarball, create on the README'"'"'s EE (offline)'
	@echo 'make docs-lint    antsibull-docs lint-collection-docs --plugin-docs, antsibull-changelog lint, and'
	@echo '                  CHANGELOG.rst is what changelogs/changelog.yaml renders (tests/tools/release check)'
	@echo 'make lint         ansible-lint --profile production'
	@echo 'make test         system-packages, venv, then every step above side by side (tests/tools/suite), a table'
	@echo '                  of each step'"'"'s time and tests at the end; stops at the first failure'
	@echo '                  (SUITE_ARGS="--jobs N --keep-going"; PYTEST_ADDOPTS reaches every pytest session)'
	@echo 'make demo         run playbooks/demo.yml in its own venv (requirements-demo.txt, wheels only)'
	@echo 'make docs         HTML docs with antsibull-docs and Sphinx into tests/output/docs/build/html'
	@echo 'make bench        cleanup engine vs cleartokens vs raw SQL; revoking 1M tokens vs raw SQL; one module task vs django.setup(); 200 applications:'
	@echo '                  one oauth_applications task vs a loop vs the floor; a task in a 600-migration project; 200 and'
	@echo '                  2,000 declared PBKDF2 secrets vs start-up + N check_password / cores (not a test)'
	@echo 'make release VERSION=X.Y.Z'
	@echo '                  galaxy.yml'"'"'s version, antsibull-changelog release, CHANGELOG.rst; commits nothing (docs/releasing.md)'
	@echo 'make clean        remove .venv and tests/output (the demo venv included)'

system-packages:
	tests/tools/system-packages $(SYSTEM_PACKAGES)

# $(call new-venv,DIR,MKVENV ARGUMENTS): tests/tools/mkvenv builds DIR (uv; MKVENV_PIP=1 for pip) on the
# newest Python >= 3.11 found, $PYTHON first, or reuses it while its stamp (interpreter, requirements,
# requirement files' contents) matches. mkvenv gets the caller's PATH so that it never picks the
# python of a venv it is about to replace.
define new-venv
PATH='$(CALLER_PATH)' tests/tools/mkvenv '$(1)' --python 3.11+ $${PYTHON:+--prefer "$$PYTHON"} $(2)
endef

venv: $(STAMP)

# Rebuilt from scratch when a requirements file's content changes (mkvenv's stamp), so a removed
# requirement goes away too. mysqlclient compiles, hence the system packages first.
$(STAMP): requirements-test.txt requirements-demo.txt meta/ee-requirements.txt
	tests/tools/system-packages $(SYSTEM_PACKAGES)
	$(say) "creating .venv from requirements-test.txt"
	$(call new-venv,$(VENV),--requirement requirements-test.txt)
	$(BIN)/python -m pip list --format=freeze 2>/dev/null \
	    | grep -iE '^(ansible-core|ansible-lint|django|django-oauth-toolkit|galaxy[-_]importer)=='
	touch '$@'

# The test steps run through tests/tools/suite: each is a set of jobs (a pytest session per backend,
# model variant and DOT release; a job per matrix cell; ...) run side by side, with a per-step table at
# the end. `tests/tools/suite --list` shows every job's command line, to run one by hand. SUITE_ARGS
# passes options on (--jobs N, --keep-going, --require-backends; CI=true implies the last).
SUITE = $(BIN)/python tests/tools/suite $(SUITE_ARGS)

unit: venv
	$(SUITE) unit

integration: venv
	$(SUITE) integration

# Needs root (it creates users, a sudo rule and /srv/oauthops-hosts-*), openssh-server, sudo and acl.
hosts: venv
	$(SUITE) hosts

# Each cell builds its own virtualenvs under tests/output/matrix (once) from pyenv's or PATH's Pythons;
# `tests/tools/run-matrix --list` shows the cells, `tests/tools/run-matrix CELL` runs one.
matrix: venv
	$(SUITE) matrix

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

# $(call build-collection,DIR): build the tarball into DIR and install it into DIR/installed.
define build-collection
$(say) "building the collection into $(1), installing it into $(1)/installed"
rm -rf '$(1)' && mkdir -p '$(1)'
$(BIN)/ansible-galaxy collection build --output-path '$(1)' .
ANSIBLE_COLLECTIONS_PATH='$(1)/installed' $(BIN)/ansible-galaxy collection install --force -p '$(1)/installed' '$(1)'/oauthops-toolkit-*.tar.gz
endef

build: venv
	$(call build-collection,$(DIST))
	$(say) "rendering the installed tarball's module docs"
	@cd '$(DIST)' && export ANSIBLE_COLLECTIONS_PATH='$(DIST)/installed'; \
	    modules="$$($(BIN)/ansible-doc -t module --list --json oauthops.toolkit \
	        | $(BIN)/python -c 'import json, sys; print(" ".join(sorted(json.load(sys.stdin))))')"; \
	    echo "modules in the tarball: $$modules"; \
	    case " $$modules " in *' oauthops.toolkit.oauth_application '*) ;; \
	        *) echo 'ERROR: oauthops.toolkit.oauth_application is not in the built collection' >&2; exit 1;; esac; \
	    $(BIN)/ansible-doc -t module $$modules > module-docs.txt; \
	    echo "rendered $$(wc -l < module-docs.txt) lines of module docs into $(DIST)/module-docs.txt"
	$(say) "publish gate: the rendered changelog, galaxy-importer (its ansible-test step is off: see tests/tools/galaxy-importer.cfg)"
	@# It reports lint findings as WARNING and real problems as ERROR; only the exit status and
	@# ERROR lines fail the build. While galaxy.yml has no repository the importer checks a copy
	@# that has one, with a WARNING (tests/tools/publish-gate; PUBLISH_GATE_ARGS=--for-upload refuses).
	cd '$(DIST)' && $(BIN)/python '$(CURDIR)/tests/tools/publish-gate' $(PUBLISH_GATE_ARGS) \
	    --config '$(CURDIR)/tests/tools/galaxy-importer.cfg' oauthops-toolkit-*.tar.gz | tee importer.log
	@if grep -E '^(ERROR|CRITICAL):' '$(DIST)/importer.log'; then \
	    echo 'ERROR: galaxy-importer reported the errors above' >&2; exit 1; fi

$(CHECKOUT_LINK):
	mkdir -p '$(dir $@)' && ln -sfn '$(CURDIR)' '$@'

# What ansible-builder makes of the collection, offline: introspect on the installed tarball, create
# on the README's execution environment definition, and the image build's galaxy-install and
# introspect steps replayed on the context create wrote (tests/tools/ee-check says more).
ee: venv
	$(call build-collection,$(EE_WORK))
	$(say) "ansible-builder introspect and create"
	$(BIN)/python tests/tools/ee-check --tarball "$$(ls '$(EE_WORK)'/oauthops-toolkit-*.tar.gz)" \
	    --installed '$(EE_WORK)/installed' --readme README.md --work '$(EE_WORK)/builder'

# The Ansible community's own gates. antsibull-docs checks what the docsite build would render
# (markup, references, RST) for every plugin and role, run on the checkout as its docs say (it copies
# the files git knows into a collection tree of its own). References to collections it can find
# (ansible.builtin, this one) are all validated, not only this collection's.
docs-lint: venv
	$(say) "antsibull-docs lint-collection-docs --plugin-docs"
	$(BIN)/antsibull-docs lint-collection-docs --plugin-docs --validate-collection-refs all .
	$(say) "antsibull-changelog lint (the fragments) and lint-changelog-yaml --strict"
	$(BIN)/antsibull-changelog lint
	$(BIN)/antsibull-changelog lint-changelog-yaml --strict changelogs/changelog.yaml
	$(say) "release metadata: CHANGELOG.rst is what changelog.yaml renders, galaxy.yml's version (tests/tools/release)"
	$(BIN)/python tests/tools/release check

# A release (docs/releasing.md): galaxy.yml's version, the fragments into changelogs/changelog.yaml, the
# rendered changelog; then `make docs-lint`'s release check. It commits nothing.
release: venv
	@if [ -z '$(VERSION)' ]; then echo 'usage: make release VERSION=X.Y.Z' >&2; exit 2; fi
	$(say) "releasing $(VERSION)"
	$(BIN)/python tests/tools/release prepare '$(VERSION)'

lint: venv $(CHECKOUT_LINK)
	$(say) "ansible-lint --profile production"
	ANSIBLE_COLLECTIONS_PATH='$(CHECKOUT_COLLECTIONS)' $(BIN)/ansible-lint --profile production

# Every step side by side (tests/tools/suite); the first failure stops new jobs from starting.
test: system-packages
	@$(MAKE) --no-print-directory venv
	$(SUITE)

# Wheels only: the demo promises a machine with nothing but Python, and a requirement that would
# compile (or need headers) fails here, on every machine, instead of on a newcomer's.
$(DEMO_STAMP): requirements-demo.txt meta/ee-requirements.txt
	$(say) "creating $(DEMO_VENV) from requirements-demo.txt (wheels only)"
	$(call new-venv,$(DEMO_VENV),--only-binary --requirement requirements-demo.txt)
	$(DEMO_VENV)/bin/python -m pip list --format=freeze 2>/dev/null \
	    | grep -iE '^(ansible-core|django|django-oauth-toolkit)=='
	touch '$@'

demo: $(DEMO_STAMP) $(CHECKOUT_LINK)
	$(say) "running the demo playbook"
	ANSIBLE_COLLECTIONS_PATH='$(CHECKOUT_COLLECTIONS)' \
	    $(DEMO_VENV)/bin/ansible-playbook -i playbooks/inventory/demo.ini playbooks/demo.yml

# The collection's HTML docs as antsibull-docs makes them: sphinx-init writes a Sphinx site
# (conf.py, build.sh), build.sh renders the plugin and role docs from the checkout to RST and runs
# Sphinx with -W. Sphinx tries the intersphinx inventories online first; offline it falls back to
# the local files tests/tools/docs-offline-inventories writes where conf.py looks for them.
docs: venv $(CHECKOUT_LINK)
	$(say) "antsibull-docs sphinx-init into $(DOCS)"
	rm -rf '$(DOCS)' && mkdir -p '$(OUTPUT)' && mkdir -m 0755 '$(DOCS)'
	$(BIN)/antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error \
	    --project oauthops.toolkit --copyright 'oauthops.toolkit contributors' \
	    --title 'oauthops.toolkit' --html-short-title 'oauthops.toolkit' \
	    --dest-dir '$(DOCS)' oauthops.toolkit
	$(BIN)/python tests/tools/docs-offline-inventories '$(DOCS)'
	$(say) "building the docs (build.sh: antsibull-docs collection, sphinx-build -W)"
	ANSIBLE_COLLECTIONS_PATH='$(CHECKOUT_COLLECTIONS)' '$(DOCS)/build.sh'
	@echo 'the docs: $(DOCS)/build/html/index.html'

# Benchmarks print ratios measured within one run; they are not part of `make test`.
bench: venv
	$(say) "token cleanup: engine vs manage.py cleartokens vs raw set-based SQL, per backend and size"
	$(BIN)/python tests/bench/cleanup_bench.py $(BENCH_ARGS)
	$(say) "token revocation: every token of one application (1M access tokens), engine vs raw set-based SQL, per backend"
	$(BIN)/python tests/bench/revoke_bench.py $(REVOKE_BENCH_ARGS)
	$(say) "one oauth_application task vs a bare django.setup()"
	$(BIN)/python tests/bench/application_task.py
	$(say) "200 unchanged applications: one oauth_applications task vs a loop of oauth_application vs the floor; one task in a project with 30 apps x 20 migrations"
	$(BIN)/python tests/bench/fleet_bench.py $(FLEET_BENCH_ARGS)
	$(say) "200 and 2,000 applications declaring their secrets, real PBKDF2: one oauth_applications task vs start-up + N check_password / cores"
	$(BIN)/python tests/bench/secrets_bench.py $(SECRETS_BENCH_ARGS)

clean:
	$(say) "removing .venv and tests/output"
	rm -rf '$(VENV)' '$(VENV).lock' '$(OUTPUT)' .pytest_cache
