"""The end-of-session check of tests/leftovers.py: a session that leaves something of its own on the machine
fails, names it, and the thing is gone afterwards.

A probe session (its own pytest process, with tests/conftest.py) starts a process it never waits for and,
as root, makes a directory in /run/lock with its tag and a user of its own without removing either.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import leftovers

TESTS = Path(__file__).resolve().parents[1]
PROBE = '''
import os
import subprocess

import leftovers


def test_leaves_things_behind():
    subprocess.Popen(["sleep", "600"])  # never waited for
    if os.geteuid() == 0:
        os.mkdir("/run/lock/" + leftovers.name("probe"))
        subprocess.run(["useradd", "--system", "--no-create-home", leftovers.name("probe")], check=True)
'''


def test_a_session_that_leaves_something_behind_fails_and_leaves_nothing(tmp_path):
    # Under tests/, so that tests/conftest.py (which holds the check) is the probe's conftest too.
    (TESTS / "output").mkdir(exist_ok=True)
    probe = TESTS / "output" / ("leftover_probe_%d.py" % os.getpid())
    probe.write_text(PROBE)
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(probe)],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    finally:
        probe.unlink()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    (line,) = [line for line in output.splitlines() if "on the machine, now removed" in line]
    expected = 3 if os.geteuid() == 0 else 1
    assert "the session left %d thing(s)" % expected in line, output
    (pid,) = re.findall(r"process (\d+)", line)
    status = Path("/proc", pid, "status")
    assert not status.exists() or "State:\tZ" in status.read_text(), "the sleep still runs"
    if os.geteuid() == 0:
        (tag,) = set(re.findall(r"path /run/lock/oauthops-(t[0-9a-f]{6})-probe", line))
        assert "user oauthops-%s-probe" % tag in line
        assert leftovers.find({tag}) == [], "removed: the user, the directory and the session's lock"
