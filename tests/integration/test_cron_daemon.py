"""The installed job under Debian's real cron daemon, not a replay of its line.

The role installs two jobs into the real /etc/cron.d, every minute: one that cleans up, one whose
settings are broken. The test starts `cron -f` and waits (bounded) for the daemon to run them. With no
mail server here, a stand-in /usr/sbin/sendmail (only when none exists) records what cron mails:
the failing job's one line, and nothing from the healthy one. Then `state: absent`, and the daemon
no longer runs the job.
"""

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from cronjobs import KEPT_ROWS, inventory, job_vars, log_entries, seed_tokens, sqlite_database, token_rows
from provisioning import users_lock

CRON = shutil.which("cron") or "/usr/sbin/cron"
SENDMAIL = Path("/usr/sbin/sendmail")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason=(
    "only root can start Debian's cron daemon and write /etc/cron.d and /usr/sbin/sendmail; run "
    "as root, as CI does"
))


@pytest.fixture
def mailbox(scratch):
    """Whatever cron mails, one file per mail (in a directory the job's user can reach)."""
    if SENDMAIL.exists():
        pytest.fail("%s exists: this test needs a machine without a mail server to record cron's mail" % SENDMAIL)
    box = Path(scratch) / ("mail-" + secrets.token_hex(4))
    box.mkdir()
    box.chmod(0o777)  # cron runs sendmail as the job's user
    SENDMAIL.write_text('#!/bin/sh\ncat > "%s/$(date +%%s%%N)-$$"\n' % box)
    SENDMAIL.chmod(0o755)
    yield box
    SENDMAIL.unlink()


@pytest.fixture
def cron_daemon():
    if not os.access(CRON, os.X_OK):
        pytest.fail("no cron daemon at %s: apt-get install -y --no-install-recommends cron" % CRON)
    with users_lock():  # one test session at a time owns the daemon and /etc/cron.d (until it has a namespace)
        running = subprocess.run(["pgrep", "-x", "cron"], capture_output=True, check=False)
        if running.returncode == 0:
            pytest.fail("a cron daemon is already running (pid %s); stop it first" % running.stdout.decode().split())

        def start():
            return subprocess.Popen([CRON, "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        processes = []
        yield lambda: processes.append(start()) or processes[-1]
        for process in processes:
            process.terminate()
            process.wait(10)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail("waited %d s for %s" % (timeout, what))


def seconds_into_minute():
    return time.time() % 60


def test_cron_itself_runs_the_job_silently_and_mails_only_a_failure(
    role_playbook, app_user, app_python, scratch, mailbox, cron_daemon
):
    suffix = secrets.token_hex(4)
    db_env = sqlite_database(scratch, app_user)
    jobs = {}
    for kind, settings in (("healthy", "testproject.settings"), ("broken", "testproject.missing_settings")):
        name = "oauthops-crontest-%s-%s" % (kind, suffix)
        jobs[kind] = job_vars(Path("/"), name, app_user, app_python, settings=settings, environment=db_env, minute="*")
        jobs[kind].update(
            token_cleanup_cron_file="/etc/cron.d/" + name,
            token_cleanup_directory="/var/lib/" + name,
            token_cleanup_log_file="/var/log/%s.log" % name,
        )
    args = inventory(role_playbook.workdir / "inv.json", jobs)
    try:
        role_playbook.run("role_token_cleanup.yml", None, *args)
        seed_tokens(db_env, "cron-" + suffix)
        # Cron runs jobs at the start of a minute; starting it late in one would make it miss the next.
        if seconds_into_minute() > 50:
            time.sleep(61 - seconds_into_minute())
        daemon = cron_daemon()
        healthy_log = Path(jobs["healthy"]["token_cleanup_log_file"])
        broken_log = Path(jobs["broken"]["token_cleanup_log_file"])
        wait_for(lambda: healthy_log.read_text() and broken_log.read_text(), 150, "cron to run both jobs")
        wait_for(lambda: list(mailbox.iterdir()), 30, "cron to mail the failing job's line")
        assert daemon.poll() is None

        ((_timestamp, fields),) = log_entries(healthy_log)
        assert (fields["total"], fields["complete"]) == (18, True)
        assert token_rows(db_env) == KEPT_ROWS
        (mail,) = mailbox.iterdir()
        body = mail.read_text().split("\n\n", 1)[1]  # after cron's headers
        assert body == (
            "oauthops token cleanup failed: settings module 'testproject.missing_settings' not found "
            "(project_path and pythonpath are searched first)\n"
        )
        assert jobs["broken"]["token_cleanup_name"] in mail.read_text()  # the Subject names the cron command

        role_playbook.run("role_token_cleanup.yml", {"token_cleanup_state": "absent"}, *args)
        assert not Path(jobs["healthy"]["token_cleanup_cron_file"]).exists()
        # Through the next minute's start: the daemon rereads /etc/cron.d and runs nothing of ours.
        time.sleep(62 - seconds_into_minute() + 3)
        assert not healthy_log.exists() and not broken_log.exists()
        assert len(list(mailbox.iterdir())) == 1
    finally:
        role_playbook.run("role_token_cleanup.yml", {"token_cleanup_state": "absent"}, *args)
