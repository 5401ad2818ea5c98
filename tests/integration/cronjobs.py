"""The token_cleanup role's jobs on this machine, and cron's way of reading and starting them.

Every token_cleanup job here is one inventory host (connection local) with its own paths under a
scratch directory that the job's user can enter (pytest's tmp_path is private to root): `cron.d`,
`lib` and `log` stand in for /etc/cron.d, /var/lib and /var/log. The job's user is a system user
made for the tests (`oauthops-cron-test`, created once when missing; tests that run as root need
it), else, when the tests do not run as root, the user running them.

Cron is not needed: the tests read the cron file as cron reads it (environment lines, five
schedule fields, user, command with cron's `%` rules) and start the command the way cron's child
does: as the user, with only SHELL, PATH=/usr/bin:/bin, HOME and LOGNAME (plus the file's own
assignments) in the environment, `$SHELL -c command`, umask 022.
"""

import json
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning import DJANGO_PROJECT, migrate, provisioned_database, system_user

# The project's interpreter: --project-python (set by tests/integration/conftest.py), else this one.
PROJECT_PYTHON = sys.executable
# tests/django_project's oauthops_seed_tokens backlog: rows per model before and after a cleanup,
# and what each engine reports deleting (DOT 3.4.1, the test project's settings).
SEEDED_ROWS = {"AccessToken": 12, "RefreshToken": 11, "IDToken": 3, "Grant": 4}
KEPT_ROWS = {"AccessToken": 5, "RefreshToken": 5, "IDToken": 1, "Grant": 1}
DELETED_BY_ENGINE = {
    "oauthops": {
        "revoked_refresh_tokens": 5,
        "orphaned_refresh_tokens": 1,
        "expired_refresh_tokens": 0,
        "access_tokens": 7,
        "id_tokens": 2,
        "grants": 3,
    },
    "cleartokens": {"refresh_tokens": 6, "access_tokens": 7, "id_tokens": 2, "grants": 3},
}
COUNT_ROWS = (
    "import json; from oauth2_provider.models import get_access_token_model, get_refresh_token_model, "
    "get_id_token_model, get_grant_model; print(json.dumps({m.__name__: m.objects.count() for m in "
    "(get_access_token_model(), get_refresh_token_model(), get_id_token_model(), get_grant_model())}))"
)


# -- the job's user, an interpreter it can run, and places it can reach ------------------------


@pytest.fixture(scope="session")
def app_user():
    """The job's user: as root, a system user of this session's (oauthops-TAG-cron), removed at its end."""
    if os.geteuid() != 0:
        yield pwd.getpwuid(os.geteuid())
        return
    with system_user("cron", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                     "--shell", "/usr/sbin/nologin") as user:
        yield user


def as_user(user, argv):
    if os.geteuid() != 0:
        return list(argv)
    return ["setpriv", "--reuid=%d" % user.pw_uid, "--regid=%d" % user.pw_gid, "--init-groups"] + list(argv)


