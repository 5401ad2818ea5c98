"""The installed job under Debian's real cron daemon, not a replay of its line.

The role installs two jobs, every minute: one that cleans up, one whose settings are broken. The test
starts its own `cron -f` and waits (bounded) for the daemon to run them; a stand-in sendmail records
what cron mails: the failing job's one line, and nothing from the healthy one. Then `state: absent`,
and the daemon no longer runs the job.

What it touches on the machine: nothing under /etc, /var, /usr or /run but the session's job user
(cronjobs.app_user, oauthops-TAG-cron, deleted at the session's end). The jobs' cron file, directory
and log are stand-ins in the tests' scratch directory (cronjobs.host_root), as in test_roles.py. The
daemon runs in a mount namespace of its own (`unshare --mount --propagation private`), where, and only
there:
  - /etc/cron.d is the test's stand-in (bind mount), so it runs this test's jobs and no others;
  - /etc/crontab is an empty file and /var/spool/cron/crontabs an empty directory, so it does not run
    the machine's system and user crontabs a second time (run-parts cron.daily and the like);
  - /run is a private tmpfs: cron's lock (/run/crond.pid) does not meet the system's cron, which keeps
    running untouched, and /run/crond.reboot exists (no @reboot jobs);
  - /usr/sbin is a tmpfs of symlinks to the machine's programs (reached through a bind mount), except
    /usr/sbin/sendmail, cron's compiled-in mailer, which is the test's recorder whether or not the
    machine has a mail server. Symlinks, not an overlay: tmpfs and bind mounts are all the test needs,
    on any kernel and in any container that allows mounts at all.
The mounts go with the namespace when its last process exits; the test stops the daemon and kills
whatever the jobs left behind in the namespace, then proves from the host that nothing of it stays
mounted or running, and that /etc/cron.d, /etc/crontab, /var/spool/cron/crontabs, /usr/sbin/sendmail,
/run/crond.pid, /var/lib and /var/log entries named *oauthops* and the system's cron daemon (if one
runs) are as they were.

Sessions side by side each run their own daemon in their own namespace: nothing is shared, so no
machine lock is taken.

Where the namespace cannot be made (not root, no `unshare`, mounts refused as in an unprivileged
container) the test is skipped with the reason; under CI (CI=true) that is a failure, since CI must
prove every case.
"""

import os
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from cronjobs import KEPT_ROWS, host_root, inventory, job_vars, log_entries, seed_tokens, sqlite_database, token_rows

CRON = shutil.which("cron") or "/usr/sbin/cron"
# Run by `sh -c` inside the new mount namespace: TAG CRON_D SENDMAIL COMMAND...; says "ready" on stdout
# once every mount is in place, then becomes COMMAND (cron -f, or `true` for the probe).
NAMESPACE_SETUP = r"""
set -eu
tag=$1 cron_d=$2 sendmail=$3
shift 3
mount -t tmpfs -o mode=0755 "$tag" /run
[ /var/run -ef /run ] || mount -t tmpfs -o mode=0755 "$tag" /var/run
: > /run/crond.reboot
state=/run/oauthops-cron
mkdir -m 0755 "$state" "$state/sbin"
mkdir -m 1730 "$state/crontabs"
: > "$state/crontab"
mount --bind "$cron_d" /etc/cron.d
if [ -e /etc/crontab ]; then mount --bind "$state/crontab" /etc/crontab; fi
if [ -d /var/spool/cron/crontabs ]; then mount --bind "$state/crontabs" /var/spool/cron/crontabs; fi
mount --bind /usr/sbin "$state/sbin"
mount -t tmpfs -o mode=0755 "$tag" /usr/sbin
for entry in "$state"/sbin/*; do ln -s "$entry" /usr/sbin/; done
rm -f /usr/sbin/sendmail
ln -s "$sendmail" /usr/sbin/sendmail
echo ready
exec "$@" >/dev/null
"""


