"""Shared pytest wiring: the suite's options, a time limit for every test, the hasher, and a loud line for
every backend not tested.

Variants are chosen the pytest way (`pytest --help` lists them under "oauthops.toolkit"):

    --backend NAME          sqlite, postgresql or mysql; repeat it for several (integration default: all
                            three; a unit session runs on one, default sqlite)
    --require-backends      a backend that cannot be reached fails the run instead of skipping (CI)
    --models VARIANT        unit: the project's models for this session: stock, custom-user (a user model
                            that logs in by email and a swapped application model), swapped-tokens or
                            routed (DOT on a second database, alias 'oauth', by the project's router)
    --hasher fast|real      fast (default): MD5 hashes client secrets, except in tests marked real_hasher
                            on SQLite;
                            real: the project's default hasher (PBKDF2) in every test
    --random-graphs N       how many random token graphs the differential cleanup tests try (default 120)
    --expect-rules NAME     the rule set the installed DOT's clear_expired() must be recognised as
    --property-seed N       replay the integration property test's random sets
    --dot-source DIR        unit: also run the fallback test on this DOT source (e.g. its main branch)
    --project-python PATH   integration: the project's interpreter (default: the one running pytest)
    --ansible-playbook PATH, --target-python PATH   a matrix cell's controller and target (tests/tools/run-matrix)

Environment variables remain only where the Django project under test (a child process) reads them; they
are listed in one place, tests/django_project/testproject/settings.py. The caller's ANSIBLE_* variables are
ignored: every session runs its Ansible commands with the suite's settings (tests/ansible_isolation.py).
"""

import os
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ansible_isolation  # noqa: E402
import dbservers  # noqa: E402
import leftovers  # noqa: E402
import provisioning  # noqa: E402
from provisioning import BACKENDS, untested  # noqa: E402

# This session's tag, now: every process the session starts from here on carries it (tests/leftovers.py).
leftovers.session_tag()

# The test project reads DATABASE_URL where no OAUTHOPS_TEST_DB names its database (the README's examples pass
# one): a DATABASE_URL of the caller's, pointing at their own database, never reaches it.
os.environ.pop("DATABASE_URL", None)

# Seconds one test may take, setup and teardown included: generous for the slowest one (the cron
# daemon test waits up to ~4 minutes) on a loaded machine, and still far inside CI's limit.
TEST_TIMEOUT = 600
MODEL_VARIANTS = ("stock", "custom-user", "swapped-tokens", "routed")

MARKERS = (
    "real_hasher: on SQLite, hashes or verifies client secrets with the project's default hasher (PBKDF2), not "
    "MD5: each path that hashes or verifies keeps at least one such test",
    "one_backend: the outcome cannot depend on the database (what is tested happens on the controller, or "
    "before the database is written, and the unit tests prove the database side on every backend): runs on "
    "SQLite only",
    "models(variant): runs only in a unit session whose --models is this variant",
    "backends(name, ...): an integration test that uses a test database runs only on these backends (of those "
    "selected)",
    "database: (set by tests/integration/conftest.py) uses a test database, so runs once per selected backend",
)


def _backends(value):
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        raise pytest.UsageError("--backend: unknown %s (choose from %s)" % (", ".join(unknown), ", ".join(BACKENDS)))
    return names


