"""The pre-flight "migrations applied?" check (require_migrated): it reads only the migration
packages of the apps involved and their rows of django_migrations, and must agree with what
Django's own MigrationLoader (the one manage.py migrate uses) counts as unapplied in those apps,
squashed migrations included."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ship_side_package
from provisioning import DJANGO_PROJECT, provisioned_database

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migration_probe.py")


def side():
    from oauthops_django_side import _django_migrations

    return _django_migrations


def core():
    from oauthops_django_side import _django_core

    return _django_core


def dot_migrations():
    return sorted(name for _app, name in side().disk_migrations("oauth2_provider"))


def application_and_token_models():
    from oauth2_provider import models as dot

    return [dot.get_application_model(), dot.get_access_token_model(), dot.get_refresh_token_model(),
            dot.get_id_token_model(), dot.get_grant_model()]


def djangos_view(labels):
    """What Django's MigrationLoader (the one migrate uses) holds unapplied among the apps `labels`:
    the nodes of its graph, squashed migrations resolved, that it does not count as applied."""
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connection)
    return sorted(key for key in loader.graph.nodes if key[0] in labels and key not in loader.applied_migrations)


def test_a_migrated_database_passes():
    from django.db import connection

    side().require_migrated("default", application_and_token_models())
    assert side().pending_migrations(connection, ["oauth2_provider", "testapp"]) == []


def test_one_migration_rolled_back_is_named_alone():
    from django.core.management import call_command
    from django.db import connection
    from django.test import override_settings

    names = dot_migrations()
    call_command("migrate", "oauth2_provider", names[-2], verbosity=0)
    try:
        with pytest.raises(core().OperationError) as failure:
            side().require_migrated("default", application_and_token_models())
        assert failure.value.kind == "not_migrated"
        assert failure.value.message == (
            "oauth2_provider migrations not applied on database 'default' (oauth2_provider.%s): run manage.py migrate"
            % names[-1]
        )
        assert side().pending_migrations(connection, ["oauth2_provider"]) == djangos_view(["oauth2_provider"])
        # MIGRATION_MODULES = None: Django treats the app as unmigrated, and so does the check.
        with override_settings(MIGRATION_MODULES={"oauth2_provider": None}):
            side().require_migrated("default", application_and_token_models())
    finally:
        call_command("migrate", verbosity=0)
    side().require_migrated("default", application_and_token_models())


def probe(tmp_path, steps, settings="testproject.settings", extra_path=(), **env):
    """Run migration_probe.py on a fresh database of this session's backend."""
    side_dir = tmp_path / "side"
    side_dir.mkdir()
    ship_side_package(side_dir)
    # The session fixture (conftest.py) pointed the environment at this session's backend.
    with provisioned_database(os.environ["OAUTHOPS_TEST_DB"], tmp_path) as db_env:
        run_env = dict(os.environ, **db_env, **env)
        run_env["DJANGO_SETTINGS_MODULE"] = settings
        run_env["PYTHONPATH"] = os.pathsep.join([str(DJANGO_PROJECT), str(side_dir)] + [str(p) for p in extra_path])
        done = subprocess.run([sys.executable, PROBE], input=json.dumps(steps), env=run_env, cwd=str(tmp_path),
                              capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_fresh_database_names_the_first_migrations(tmp_path):
    names = dot_migrations()
    message, pending = probe(tmp_path, [{"check": "tokens"}, {"pending": ["oauth2_provider"]}])
    assert message == (
        "oauth2_provider migrations not applied on database 'default' (oauth2_provider.%s, oauth2_provider.%s, "
        "oauth2_provider.%s and %d more): run manage.py migrate" % (names[0], names[1], names[2], len(names) - 3)
    )
    assert pending["ours"] == [["oauth2_provider", name] for name in names] == pending["django"]


def test_a_swapped_application_model_is_checked_in_its_own_app(tmp_path):
    labels = ["oauth2_provider", "swappedapp"]
    before, pending_before, _migrated, after, _unrecorded, missing, pending_missing = probe(tmp_path, [
        {"check": "application"},
        {"pending": labels},
        {"migrate": []},
        {"check": "application"},
        {"unrecord": ["swappedapp", "0001_initial"]},
        {"check": "application"},
        {"pending": labels},
    ], OAUTHOPS_TEST_SWAPPED_APPLICATION="1")
    assert before.startswith("oauth2_provider and swappedapp migrations not applied on database 'default' (")
    assert pending_before["ours"] == pending_before["django"]
    assert ["swappedapp", "0001_initial"] in pending_before["ours"]
    assert after is None
    assert missing == (
        "swappedapp migrations not applied on database 'default' (swappedapp.0001_initial): run manage.py migrate"
    )
    assert pending_missing["ours"] == pending_missing["django"] == [["swappedapp", "0001_initial"]]


MIGRATION = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    {body}
"""
THING = "migrations.CreateModel('Thing', [('id', models.AutoField(primary_key=True)){fields}])"
SIZE = "('size', models.IntegerField(default=0))"


def squashed_app(root):
    """An app whose migrations live where MIGRATION_MODULES says, with 0001 and 0002 squashed into
    0001_squashed_0002 (all three on disk, as during a squash's transition) and a 0003 after them,
    next to files that are not migrations."""
    (root / "squashapp").mkdir(parents=True)
    (root / "squashapp" / "__init__.py").write_text("")
    (root / "squashapp" / "models.py").write_text(textwrap.dedent("""\
        from django.db import models


        class Thing(models.Model):
            size = models.IntegerField(default=0)
            colour = models.CharField(max_length=10, default="")
        """))
    package = root / "squash_migrations"
    (package / "fixtures").mkdir(parents=True)
    (package / "fixtures" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "_helpers.py").write_text("NOT_A_MIGRATION = True\n")
    (package / "notes.txt").write_text("not a module\n")
    migrations = {
        "0001_initial": "initial = True\n    operations = [%s]" % THING.format(fields=""),
        "0002_thing_size": "dependencies = [('squashapp', '0001_initial')]\n"
                           "    operations = [migrations.AddField('thing', 'size', models.IntegerField(default=0))]",
        "0001_squashed_0002_thing_size": "initial = True\n"
                                         "    replaces = [('squashapp', '0001_initial'), ('squashapp', '0002_thing_size')]\n"
                                         "    operations = [%s]" % THING.format(fields=", " + SIZE),
        "0003_thing_colour": "dependencies = [('squashapp', '0002_thing_size')]\n"
                             "    operations = [migrations.AddField('thing', 'colour', "
                             "models.CharField(max_length=10, default=''))]",
    }
    for name, body in migrations.items():
        (package / (name + ".py")).write_text(MIGRATION.format(body=body))
    (root / "squash_settings.py").write_text(textwrap.dedent("""\
        from testproject.settings import *  # noqa: F401,F403

        INSTALLED_APPS = INSTALLED_APPS + ["squashapp"]  # noqa: F405
        MIGRATION_MODULES = {"squashapp": "squash_migrations"}
        """))
    return root


def test_squashed_migrations_count_as_djangos_loader_counts_them(tmp_path):
    app = squashed_app(tmp_path / "app")
    squashed = ["squashapp", "0001_squashed_0002_thing_size"]
    first, second = ["squashapp", "0001_initial"], ["squashapp", "0002_thing_size"]
    pending = {"pending": ["squashapp"]}
    results = probe(tmp_path, [
        pending,                                        # fresh: the squash stands in for 0001 and 0002
        {"migrate": []},
        pending,                                        # migrated: nothing
        {"unrecord": second},
        pending,                                        # partly applied: the squash cannot be used, 0002 is pending
        {"record": second}, {"unrecord": squashed},
        pending,                                        # every replaced one recorded: applied, recorded or not
        {"unrecord": first}, {"unrecord": second}, {"record": squashed},
        pending,                                        # recorded, but none it replaces is: not applied
    ], settings="squash_settings", extra_path=[app])
    views = [result for result in results if isinstance(result, dict)]
    for view in views:
        assert view["ours"] == view["django"]
    assert [view["ours"] for view in views] == [
        [squashed, ["squashapp", "0003_thing_colour"]],
        [],
        [second],
        [],
        [squashed],
    ]
