"""Shared pytest wiring: the helpers beside this file, a time limit for every test, and a loud line
for every backend not tested."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from provisioning import untested  # noqa: E402

# Seconds one test may take, setup and teardown included: generous for the slowest one (the cron
# daemon test waits up to ~4 minutes) on a loaded machine, and still far inside CI's limit.
TEST_TIMEOUT = 600


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """A hang fails its test (pytest-timeout dumps every thread's stack) instead of stalling CI.

    --timeout, PYTEST_TIMEOUT or a timeout marker still choose another limit.
    """
    if not config.pluginmanager.hasplugin("timeout"):
        raise pytest.UsageError(
            "pytest-timeout is not installed in %s (pip install pytest-timeout): every test needs a time limit"
            % sys.prefix
        )
    if config.getoption("timeout") is None and not os.environ.get("PYTEST_TIMEOUT"):
        config.option.timeout = TEST_TIMEOUT


def pytest_terminal_summary(terminalreporter):
    for backend, reason in sorted(untested.items()):
        terminalreporter.write_line("WARNING: backend %s was NOT TESTED: %s" % (backend, reason), red=True, bold=True)
