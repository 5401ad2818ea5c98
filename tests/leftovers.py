"""What the tests leave on the machine outside their temporary directories: named, found, removed.

Each process that runs tests (a pytest session, a bench script) has a tag, `t` and six hex digits, and
puts it in the name of everything it creates outside its temporary directory:

- users and groups: `oauthops-TAG-WHAT` (as root);
- files and directories: `oauthops-TAG-WHAT...` directly in one of WATCHED (/srv, /home, /etc/sudoers.d,
  /etc/cron.d, /var/lib, /var/log, /run/lock);
- databases on the PostgreSQL and MariaDB servers: `oauthops_TAG_WHAT_HEX`;
- processes: `OAUTHOPS_TEST_SESSION=TAG` in their environment, which whatever they start inherits.

While the process lives it holds a lock on `/run/lock/oauthops-TAG-session.lock` (in the temporary
directory when it is not root), so a tag whose lock can be taken belongs to a process that is gone.

Fixtures remove what they create. At the end of a pytest session tests/conftest.py looks for anything
of the session's tag, removes it, and fails the session if it found any. tests/tools/suite removes what
processes that no longer run left (a run killed with SIGKILL, an older version's fixed names) before
it starts, and fails if anything of any tag is left when it ends.

Only the standard library, and the database drivers when a server is reachable: tests/tools/suite
imports this.
"""

import atexit
import fcntl
import os
import pwd
import grp
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass

WATCHED = ("/srv", "/home", "/etc/sudoers.d", "/etc/cron.d", "/var/lib", "/var/log", "/run/lock")
MARKER = "OAUTHOPS_TEST_SESSION"
TAG = r"t[0-9a-f]{6}"
NAME = re.compile(r"^oauthops-(%s)-[A-Za-z0-9._-]+$" % TAG)
DATABASE = re.compile(r"^oauthops_(%s)_[A-Za-z0-9_]+$" % TAG)
# What versions of this suite before the tags created once and kept: removed like a dead session's.
LEGACY = "legacy"
LEGACY_USERS = ("oauthops-cron-test", "oauthops-gid0-test", "oauthops-deploy-test", "oauthops-app-test")
LEGACY_GROUPS = ("oauthops-runas-pair",)
LEGACY_PATHS = ("/srv/oauthops-app-test", "/home/oauthops-deploy-test", "/etc/sudoers.d/oauthops-deploy-test",
                "/run/lock/oauthops-tests-users.lock", "/run/lock/oauthops-tests-cron-daemon.lock")
LEGACY_DATABASE = re.compile(r"^oauthops_(test|myisam|selfcheck|bench)_[0-9a-f]{12}$")

_session = {}


def lock_directory():
    return "/run/lock" if os.geteuid() == 0 and os.path.isdir("/run/lock") else tempfile.gettempdir()


def lock_path(tag):
    return os.path.join(lock_directory(), "oauthops-%s-session.lock" % tag)


def session_tag():
    """This process's tag: made, locked and put in the environment on first use."""
    if "tag" not in _session:
        tag = "t" + secrets.token_hex(3)
        lock = open(lock_path(tag), "w", encoding="utf-8")  # pylint: disable=consider-using-with  # held until exit
        fcntl.flock(lock, fcntl.LOCK_EX)
        _session.update(tag=tag, lock=lock)
        os.environ[MARKER] = tag
        atexit.register(end_session)
    return _session["tag"]


def name(what):
    """`oauthops-TAG-what`: a user, group or path of this session (users: at most 32 characters)."""
    return "oauthops-%s-%s" % (session_tag(), what)


def database_prefix(what):
    return "oauthops_%s_%s_" % (session_tag(), what)


def end_session():
    """Release and remove this process's lock (its last step: nothing of its tag is left to remove)."""
    lock = _session.pop("lock", None)
    if lock:
        os.unlink(lock.name)
        lock.close()


@dataclass(frozen=True)
class Leftover:
    kind: str  # process, user, group, path, database
    name: str  # pid, user, group, path, or "backend:database"
    tag: str

    def __str__(self):
        return "%s %s" % (self.kind, self.name)


def alive(tag):
    """Whether the process that owns tag still runs (holds its lock)."""
    if tag == LEGACY:
        return False
    try:
        with open(lock_path(tag), encoding="utf-8") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except FileNotFoundError:
        return False


