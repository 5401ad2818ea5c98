"""Databases for the tests: a fresh one per backend and test session, dropped afterwards.

A backend whose server cannot be reached is skipped with a loud line in the summary
(see conftest.py), or fails the run when it is listed in OAUTHOPS_REQUIRE_BACKENDS
(CI lists all three).
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


def application_spec():
    """plugins/module_utils/_application_spec.py (plain Python), for tests that declare applications in the
    modules' own vocabulary: its argument spec and its GRANT_TYPES."""
    import importlib.util

    path = REPO / "plugins" / "module_utils" / "_application_spec.py"
    spec = importlib.util.spec_from_file_location("oauthops_application_spec", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def required_backends():
    return {name for name in os.environ.get("OAUTHOPS_REQUIRE_BACKENDS", "").split(",") if name}


def backend_unavailable(backend, reason):
    if backend in required_backends():
        pytest.fail("required backend %s is not reachable: %s" % (backend, reason), pytrace=False)
    untested[backend] = reason
    # A developer without that server still gets the other backends; CI lists every backend in
    # OAUTHOPS_REQUIRE_BACKENDS, so there this is a failure, never a skip.
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
