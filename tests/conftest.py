"""Shared pytest wiring: the helpers beside this file, and a loud line for every backend not tested."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from provisioning import untested  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    for backend, reason in sorted(untested.items()):
        terminalreporter.write_line("WARNING: backend %s was NOT TESTED: %s" % (backend, reason), red=True, bold=True)