def _ancestors():
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open("/proc/%d/stat" % pid, encoding="utf-8") as stat:
                pid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def processes(variable=MARKER):
    """{pid: value of variable} for every process whose environment has it, except this one and its
    ancestors (as root: every process; otherwise the user's own)."""
    found, mine = {}, _ancestors()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            with open("/proc/%s/environ" % entry, "rb") as environ:
                variables = environ.read().split(b"\0")
        except OSError:
            continue
        prefix = variable.encode() + b"="
        values = [item[len(prefix):].decode(errors="replace") for item in variables if item.startswith(prefix)]
        if values:
            found[int(entry)] = values[0]
    return found


def _tag_of(value, pattern):
    match = pattern.match(value)
    return match.group(1) if match else None


def database_servers():
    """The reachable servers the tests create databases on (never a throwaway one started for this)."""
    try:
        import dbservers  # pylint: disable=import-outside-toplevel
    except ImportError:
        return []
    return [server for server in map(dbservers.existing, ("postgresql", "mysql")) if server]


def find(tags=None, legacy=False):
    """Everything of these tags (None: of any tag) on the machine; with legacy, also the fixed names that
    versions of the suite before the tags kept."""
    wanted = (lambda tag: tag is not None) if tags is None else (lambda tag: tag in tags)
    found = []
    for pid, tag in processes().items():
        if wanted(tag) and _running(pid):
            found.append(Leftover("process", str(pid), tag))
    for entry in pwd.getpwall():
        tag = LEGACY if legacy and entry.pw_name in LEGACY_USERS else _tag_of(entry.pw_name, NAME)
        if wanted(tag) or tag == LEGACY:
            found.append(Leftover("user", entry.pw_name, tag))
    users = {item.name for item in found if item.kind == "user"}
    for entry in grp.getgrall():
        tag = LEGACY if legacy and entry.gr_name in LEGACY_GROUPS else _tag_of(entry.gr_name, NAME)
        if (wanted(tag) or tag == LEGACY) and entry.gr_name not in users:  # a user's own group goes with it
            found.append(Leftover("group", entry.gr_name, tag))
    for directory in WATCHED:
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        for entry in entries:
            path = os.path.join(directory, entry)
            tag = LEGACY if legacy and path in LEGACY_PATHS else _tag_of(entry, NAME)
            if wanted(tag) or tag == LEGACY:
                found.append(Leftover("path", path, tag))
    for server in database_servers():
        for database in server.database_names("oauthops_"):
            tag = LEGACY if legacy and LEGACY_DATABASE.match(database) else _tag_of(database, DATABASE)
            if wanted(tag) or tag == LEGACY:
                found.append(Leftover("database", "%s:%s" % (server.backend, database), tag))
    return found


def remove(leftovers):
    """Remove them: processes first (SIGTERM, then SIGKILL), with every process of a user before the user,
    then users, groups, paths and databases. Returns what could not be removed, with the reason."""
    failures = []
    users = [item.name for item in leftovers if item.kind == "user"]
    pids = {int(item.name) for item in leftovers if item.kind == "process"}
    for user in users:
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:  # deleted meanwhile
            continue
        pids.update(int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _uid_of(entry) == uid)
    pids -= _ancestors()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_running(pid) for pid in pids):
            time.sleep(0.1)
    for item in leftovers:
        try:
            if item.kind in ("user", "group"):
                command = ["userdel", item.name] if item.kind == "user" else ["groupdel", item.name]
                result = subprocess.run(command, capture_output=True, text=True, check=False)
                if result.returncode not in (0, 6):  # 6: already gone (a user's group with the user)
                    failures.append("%s: %s" % (item, result.stderr.strip()))
            elif item.kind == "path":
                if os.path.isdir(item.name) and not os.path.islink(item.name):
                    shutil.rmtree(item.name)
                elif os.path.lexists(item.name):
                    os.unlink(item.name)
            elif item.kind == "database":
                backend, database = item.name.split(":", 1)
                next(server for server in database_servers() if server.backend == backend).drop_database(database)
        except Exception as error:  # pylint: disable=broad-except  # report every failure, remove the rest
            failures.append("%s: %s" % (item, error))
    return failures


def _running(pid):
    """Whether the process exists and is not a zombie (which only waits for its parent to reap it)."""
    try:
        with open("/proc/%s/stat" % pid, encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _uid_of(pid):
    try:
        with open("/proc/%s/status" % pid, encoding="utf-8") as status:
            for line in status:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def sweep():
    """Remove what processes that no longer run left, and the fixed names of older versions; return it."""
    found = [item for item in find(legacy=True) if not alive(item.tag)]
    failures = remove(found)
    return found, failures
