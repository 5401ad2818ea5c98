"""The Django side in-process, on a real database of the backend named by
OAUTHOPS_UNIT_BACKEND (default sqlite), with the exact package the bridge ships."""

import os
import shutil
import sys

import pytest

from provisioning import DJANGO_PROJECT, REPO, provisioned_database

SIDE_FILES = ("_django_side.py", "_django_applications.py", "_django_cleanup.py", "_django_cleanup_rules.py")


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
