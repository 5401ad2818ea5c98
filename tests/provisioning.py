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
from pathlib import Path

import pytest

import dbservers

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DJANGO_PROJECT = TESTS / "django_project"
BACKENDS = ("sqlite", "postgresql", "mysql")

untested = {}


@contextlib.contextmanager
def machine_lock(name):
    """Hold a lock on one piece of the machine's shared state (the test users and groups, the cron daemon)
    while changing or using it, so that sessions side by side (tests/tools/suite, pytest -n) never race.

    The lock file is in /run/lock, which only root changes state under; a session that is not root creates
    no users, and takes no lock."""
    if os.geteuid() != 0:
        yield
        return
    import fcntl

    directory = "/run/lock" if os.path.isdir("/run/lock") else "/run"
    with open(os.path.join(directory, "oauthops-tests-%s.lock" % name), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def system_user(name, *useradd_options):
    """The system user `name`, created (useradd --system) when missing, under the users lock."""
    import pwd

    with machine_lock("users"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            subprocess.run(["useradd", "--system", *useradd_options, name], check=True)
            return pwd.getpwnam(name)


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
    name = server.create_database("oauthops_test_")
    try:
        yield server.django_env(name)
    finally:
        server.drop_database(name)


def migrate(env, python=sys.executable):
    """Apply every migration of the test project to the database `env` names."""
    subprocess.run(
        [python, "manage.py", "migrate", "--verbosity", "0"],
        cwd=DJANGO_PROJECT,
        env=dict(os.environ, **env),
        check=True,
    )
