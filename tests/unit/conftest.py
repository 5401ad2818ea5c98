"""The Django side in-process, on a real database of the backend named by
OAUTHOPS_UNIT_BACKEND (default sqlite), with the exact package the bridge ships."""

import os
import shutil
import sys

import pytest

from provisioning import DJANGO_PROJECT, REPO, provisioned_database

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


@pytest.fixture(scope="session", autouse=True)
def django_database(tmp_path_factory):
    backend = os.environ.get("OAUTHOPS_UNIT_BACKEND", "sqlite")
    with provisioned_database(backend, tmp_path_factory.mktemp("db")) as env:
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
        sys.path[:0] = [str(DJANGO_PROJECT), str(ship_side_package(tmp_path_factory.mktemp("side")))]
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        yield env
        from django.db import connections

        connections.close_all()


@pytest.fixture(autouse=True)
def empty_tables():
    yield
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import get_application_model

    get_application_model().objects.all().delete()
    get_user_model().objects.all().delete()


# A run of the whole differential file must have seen each category of the installed rule set
# delete rows in some case; a run narrowed with -k, --deselect or a node id is not held to it.
DIFFERENTIAL_FILE = "test_cleanup_differential.py"
narrowed = []
tally = []


def pytest_deselected(items):
    narrowed.extend(item.nodeid for item in items if DIFFERENTIAL_FILE + "::" in item.nodeid)


def pytest_sessionfinish(session, exitstatus):
    import token_graphs

    exercised = token_graphs.exercised
    whole_file = not narrowed and not any(DIFFERENTIAL_FILE + "::" in arg for arg in session.config.args)
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
