"""The roles through real ansible-playbook runs, and the installed cron job run exactly as cron runs it.

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
import secrets
import shlex
import shutil
import site
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning import DJANGO_PROJECT, REPO, migrate, provisioned_database

APP_USER = "oauthops-cron-test"
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
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(APP_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", APP_USER],
            check=True,
        )
        return pwd.getpwnam(APP_USER)


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
    probe = as_user(app_user, [PROJECT_PYTHON, "-c", "import django, oauth2_provider"])
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
    (site_packages / "project-venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
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
    }
    values.update(("token_cleanup_" + option, value) for option, value in options.items())
    return values


def inventory(path, hosts, group="jobs"):
    path.write_text(json.dumps({"all": {"children": {group: {"hosts": hosts}}}}))
    return ["-i", str(path)]


def changed_per_host(output):
    recap = re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s", output, re.MULTILINE)
    return {host: int(changed) for host, changed in recap if host != "localhost"}


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
    """Cron's `%` rule: an unescaped `%` ends the command, the rest (each `%` a newline) is stdin."""
    command, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "\\" and text[index + 1:index + 2] == "%":
            command.append("%")
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


# -- token_cleanup -------------------------------------------------------------------------------


def test_the_cron_line_deletes_expired_tokens_once_at_a_time(
    role_playbook, job_database, app_user, app_python, scratch
):
    backend = job_database["backend"]
    db_env = database_env(job_database)
    canary = "canary-" + secrets.token_hex(8)
    base = host_root(scratch, "cron-" + backend)
    name = "cleanup-" + backend
    # A space and a percent sign in the job's directory: shell quoting and cron's % escaping.
    job = job_vars(
        base, name, app_user, app_python,
        directory=str(base / "lib" / (name + " 100%")),
        environment=dict(db_env, OAUTHOPS_TEST_CANARY=canary),
        batch_size=1, batch_interval=0.2,  # a run of ~4 s, for a second one to collide with
    )
    hosts = inventory(role_playbook.workdir / "inv.json", {name: job})
    output = role_playbook.run("role_token_cleanup.yml", None, *hosts, "--diff", "-v")
    assert changed_per_host(output)[name] > 0
    assert canary not in output

    cron_file = Path(job["token_cleanup_cron_file"])
    environment, jobs = read_cron_file(cron_file)
    assert len(jobs) == 1 and jobs[0].user == app_user.pw_name and jobs[0].schedule == "17 * * * *"
    # The environment's values stay in the environment file: the canary, and the database's name and password.
    for value in (canary, db_env["OAUTHOPS_TEST_DB_NAME"], db_env.get("OAUTHOPS_TEST_DB_PASSWORD")):
        assert not value or value not in cron_file.read_text()
    env_file = Path(job["token_cleanup_directory"]) / "environment.json"
    assert json.loads(env_file.read_text())["OAUTHOPS_TEST_CANARY"] == canary
    assert mode_and_owner(env_file) == (0o600, app_user.pw_uid)
    log_file = Path(job["token_cleanup_log_file"])
    assert mode_and_owner(log_file) == (0o640, app_user.pw_uid)
    assert mode_and_owner(cron_file)[0] == 0o644

    seed_tokens(db_env, name)
    assert token_rows(db_env) == SEEDED_ROWS
    first = start_as_cron(jobs[0], environment)
    wait_until_locked(Path(job["token_cleanup_directory"]) / "cleanup.lock")
    started = time.monotonic()
    second = finish(start_as_cron(jobs[0], environment))
    assert first.poll() is None, "the first run should still hold the lock"
    # flock -n: the second copy gives up at once, silently (nothing for cron to mail), status 1.
    assert second == (1, "", "")
    assert time.monotonic() - started < 3
    rc, stdout, stderr = finish(first)
    assert (rc, stdout, stderr) == (0, "", ""), "a successful run prints nothing: %s" % stderr

    entries = log_entries(log_file)
    assert len(entries) == 1, "one line per run, none for the copy that found the lock taken"
    timestamp, fields = entries[0]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", timestamp)
    assert {name: fields[name] for name in DELETED_BY_ENGINE["oauthops"]} == DELETED_BY_ENGINE["oauthops"]
    assert (fields["engine"], fields["total"], fields["batches"], fields["complete"]) == ("oauthops", 18, 18, True)
    assert fields["elapsed"] > 3  # 17 pauses of 0.2 s between the batches
    assert token_rows(db_env) == KEPT_ROWS
    assert mode_and_owner(log_file) == (0o640, app_user.pw_uid)
    if backend == "sqlite":  # the engine's own lock file, made by the run: it ran as the user
        assert os.stat(db_env["OAUTHOPS_TEST_DB_NAME"] + ".oauthops-cleanup.lock").st_uid == app_user.pw_uid