def pytest_addoption(parser):
    group = parser.getgroup("oauthops", "oauthops.toolkit test variants")
    group.addoption("--backend", action="append", default=[], metavar="NAME",
                    help="database backend(s): sqlite, postgresql, mysql; repeat or comma-separate "
                         "(integration default: all; unit: one per session, default sqlite)")
    group.addoption("--require-backends", action="store_true",
                    help="fail, instead of skipping, when a selected backend's server cannot be reached (CI)")
    group.addoption("--models", choices=MODEL_VARIANTS, default="stock",
                    help="unit: the project's model variant for this session (default stock)")
    group.addoption("--hasher", choices=("fast", "real"), default="fast",
                    help="fast: MD5 except in tests marked real_hasher (default); real: the project's default hasher everywhere")
    group.addoption("--random-graphs", type=int, default=120, metavar="N",
                    help="random token graphs per differential cleanup session (default 120)")
    group.addoption("--expect-rules", metavar="NAME",
                    help="the rule set the installed DOT's clear_expired() must be recognised as (e.g. clear_expired for DOT's main branch)")
    group.addoption("--property-seed", type=int, metavar="N", help="replay the integration property test's random sets")
    group.addoption("--project-python", metavar="PATH",
                    help="integration: the Django project's interpreter the modules start (default: this one; the suite "
                         "passes a virtualenv with only Django, DOT and the drivers)")
    group.addoption("--ansible-playbook", metavar="PATH", help="matrix cell: the controller's ansible-playbook")
    group.addoption("--target-python", metavar="PATH", help="matrix cell: the interpreter Ansible runs the modules with")
    group.addoption("--dot-source", metavar="DIR",
                    help="also prove the cleanup's fallback on this DOT (a source tree or a git repository, e.g. its main branch)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """A hang fails its test (pytest-timeout dumps every thread's stack) instead of stalling CI.

    --timeout, PYTEST_TIMEOUT or a timeout marker still choose another limit.

    Every subprocess inherits the suite's Ansible settings in place of the caller's (tests/ansible_isolation.py).
    """
    config.oauthops_ansible_note = ansible_isolation.ignored_note(ansible_isolation.isolate())
    if not config.pluginmanager.hasplugin("timeout"):
        raise pytest.UsageError(
            "pytest-timeout is not installed in %s (pip install pytest-timeout): every test needs a time limit"
            % sys.prefix
        )
    if config.getoption("timeout") is None and not os.environ.get("PYTEST_TIMEOUT"):
        config.option.timeout = TEST_TIMEOUT
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    selected = []
    for value in config.getoption("backend"):
        selected += [name for name in _backends(value) if name not in selected]
    config.oauthops_backends = selected
    if config.getoption("require_backends"):
        provisioning.required.update(selected or BACKENDS)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)


def _stop_on_sigterm(signum, _frame):
    """SIGTERM (tests/tools/suite stopping a job, CI's time limit) ends the session as Ctrl-C does: every
    fixture's teardown runs, so nothing the session made on the machine stays."""
    signal.signal(signum, signal.SIG_DFL)
    raise KeyboardInterrupt("SIGTERM")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    """After every fixture's teardown (pytest's own sessionfinish runs it, also after Ctrl-C): nothing of
    this session's may be left on the machine. What is left is removed, named, and fails the session."""
    dbservers.close()
    lock = leftovers.lock_path(leftovers.session_tag())
    deadline = time.monotonic() + 5  # a process that was told to stop may still be exiting
    while True:
        found = [item for item in leftovers.find({leftovers.session_tag()}) if item.name != lock]
        if time.monotonic() > deadline or all(item.kind != "process" for item in found):
            break
        time.sleep(0.2)
    if found:
        failures = leftovers.remove(found)
        session.config.oauthops_leftovers = (found, failures)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    leftovers.end_session()


def pytest_terminal_summary(terminalreporter, config):
    note = getattr(config, "oauthops_ansible_note", None)
    if note:
        terminalreporter.write_line("NOTE: " + note, yellow=True)
    found, failures = getattr(config, "oauthops_leftovers", ((), ()))
    if found:
        terminalreporter.write_line("FAILED: the session left %d thing(s) on the machine, now removed: %s"
                                    % (len(found), ", ".join(map(str, found))), red=True, bold=True)
    for failure in failures:
        terminalreporter.write_line("FAILED: could not remove %s" % failure, red=True, bold=True)
    for backend, reason in sorted(untested.items()):
        terminalreporter.write_line("WARNING: backend %s was NOT TESTED: %s" % (backend, reason), red=True, bold=True)