def not_tested(reason):
    """Skip, or under CI (which must prove every case) fail."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason + " (CI=true: a case CI cannot prove fails the run)", pytrace=False)
    pytest.skip(reason)


def in_namespace(unshare, tag, cron_d, sendmail, command):
    return [unshare, "--mount", "--propagation", "private", "--", "sh", "-c", NAMESPACE_SETUP, "sh",
            tag, str(cron_d), str(sendmail)] + list(command)


@pytest.fixture(scope="session")
def cron_namespace(tmp_path_factory):
    """Probe once whether cron can run here in a mount namespace of its own, with every mount it gets."""
    if os.geteuid() != 0:
        not_tested("cron daemon NOT TESTED: only root can start cron in a mount namespace of its own "
                   "(running as uid %d); run as root, as CI does" % os.geteuid())
    if not os.access(CRON, os.X_OK):
        pytest.fail("no cron daemon at %s: apt-get install -y --no-install-recommends cron" % CRON)
    unshare = shutil.which("unshare")
    if not unshare:
        not_tested("cron daemon NOT TESTED: no `unshare` command (util-linux) to give cron a mount namespace")
    probe = tmp_path_factory.mktemp("cron-probe")
    completed = subprocess.run(
        in_namespace(unshare, "oauthops-cron-probe", probe, probe / "sendmail", ["true"]),
        capture_output=True, text=True, timeout=60, check=False,
    )
    if completed.returncode != 0:
        not_tested("cron daemon NOT TESTED: unshare --mount failed (needs root with CAP_SYS_ADMIN): %s"
                   % (completed.stderr.strip() or "exit status %d" % completed.returncode))
    return unshare


@pytest.fixture
def mailbox(scratch):
    """Whatever cron mails, one file per mail (in a directory the job's user can reach)."""
    box = Path(tempfile.mkdtemp(dir=scratch, prefix="mail-"))
    box.chmod(0o777)  # cron runs sendmail as the job's user
    return box


def mount_points(mountinfo):
    """(mount point, source) of each line of a /proc/PID/mountinfo."""
    points = []
    for line in mountinfo.splitlines():
        mount, _sep, filesystem = line.partition(" - ")
        points.append((mount.split()[4], filesystem.split()[1]))
    return points


def namespace_members(namespace):
    members = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "ns" / "mnt") == namespace:
                members.append(int(entry.name))
        except OSError:  # gone meanwhile, or a kernel thread
            pass
    return members


