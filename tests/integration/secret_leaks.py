"""Where secrets could leak: the -vvv output and the target's syslog; and the stored client secrets to look for.

`check_masking` runs playbooks/masking.yml (shared by tests/integration and the version matrix, whose
ansible-core 2.18 cells return the module arguments at -vvv without being asked).

Ansible's modules log their invocation (the module's arguments) with syslog(3), which sends one datagram
per line to /dev/log (to the journal instead when the target's Python has systemd's bindings; the tests'
bare interpreters do not). These machines have no /dev/log. A command wrapped by `SyslogCatcher.wrap`
runs in a private mount namespace (`unshare --mount`) whose /dev is a directory of this test: links to
every entry of the real /dev, and `log`, a datagram socket this catcher reads. Nothing outside the
namespace sees any of it, and the namespace ends with the command.
"""

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from provisioning import DJANGO_PROJECT

# Inside the namespace: keep the real /dev reachable under $1/realdev, build $1/dev from links to it
# (the socket `log` is there already), and put that over /dev for the command.
NAMESPACE_SETUP = r"""
set -e
work=$1
shift
mkdir "$work/realdev"
mount --rbind /dev "$work/realdev"
for entry in /dev/* /dev/.[!.]*; do
    name=${entry#/dev/}
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    [ "$name" = log ] || ln -s "$work/realdev/$name" "$work/dev/$name"
done
mount --bind "$work/dev" /dev
exec "$@"
"""


def unavailable_reason():
    """Why a private mount namespace cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root for a private mount namespace (unshare --mount)"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        return "unshare --mount fails here: %s" % (probe.stderr.strip() or probe.returncode)
    return None


class SyslogCatcher:
    def __init__(self, work):
        self.work = work
        self.messages = []
        os.mkdir(os.path.join(work, "dev"))
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(os.path.join(work, "dev", "log"))
        os.chmod(os.path.join(work, "dev", "log"), 0o666)
        self.socket.settimeout(0.2)
        self.stopping = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while not self.stopping.is_set():
            try:
                self.messages.append(self.socket.recv(65536).decode("utf-8", "replace"))
            except socket.timeout:
                continue

    def wrap(self, command):
        """`command` run with this catcher's socket as its /dev/log."""
        namespace = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", NAMESPACE_SETUP, "sh"]
        return namespace + [self.work] + list(command)

    def stop(self):
        self.stopping.set()
        self.reader.join()
        self.socket.close()


@contextlib.contextmanager
def syslog_catcher():
    """A SyslogCatcher, or a skip that says loudly why the target's syslog cannot be checked here."""
    reason = unavailable_reason()
    if reason:
        pytest.skip("syslog NOT CHECKED: %s" % reason)
    # A short path: a unix socket's path must fit in 108 bytes. Not under /dev (the suite's temporary
    # directories are on /dev/shm): the namespace puts this directory's `dev` over /dev, and links
    # from it into itself would go round in circles.
    parent = tempfile.gettempdir()
    if os.path.realpath(parent).startswith("/dev/"):
        parent = "/tmp"
    work = tempfile.mkdtemp(prefix="oauthops-syslog-", dir=parent)
    catcher = SyslogCatcher(work)
    try:
        yield catcher
    finally:
        catcher.stop()
        shutil.rmtree(work)


def real_secrets(prefix):
    """Variables holding real secrets that the rule must catch by a word of the name or by a URL parameter."""
    token = secrets.token_hex(6)
    return {
        "DB_PASS": "long-s3cret-value-" + token,
        "MYSQL_PWD": "mysql-pwd-" + token,
        "OAUTHOPS_TEST_REPLICA_URL": "postgres://%s@replica.example/shop?sslmode=require&password=url-pw-%s" % (prefix, token),
    }


def stored_client_secrets(env, prefix):
    """client_id -> the stored client_secret column (a hash, or an unhashed secret), read outside Ansible."""
    script = (
        "import json; from oauth2_provider.models import get_application_model as m; "
        "print(json.dumps(dict(m().objects.filter(client_id__startswith=%r).values_list('client_id', 'client_secret'))))"
        % prefix
    )
    completed = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=DJANGO_PROJECT,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.splitlines()[-1])


def leaked(text, values):
    return [value for value in values if value in text]


def check_masking(playbook):
    """masking.yml at -vvv, under a syslog catcher: the results are those without the environment's extra
    variables (the playbook asserts it); the module arguments show the secret values masked and the ordinary
    ones as given; no secret reaches the output or the target's syslog."""
    hidden = real_secrets(playbook.prefix)
    secret_values = list(hidden.values()) + [hidden["OAUTHOPS_TEST_REPLICA_URL"].rpartition("=")[2]]
    dying_python = playbook.workdir / "dying-python"
    # It reads the request first: exiting before would be a broken pipe for the module, not this failure.
    dying_python.write_text('#!/bin/sh\ncat > /dev/null\necho "connecting as shop with $DB_PASS" >&2\nexit 3\n')
    dying_python.chmod(0o755)
    # ansible-core 2.19 and later return the module arguments only when asked; 2.18 always does.
    command, env = playbook.command(
        "masking.yml", {"secrets": hidden, "dying_python": str(dying_python)}, ["-vvv", "--diff"],
        {"ANSIBLE_INJECT_INVOCATION": "true"},
    )
    with syslog_catcher() as syslog:
        completed = subprocess.run(syslog.wrap(command), env=env, capture_output=True, text=True, check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output

    assert leaked(output, secret_values) == [], "secrets in the -vvv output"
    for name in ("DB_PASS", "MYSQL_PWD", "OAUTHOPS_TEST_REPLICA_URL", "TOKEN_LIMIT", "DJANGO_SECRET_KEY"):
        assert '"%s": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"' % name in output, name
    assert '"DJANGO_DEBUG": "0"' in output

    # One invocation line per module task without no_log (8), each with its environment: proof that
    # syslog was caught.
    invocations = [message for message in syslog.messages if "Invoked with" in message and "environment=" in message]
    assert len(invocations) == 8, syslog.messages
    assert leaked("\n".join(syslog.messages), secret_values) == [], "secrets in the target's syslog"
    # Six of them have the extra variables (the other two predict without them).
    with_them = [line for line in invocations if "'DJANGO_DEBUG': '0'" in line]
    assert len(with_them) == 6, invocations
    assert all("'DB_PASS': 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'" in line for line in with_them), with_them
