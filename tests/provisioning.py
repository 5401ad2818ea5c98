"""Databases for the tests: a fresh one per backend and test session, dropped afterwards.

A backend whose server cannot be reached is skipped with a loud line in the summary
(see conftest.py), or fails the run under --require-backends (CI).

Durability is off where no test needs it: SQLite files live wherever the session's temporary
directory is (the suite puts it on tmpfs), and PostgreSQL test databases commit without waiting for
the WAL flush (synchronous_commit=off, set per database: the server's own settings are untouched).
"""

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import dbservers
import leftovers

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DJANGO_PROJECT = TESTS / "django_project"
BACKENDS = ("sqlite", "postgresql", "mysql")

untested = {}


@contextlib.contextmanager
def users_lock():
    """Hold a lock while adding or deleting users and groups, so that sessions side by side
    (tests/tools/suite) never race: useradd fails outright while another one holds /etc/passwd.

    The lock is an flock on /etc/passwd itself (useradd and userdel take other locks, never this one), so
    it leaves no file behind. A session that is not root creates no users, and takes no lock."""
    if os.geteuid() != 0:
        yield
        return
    import fcntl

    with open("/etc/passwd", encoding="utf-8") as passwd:
        fcntl.flock(passwd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(passwd, fcntl.LOCK_UN)


@contextlib.contextmanager
def system_user(what, *useradd_options, remove_home=False):
    """A system user of this session's own, `oauthops-TAG-what` (tests/leftovers.py), deleted afterwards
    (with its home when remove_home)."""
    import pwd

    name = leftovers.name(what)
    with users_lock():  # useradd fails outright while another session holds /etc/passwd
        subprocess.run(["useradd", "--system", *useradd_options, name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        delete_user(name, remove_home)


def delete_user(name, remove_home=False):
    """userdel, once the user's last process has ended (an ssh session or a job that is still exiting
    would make userdel refuse); fails if one is still there after 15 s."""
    deadline = time.monotonic() + 15
    while subprocess.run(["pgrep", "-u", name], capture_output=True, check=False).returncode == 0:
        if time.monotonic() > deadline:
            raise AssertionError("user %s still runs processes: %s" % (
                name, subprocess.run(["ps", "-u", name, "-o", "pid,args"], capture_output=True, text=True,
                                     check=False).stdout))
        time.sleep(0.2)
    with users_lock():
        subprocess.run(["userdel", *(["--remove"] if remove_home else []), name], check=True,
                       capture_output=True)


@contextlib.contextmanager
def system_group(what, members):
    """A system group of this session's own, `oauthops-TAG-what`, with these members; deleted afterwards."""
    import grp

    name = leftovers.name(what)
    with users_lock():
        subprocess.run(["groupadd", "--system", "--users", ",".join(members), name], check=True)
    try:
        yield grp.getgrnam(name)
    finally:
        with users_lock():
            subprocess.run(["groupdel", name], check=True)


def application_spec():
    """plugins/module_utils/_application_spec.py (plain Python), for tests that declare applications in the
    modules' own vocabulary: its argument spec and its GRANT_TYPES."""
    import importlib.util

    path = REPO / "plugins" / "module_utils" / "_application_spec.py"
    spec = importlib.util.spec_from_file_location("oauthops_application_spec", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def selected_backends(config, default=BACKENDS):
    """The backends --backend chose (tests/conftest.py), in the order given, else `default`."""
    return list(config.oauthops_backends or default)


def uses_real_hasher(item, backend):
    """Whether a test hashes with the project's default hasher (PBKDF2): under --hasher real, or when it is
    marked real_hasher and runs on SQLite. Hashing does not depend on the database, so PBKDF2's ~0.4 s per
    hash is paid once per test; on the other backends the same test hashes with MD5."""
    if item.config.getoption("hasher") == "real":
        return True
    return item.get_closest_marker("real_hasher") is not None and backend == "sqlite"


# Set by tests/conftest.py from --require-backends: the backends whose absence fails the run.
required = set()


def backend_unavailable(backend, reason):
    if backend in required:
        pytest.fail("required backend %s is not reachable: %s" % (backend, reason), pytrace=False)
    untested[backend] = reason
    # A developer without that server still gets the other backends; CI runs with
    # --require-backends, so there this is a failure, never a skip.
    pytest.skip(
        "%s NOT TESTED: %s (start one, or point OAUTHOPS_TEST_%s_URL at one)"
        % (backend, reason, "POSTGRES" if backend == "postgresql" else "MYSQL")
    )


@contextlib.contextmanager
def provisioned_database(backend, workdir):
    """Yield the environment that points tests/django_project at a fresh database."""
    if backend == "sqlite":
        # An empty file is an empty SQLite database; the modules refuse a missing one.
        path = Path(workdir) / "test.sqlite3"
        path.touch()
        yield {"OAUTHOPS_TEST_DB": "sqlite", "OAUTHOPS_TEST_DB_NAME": str(path)}
        return
    try:
        server = dbservers.discover(backend)
    except dbservers.Unavailable as exc:
        backend_unavailable(backend, str(exc))
    name = server.create_database("test")
    try:
        yield server.django_env(name)
    finally:
        server.drop_database(name)


def migrate(env, python=sys.executable, database="default"):
    """Apply every migration of the test project to the database `env` names (or its alias `database`)."""
    subprocess.run(
        [python, "manage.py", "migrate", "--database", database, "--verbosity", "0"],
        cwd=DJANGO_PROJECT,
        env=dict(os.environ, **env),
        check=True,
    )