class CronDaemon:
    """`cron -f` in a mount namespace of its own (see the module's docstring)."""

    def __init__(self, scratch):
        self.tag = "oauthops-cron-" + secrets.token_hex(4)
        self.home = Path(tempfile.mkdtemp(dir=scratch, prefix="cron-daemon-"))
        self.home.chmod(0o755)
        self.stderr = self.home / "cron.stderr"
        self.process = self.namespace = None

    def start(self, unshare, cron_d, mailbox):
        sendmail = self.home / "sendmail"
        sendmail.write_text('#!/bin/sh\ncat > "%s/$(date +%%s%%N)-$$"\n' % mailbox)
        sendmail.chmod(0o755)
        with self.stderr.open("w") as stderr:
            # unshare and sh each exec the next: the process started here is cron itself. It outlives
            # this method: stop() ends it.
            self.process = subprocess.Popen(  # pylint: disable=consider-using-with
                in_namespace(unshare, self.tag, cron_d, sendmail, [CRON, "-f"]),
                stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
            )
        ready = self.process.stdout.readline()
        self.process.stdout.close()
        if ready != b"ready\n":
            self.process.wait(10)
            pytest.fail("cron's mount namespace could not be set up: %s" % self.stderr.read_text().strip())
        deadline = time.monotonic() + 10
        while self.comm() != "cron" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.comm() == "cron", "pid %d is not cron: %s" % (self.process.pid, self.stderr.read_text())
        self.namespace = os.readlink("/proc/%d/ns/mnt" % self.process.pid)
        assert self.namespace != os.readlink("/proc/self/ns/mnt")

    def comm(self):
        try:
            return Path("/proc/%d/comm" % self.process.pid).read_text().strip()
        except OSError:
            return None

    def mount_points(self):
        return mount_points(Path("/proc/%d/mountinfo" % self.process.pid).read_text())

    def stop(self):
        """Stop cron and everything it started: its jobs each have a session of their own (Debian's cron
        calls setsid for them), so after cron's process group goes, whatever is left in its namespace."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # cron, and the jobs still in its group
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        deadline = time.monotonic() + 10
        while self.namespace and namespace_members(self.namespace):
            if time.monotonic() > deadline:
                pytest.fail("processes of cron's namespace survive SIGKILL: %s" % namespace_members(self.namespace))
            for pid in namespace_members(self.namespace):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)


@pytest.fixture
def cron_daemon(cron_namespace, scratch):
    daemons = []

    def start(cron_d, mailbox):
        daemons.append(CronDaemon(scratch))
        daemons[-1].start(cron_namespace, cron_d, mailbox)
        return daemons[-1]

    yield start
    for daemon in daemons:
        daemon.stop()


def entry_state(path):
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
    return info.st_mode, info.st_uid, info.st_gid, info.st_size, info.st_mtime_ns, target


def listing(directory, containing=""):
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return None
    return {name: entry_state(os.path.join(directory, name)) for name in names if containing in name}


def host_cron_daemons():
    """The pids of cron daemons in this (the host's) mount namespace: not those of any test's own."""
    mine = os.readlink("/proc/self/ns/mnt")
    found = subprocess.run(["pgrep", "-x", "cron"], capture_output=True, text=True, check=False).stdout.split()
    daemons = []
    for pid in found:
        try:
            if os.readlink("/proc/%s/ns/mnt" % pid) == mine:
                daemons.append(int(pid))
        except OSError:  # gone meanwhile
            pass
    return sorted(daemons)


def host_state():
    """What the test must leave on the machine as it found it."""
    pid_file = Path("/run/crond.pid")
    return {
        "/etc/cron.d": listing("/etc/cron.d"),
        "/etc/crontab": entry_state("/etc/crontab"),
        "/var/spool/cron/crontabs": listing("/var/spool/cron/crontabs"),
        "/usr/sbin/sendmail": entry_state("/usr/sbin/sendmail"),
        "/run/crond.pid": (entry_state(pid_file), pid_file.read_text() if pid_file.exists() else None),
        "/run/crond.reboot": entry_state("/run/crond.reboot"),
        "/var/lib/*oauthops*": listing("/var/lib", "oauthops"),
        "/var/log/*oauthops*": listing("/var/log", "oauthops"),
        "cron daemons": host_cron_daemons(),
    }


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail("waited %d s for %s" % (timeout, what))


def seconds_into_minute():
    return time.time() % 60


@pytest.mark.usefixtures("cron_namespace")  # first: a machine that cannot run it says so before any setup
def test_cron_itself_runs_the_job_silently_and_mails_only_a_failure(
    role_playbook, app_user, app_python, scratch, mailbox, cron_daemon
):
    before = host_state()
    suffix = secrets.token_hex(4)
    base = host_root(scratch, "cron-daemon")
    db_env = sqlite_database(scratch, app_user)
    # The role proves each job as it installs it; this one's database goes away after that.
    doomed_env = sqlite_database(scratch, app_user)
    doomed = Path(doomed_env["OAUTHOPS_TEST_DB_NAME"])
    jobs = {}
    for kind, environment in (("healthy", db_env), ("broken", doomed_env)):
        name = "oauthops-crontest-%s-%s" % (kind, suffix)
        jobs[kind] = job_vars(base, name, app_user, app_python, environment=environment, minute="*")
    args = inventory(role_playbook.workdir / "inv.json", jobs)
    try:
        role_playbook.run("role_token_cleanup.yml", None, *args)
        doomed.unlink()
        seed_tokens(db_env, "cron-" + suffix)
        # Cron runs jobs at the start of a minute; starting it late in one would make it miss the next.
        if seconds_into_minute() > 50:
            time.sleep(61 - seconds_into_minute())
        daemon = cron_daemon(base / "cron.d", mailbox)
        # Its mounts are its own: the host sees none of them.
        assert {"/run", "/usr/sbin", "/etc/cron.d"} <= {point for point, _source in daemon.mount_points()}
        assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if daemon.tag in line]
        healthy_log = Path(jobs["healthy"]["token_cleanup_log_file"])
        broken_log = Path(jobs["broken"]["token_cleanup_log_file"])
        wait_for(lambda: healthy_log.read_text() and broken_log.read_text(), 150, "cron to run both jobs")
        wait_for(lambda: list(mailbox.iterdir()), 30, "cron to mail the failing job's line")
        assert daemon.process.poll() is None

        ((_timestamp, fields),) = log_entries(healthy_log)
        assert (fields["total"], fields["complete"]) == (18, True)
        assert token_rows(db_env) == KEPT_ROWS
        (mail,) = mailbox.iterdir()
        body = mail.read_text().split("\n\n", 1)[1]  # after cron's headers
        assert body == (
            "oauthops token cleanup failed: the SQLite database %s of database 'default' does not exist (check NAME "
            "in the settings, or run manage.py migrate to create it)\n" % doomed
        )
        assert jobs["broken"]["token_cleanup_name"] in mail.read_text()  # the Subject names the cron command

        role_playbook.run("role_token_cleanup.yml", {"token_cleanup_state": "absent"}, *args)
        assert not Path(jobs["healthy"]["token_cleanup_cron_file"]).exists()
        # Through the next minute's start: the daemon rereads its cron.d and runs nothing of ours.
        time.sleep(62 - seconds_into_minute() + 3)
        assert not healthy_log.exists() and not broken_log.exists()
        assert len(list(mailbox.iterdir())) == 1
        assert daemon.process.poll() is None

        daemon.stop()
        assert daemon.process.returncode is not None and not namespace_members(daemon.namespace)
        host_mounts = mount_points(Path("/proc/self/mountinfo").read_text())
        assert not [(point, source) for point, source in host_mounts
                    if source == daemon.tag or point == str(base / "cron.d")]
    finally:
        role_playbook.run("role_token_cleanup.yml", {"token_cleanup_state": "absent"}, *args)
    assert host_state() == before