@pytest.fixture(scope="session")
def scratch():
    root = Path(tempfile.mkdtemp(prefix="oauthops-roles-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


@pytest.fixture(scope="session")
def app_python(app_user, scratch):
    """The project's interpreter, or a copy of it that the job's user can run."""
    # Through env, as cron's shell starts it: setpriv still holds root's capabilities when it execs its
    # command, so it can start an interpreter under /root (0700) that the user's own shell cannot.
    probe = as_user(app_user, ["env", PROJECT_PYTHON, "-c", "import django, oauth2_provider"])
    if subprocess.run(probe, cwd="/", capture_output=True, check=False).returncode == 0:
        return PROJECT_PYTHON
    return readable_python_copy(scratch / "python")


def readable_python_copy(dest):
    """This interpreter with its standard library, seeing this virtualenv's packages.

    pyenv installs Python under /root here, which other users cannot enter, and the binary finds
    libpython through an absolute RUNPATH there; so the copy's launcher sets LD_LIBRARY_PATH.
    """
    base = Path(sys.base_prefix)
    stdlib = "python%d.%d" % sys.version_info[:2]
    unused = shutil.ignore_patterns("test", "site-packages", "idlelib", "tkinter", "turtledemo", "ensurepip")
    shutil.copytree(base / "lib" / stdlib, dest / "lib" / stdlib, symlinks=True, ignore=unused)
    for library in (base / "lib").glob("libpython*"):
        shutil.copy2(library, dest / "lib", follow_symlinks=False)
    (dest / "bin").mkdir()
    binary = dest / "bin" / stdlib
    shutil.copy2(os.path.realpath(PROJECT_PYTHON), binary)
    site_packages = dest / "lib" / stdlib / "site-packages"
    site_packages.mkdir()
    project_site = subprocess.run([PROJECT_PYTHON, "-c", "import site; print('\\n'.join(site.getsitepackages()))"],
                                  capture_output=True, text=True, check=True).stdout
    (site_packages / "project-venv.pth").write_text(project_site)
    launcher = dest / "bin" / "python"
    launcher.write_text(
        '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' % (shlex.quote(str(dest / "lib")), shlex.quote(str(binary)))
    )
    launcher.chmod(0o755)
    return str(launcher)


def sqlite_database(scratch, user):
    """A migrated SQLite database in a directory the job's user owns (SQLite writes beside the file)."""
    directory = Path(tempfile.mkdtemp(dir=scratch, prefix="sqlite-"))
    env = {"OAUTHOPS_TEST_DB": "sqlite", "OAUTHOPS_TEST_DB_NAME": str(directory / "jobs.sqlite3")}
    migrate(env)
    for path in (directory, directory / "jobs.sqlite3"):
        os.chown(path, user.pw_uid, user.pw_gid)
    return env


@pytest.fixture(scope="session")
def idle_database(app_user, scratch):
    """A migrated SQLite database for the jobs whose runs a test does not look at: the role proves every job it
    installs by running it in check mode (which counts and deletes nothing), and that needs a database."""
    return sqlite_database(scratch, app_user)


@pytest.fixture
def job_database(database, app_user, scratch, tmp_path_factory):
    """A fresh migrated database on the backend of `database`, writable by the job's user."""
    if database["backend"] == "sqlite":
        yield dict(sqlite_database(scratch, app_user), backend="sqlite")
        return
    with provisioned_database(database["backend"], tmp_path_factory.mktemp("jobs")) as env:
        migrate(env)
        yield dict(env, backend=database["backend"])


def host_root(scratch, label):
    """A host's stand-ins for /etc/cron.d, /var/lib and /var/log, owned by root like those."""
    base = Path(tempfile.mkdtemp(dir=scratch, prefix=label + "-"))
    base.chmod(0o755)
    for name in ("cron.d", "lib", "log"):
        (base / name).mkdir(mode=0o755)
    return base


def job_vars(base, name, user, python, **options):
    """Inventory variables of one job; options are token_cleanup_* variables without the prefix."""
    values = {
        "ansible_connection": "local",
        "token_cleanup_name": name,
        "token_cleanup_user": user.pw_name,
        "token_cleanup_project_path": str(DJANGO_PROJECT),
        "token_cleanup_settings": "testproject.settings",
        "token_cleanup_python": python,
        "token_cleanup_cron_file": str(base / "cron.d" / name),
        "token_cleanup_directory": str(base / "lib" / name),
        "token_cleanup_log_file": str(base / "log" / (name + ".log")),
        # The stand-in for /etc/systemd/system, made by the tests that need it (a cron job removes the timer and
        # service of its name there, when they exist).
        "token_cleanup_systemd_unit_directory": str(base / "systemd" / "etc" / "systemd" / "system"),
        # The stand-in for /etc/logrotate.d, made by the tests that need it (where it is missing, the role writes no
        # configuration, as on a host without logrotate).
        "token_cleanup_logrotate_directory": str(base / "logrotate.d"),
    }
    values.update(("token_cleanup_" + option, value) for option, value in options.items())
    return values


def inventory(path, hosts, group="jobs"):
    path.write_text(json.dumps({"all": {"children": {group: {"hosts": hosts}}}}))
    return ["-i", str(path)]


def changed_per_host(output):
    recap = re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s", output, re.MULTILINE)
    return {host: int(changed) for host, changed in recap if host != "localhost"}


def failures(output):
    """The message each host of a play failed with, from Ansible's `fatal: [host]: FAILED! => {...}` (its result
    on one line, or indented over several from -vvv on)."""
    decoder = json.JSONDecoder()
    return {match.group(1): decoder.raw_decode(output, match.end())[0]["msg"]
            for match in re.finditer(r"^fatal: \[(\S+)\]: FAILED! => ", output, re.MULTILINE)}


def tree(path):
    return sorted(str(entry.relative_to(path)) for entry in Path(path).rglob("*"))


# -- cron, as cron does it ---------------------------------------------------------------------


@dataclass
class CronJob:
    schedule: str
    user: str
    command: str
    stdin: str


def cron_command(text):
    """Cron's `%` rule: an unescaped `%` ends the command, the rest (each `%` a newline) is stdin.

    A backslash escapes a `%`, and (Debian's cron, measured; other crons may keep both) a backslash; before
    anything else it stays. The role's lines never hold a backslash before a backslash.
    """
    command, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "\\" and text[index + 1:index + 2] in ("%", "\\"):
            command.append(text[index + 1])
            index += 2
            continue
        if char == "%":
            return "".join(command), text[index + 1:].replace("%", "\n")
        command.append(char)
        index += 1
    return "".join(command), ""


def read_cron_file(path):
    """The environment assignments and the jobs of a file in /etc/cron.d format."""
    environment, jobs = {}, []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assignment = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", line)
        if assignment:
            environment[assignment.group(1)] = assignment.group(2).strip("'\"")
            continue
        if line.startswith("@"):
            special, user, command = line.split(None, 2)
            schedule = special
        else:
            fields = line.split(None, 6)
            schedule, user, command = " ".join(fields[:5]), fields[5], fields[6]
        jobs.append(CronJob(schedule, user, *cron_command(command)))
    return environment, jobs


def start_as_cron(job, environment):
    """Start the job the way cron's child process does."""
    user = pwd.getpwnam(job.user)
    env = {"SHELL": "/bin/sh", "PATH": "/usr/bin:/bin", "HOME": user.pw_dir, "LOGNAME": user.pw_name}
    env.update(environment)
    argv = as_user(user, ["env", "-i"] + ["%s=%s" % item for item in env.items()] + [env["SHELL"], "-c", job.command])
    process = subprocess.Popen(
        argv,
        cwd=user.pw_dir if os.path.isdir(user.pw_dir) else "/",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        umask=0o022,
    )
    process.stdin.write(job.stdin.encode())  # cron's child feeds the text after a `%`, else nothing
    process.stdin.close()
    process.stdin = None  # so that communicate() does not touch it again
    return process


def finish(process, timeout=120):
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout.decode(), stderr.decode()


def wait_until_locked(path, timeout=20):
    """Until some process holds an flock on `path` (read from /proc/locks, which takes no lock)."""
    inode = os.stat(path).st_ino
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(r"FLOCK\s+\S+\s+\S+\s+\d+\s+[0-9a-f]+:[0-9a-f]+:%d\s" % inode, Path("/proc/locks").read_text()):
            return
        time.sleep(0.02)
    pytest.fail("nobody took the lock on %s within %s s" % (path, timeout))


def log_entries(path):
    """The log's lines as (timestamp, {field: value}), values as JSON reads them where it can."""
    entries = []
    for line in Path(path).read_text().splitlines():
        timestamp, rest = line.split(" ", 1)
        fields = {}
        for pair in shlex.split(rest):
            name, _sep, value = pair.partition("=")
            try:
                fields[name] = json.loads(value)
            except ValueError:
                fields[name] = value
        entries.append((timestamp, fields))
    return entries


def seed_tokens(env, prefix):
    subprocess.run(
        [PROJECT_PYTHON, "manage.py", "oauthops_seed_tokens", prefix],
        cwd=DJANGO_PROJECT, env=dict(os.environ, **env), check=True,
    )


def token_rows(env):
    completed = subprocess.run(
        [PROJECT_PYTHON, "manage.py", "shell", "--no-imports", "-c", COUNT_ROWS],
        cwd=DJANGO_PROJECT, env=dict(os.environ, **env), capture_output=True, text=True, check=True,
    )
    return json.loads(completed.stdout)


def database_env(database):
    return {name: value for name, value in database.items() if name.startswith("OAUTHOPS_")}


def mode_and_owner(path):
    info = os.stat(path)
    return stat.S_IMODE(info.st_mode), info.st_uid


# -- systemd, as systemd reads a unit ------------------------------------------------------------


def read_unit(path):
    """{section: {key: [values]}} of a unit file (one line per setting, as the role writes them)."""
    sections, current = {}, None
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _sep, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_words(value, variables=True):
    """The words systemd reads in ExecStart= (or, variables=False, in a list of paths such as ReadWritePaths=):
    quotes, C escapes, specifiers (%%) and, in a command, variables ($$). Only what the role writes: every word
    in double quotes."""
    words = re.findall(r'"((?:[^"\\]|\\.)*)"(?:\s+|$)', value)
    assert " ".join('"%s"' % word for word in words) == value, "not the role's quoting: %r" % value
    words = [re.sub(r"\\(.)", r"\1", word).replace("%%", "%") for word in words]
    return [word.replace("$$", "$") for word in words] if variables else words


def start_as_systemd(service, extra=()):
    """Start the service's ExecStart the way systemd starts a oneshot service with User=, Group=,
    WorkingDirectory= and Environment=: as that user and group (and its supplementary groups), in that
    directory, with the environment systemd gives it (USER, LOGNAME, HOME, SHELL and the unit's own), stdin
    /dev/null. Not what systemd adds around it (namespaces, the sandbox), which needs systemd as PID 1."""
    settings = service["Service"]
    user = pwd.getpwnam(settings["User"][0])
    assert settings["Group"] == [str(user.pw_gid)]
    env = {"USER": user.pw_name, "LOGNAME": user.pw_name, "HOME": user.pw_dir, "SHELL": user.pw_shell}
    for assignment in settings.get("Environment", []):
        name, _sep, value = assignment.partition("=")
        env[name] = value
    (command,) = settings["ExecStart"]
    argv = unit_words(command) + list(extra)
    directory = settings["WorkingDirectory"][0].replace("%%", "%")
    return subprocess.Popen(
        as_user(user, ["env", "-i"] + ["%s=%s" % item for item in env.items()] + argv),
        cwd=directory, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, umask=0o027,
    )
