"""The Django side in-process, on a real database of the backend --backend names (one per session,
default sqlite), with the exact package the bridge ships.

Django is set up once per process, so the backend and the project's model variant (--models) are fixed
for a session. A test runs in the sessions its `models` marker names (unmarked: stock models only), so
`pytest tests/unit --models custom-user` runs exactly the tests that variant is for. Client secrets hash
with MD5 unless the test is marked real_hasher (or --hasher real).
"""

import contextlib
import os
import shutil
import sys

import pytest

from provisioning import DJANGO_PROJECT, REPO, provisioned_database, selected_backends, uses_real_hasher

# What each --models variant asks of the project's settings (before its first migration).
MODEL_VARIABLES = {
    "stock": {},
    "custom-user": {"OAUTHOPS_TEST_CUSTOM_USER": "1", "OAUTHOPS_TEST_SWAPPED_APPLICATION": "1"},
    "swapped-tokens": {"OAUTHOPS_TEST_SWAPPED_TOKENS": "1"},
    "routed": {},  # OAUTHOPS_TEST_OAUTH_DB_NAME: a second database, provisioned below
}

# The Django side, as the bridge ships it and the token_cleanup role copies it: every _django_*.py
# of plugins/module_utils (test_side_layout.py checks that the bridge's list is that set).
SIDE_FILES = tuple(sorted(path.name for path in (REPO / "plugins" / "module_utils").glob("_django_*.py")))


def ship_side_package(directory):
    """Lay the Django side out as the bridge does: a package named oauthops_django_side."""
    package = directory / "oauthops_django_side"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in SIDE_FILES:
        shutil.copy(REPO / "plugins" / "module_utils" / name, package / name)
    return directory


def session_backend(config):
    """The one backend of this session."""
    backends = selected_backends(config, default=["sqlite"])
    if len(backends) != 1:
        raise pytest.UsageError(
            "unit tests set Django up once per process, so a session runs on one backend: --backend %s "
            "(tests/tools/suite runs every backend, side by side)" % backends[0]
        )
    return backends[0]


def pytest_configure(config):
    config.oauthops_unit_backend = session_backend(config)


def pytest_collection_modifyitems(config, items):
    """Keep the tests meant for this session's model variant (and backend: one_backend tests run on SQLite only)."""
    variant = config.getoption("models")
    sqlite = config.oauthops_unit_backend == "sqlite"
    kept, deselected = [], []
    for item in items:
        marker = item.get_closest_marker("models")
        wanted = variant in (marker.args if marker else ("stock",)) and (sqlite or not item.get_closest_marker("one_backend"))
        (kept if wanted else deselected).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session", autouse=True)
def django_database(tmp_path_factory, pytestconfig):
    backend = pytestconfig.oauthops_unit_backend
    variant = pytestconfig.getoption("models")
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(provisioned_database(backend, tmp_path_factory.mktemp("db")))
        if variant == "routed":
            oauth = stack.enter_context(provisioned_database(backend, tmp_path_factory.mktemp("oauth-db")))
            env = dict(env, OAUTHOPS_TEST_OAUTH_DB_NAME=oauth["OAUTHOPS_TEST_DB_NAME"])
        os.environ.update(env)
        os.environ.update(MODEL_VARIABLES[variant])
        if pytestconfig.getoption("hasher") == "fast":
            os.environ["OAUTHOPS_TEST_FAST_HASHER"] = "1"
        os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
        sys.path[:0] = [str(DJANGO_PROJECT), str(ship_side_package(tmp_path_factory.mktemp("side")))]
        import django
        from django.conf import settings
        from django.core.management import call_command

        django.setup()
        for alias in settings.DATABASES:
            call_command("migrate", database=alias, verbosity=0)
        yield env
        from django.db import connections

        connections.close_all()


@pytest.fixture(autouse=True)
def hasher(request):
    """The project's default hashers (PBKDF2 first) for a test marked real_hasher, on SQLite; else the session's."""
    if not uses_real_hasher(request.node, request.config.oauthops_unit_backend):
        yield "fast" if os.environ.get("OAUTHOPS_TEST_FAST_HASHER") else "real"
        return
    from django.conf import global_settings
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=global_settings.PASSWORD_HASHERS):
        yield "real"


@pytest.fixture(autouse=True)
def empty_tables():
    yield
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import router
    from oauth2_provider.models import get_application_model

    applications = get_application_model()
    home = router.db_for_write(applications)
    applications._base_manager.using(home).all().delete()
    for alias in settings.DATABASES:
        users = get_user_model()._base_manager.using(alias).all()
        # Elsewhere (--models routed) DOT has no table for a delete to cascade to.
        users.delete() if alias == home else users._raw_delete(alias)


# A run of the whole differential file must have seen each category of the installed rule set
# delete rows in some case; a run narrowed with -k, --deselect or a node id is not held to it.
DIFFERENTIAL_FILE = "test_cleanup_differential.py"
narrowed = []
tally = []


@pytest.fixture
def drawn_secrets(monkeypatch):
    """Every client secret DOT's generator draws while the test runs (the module's own call and the
    model field's default both go through it)."""
    from oauth2_provider.generators import ClientSecretGenerator

    drawn = []
    draw = ClientSecretGenerator.hash

    def recording(generator):
        drawn.append(draw(generator))
        return drawn[-1]

    monkeypatch.setattr(ClientSecretGenerator, "hash", recording)
    return drawn


def pytest_deselected(items):
    narrowed.extend(item.nodeid for item in items if DIFFERENTIAL_FILE + "::" in item.nodeid)


def pytest_sessionfinish(session, exitstatus):
    import token_graphs

    exercised = token_graphs.exercised
    whole_file = (
        not narrowed
        and not any(DIFFERENTIAL_FILE + "::" in arg for arg in session.config.args)
        and not session.config.getoption("keyword")
        and not session.config.getoption("markexpr")
    )
    if exitstatus != 0 or not whole_file or not exercised.cases:
        return
    from datetime import datetime, timezone

    from oauthops_django_side import _django_cleanup_rules as rules

    moment = datetime.now(timezone.utc)
    every_cutoff = {"now": moment, "refresh_revoked_at": moment, "refresh_expire_at": moment}
    missing = []
    for rule_set, hit in sorted(exercised.categories.items()):
        names = [category.name for category in rules.categories(rule_set, every_cutoff)]
        missing += ["%s (rules %s)" % (name, rule_set) for name in names if name not in hit]
    if missing:
        tally.append(
            "FAILED: in %d differential cases clear_expired() never deleted any %s: the graphs do not exercise "
            "those rules" % (exercised.cases, ", ".join(missing))
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        tally.append("differential cases: %d; each category deleted rows in some of them" % exercised.cases)


def pytest_terminal_summary(terminalreporter):
    for line in tally:
        terminalreporter.write_line(line, red=line.startswith("FAILED"), bold=True)