def test_a_failed_run_says_why_in_one_line_and_cleartokens_runs_dot(role_playbook, app_user, app_python, scratch):
    base = host_root(scratch, "failing")
    db_env = sqlite_database(scratch, app_user)
    jobs = {
        "broken": job_vars(base, "broken", app_user, app_python, settings="testproject.missing_settings",
                           environment=db_env),
        "dot": job_vars(base, "dot", app_user, app_python, engine="cleartokens", environment=db_env,
                        special_time="daily", mailto="ops@example.com"),
    }
    role_playbook.run("role_token_cleanup.yml", None, *inventory(role_playbook.workdir / "inv.json", jobs))

    environment, (broken,) = read_cron_file(jobs["broken"]["token_cleanup_cron_file"])
    rc, stdout, stderr = finish(start_as_cron(broken, environment))
    assert (rc, stdout) == (1, "")
    assert stderr == (
        "oauthops token cleanup failed: settings module 'testproject.missing_settings' not found "
        "(project_path and pythonpath are searched first)\n"
    )
    ((_timestamp, fields),) = log_entries(jobs["broken"]["token_cleanup_log_file"])
    assert fields["failed"] is True and fields["error"].startswith("settings module 'testproject.missing_settings'")

    environment, (dot,) = read_cron_file(jobs["dot"]["token_cleanup_cron_file"])
    assert environment == {"MAILTO": "ops@example.com"}
    assert dot.schedule == "@daily" and "--engine cleartokens" in dot.command
    seed_tokens(db_env, "dot")
    assert finish(start_as_cron(dot, environment)) == (0, "", "")
    ((_timestamp, fields),) = log_entries(jobs["dot"]["token_cleanup_log_file"])
    assert {name: fields[name] for name in DELETED_BY_ENGINE["cleartokens"]} == DELETED_BY_ENGINE["cleartokens"]
    assert (fields["engine"], fields["total"], fields["complete"]) == ("cleartokens", 18, True)
    assert token_rows(db_env) == KEPT_ROWS


def test_idempotent_check_mode_changes_nothing_and_absent_leaves_nothing(role_playbook, app_user, app_python, scratch):
    base = host_root(scratch, "lifecycle")
    empty = tree(base)
    hosts = {"job": job_vars(base, "job", app_user, app_python, environment={"SECRET": "s3cret"})}
    args = inventory(role_playbook.workdir / "inv.json", hosts)

    def apply(*extra):
        return changed_per_host(role_playbook.run("role_token_cleanup.yml", None, *(args + list(extra))))["job"]

    assert apply("--check") > 0
    assert tree(base) == empty, "check mode created files"
    assert apply() > 0
    installed = tree(base)
    assert "cron.d/job" in installed and "lib/job/oauthops_django_side/_django_cli.py" in installed
    assert apply() == 0, "the second run changed something"

    cron_file = Path(hosts["job"]["token_cleanup_cron_file"])
    before = cron_file.read_text()
    assert apply("--check", "-e", "token_cleanup_hour=3") == 1
    assert apply("--check", "-e", "token_cleanup_state=absent") > 0
    assert cron_file.read_text() == before and tree(base) == installed, "check mode changed the job"

    assert apply("-e", "token_cleanup_state=absent") > 0
    assert tree(base) == empty, "state=absent left files behind"
    assert apply("-e", "token_cleanup_state=absent") == 0


def test_only_the_chosen_host_of_a_cluster_runs_the_job(role_playbook, app_user, app_python, scratch):
    bases = {host: host_root(scratch, host) for host in ("web1", "web2", "web3")}
    hosts = {host: dict(job_vars(base, "cleanup", app_user, app_python), ansible_become=False)
             for host, base in bases.items()}
    args = inventory(role_playbook.workdir / "inv.json", hosts, group="oauthops_token_cleanup")
    shipped = str(REPO / "playbooks" / "token_cleanup.yml")

    def installed():
        return sorted(host for host, base in bases.items() if tree(base) != ["cron.d", "lib", "log"])

    output = role_playbook.run(shipped, {"token_cleanup_host": "web2"}, *args)
    assert installed() == ["web2"]
    changed = changed_per_host(output)
    assert changed["web2"] > 0 and changed["web1"] == changed["web3"] == 0

    output = role_playbook.run(shipped, {"token_cleanup_host": "web3"}, *args)
    assert installed() == ["web3"], "moving the job leaves nothing on the host it left"
    assert changed_per_host(output)["web2"] > 0

    output = role_playbook.run(shipped, {"token_cleanup_host": "web9"}, *args, expect_rc=2)
    assert "token_cleanup_host 'web9' is not in the inventory" in output
    assert installed() == ["web3"]


def test_the_role_refuses_root(role_playbook, app_python, scratch):
    base = host_root(scratch, "root")
    hosts = {"job": job_vars(base, "job", pwd.getpwuid(0), app_python)}
    output = role_playbook.run("role_token_cleanup.yml", None, *inventory(role_playbook.workdir / "inv.json", hosts),
                               expect_rc=2)
    assert "token_cleanup_user 'root' has uid 0" in output
    assert tree(base) == ["cron.d", "lib", "log"]


# -- applications ------------------------------------------------------------------------------


def test_applications_role_converges_and_keeps_secrets_out_of_the_output(playbook):
    secret = playbook.prefix + "-Vau1ted-s3cret"
    output = playbook.run("role_applications.yml", {"vaulted_secret": secret}, "-vvv", "--diff")
    generated = (playbook.workdir / "generated_secret").read_text()
    assert len(generated) >= 32
    assert secret not in output and generated not in output
    for line in ("%s-web: created", "%s-worker: created", "%s-web: unchanged", "%s-worker: unchanged"):
        assert line % playbook.prefix in output, "the summary names each application by client_id"
    assert "%s-broken: redirect_uris: " % playbook.prefix in output
