# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pre-flight check every operation runs before it touches a table: are its apps migrated?

`require_migrated()` fails with one line ("oauth2_provider migrations not applied on database
'oauth' (...): run manage.py migrate --database oauth") instead of the database error a missing
table or column would give midway. `pending_migrations()` is the answer of manage.py migrate's loader for a few
apps, found without building the project's migration graph. Django is imported inside functions:
Ansible imports this file (to ship it) on hosts without Django.
"""

from __future__ import annotations

import importlib

from ._django_core import OperationError


def require_migrated(database: str, models: list) -> None:
    """Fail with one line when the tables behind `models` are not migrated on `database`.

    Only the apps that hold those tables are checked: oauth2_provider (its tables are what deleting
    an application cascades to) and the app of each swapped model. Their own migrations imply their
    dependencies (manage.py migrate applies those first, and refuses a history where a migration is
    recorded before one it depends on), so the cost of this check follows these apps, never the size
    of the project: no migration graph is built, no other app's migrations are imported.

    Recorded migrations are not enough: `migrate` on a database that the project's routers keep an
    app off (allow_migrate) records its migrations there without creating a table. So the models'
    own tables must exist too (one query of the database's table names).
    """
    from django.db import DEFAULT_DB_ALIAS, connections

    database = database or DEFAULT_DB_ALIAS
    connection = connections[database]
    app_labels = sorted({model._meta.app_label for model in models} | {"oauth2_provider"})
    pending = pending_migrations(connection, app_labels)
    if pending:
        apps_behind = sorted({app for app, _name in pending}, key=app_labels.index)
        names = ", ".join("%s.%s" % key for key in pending[:3])
        more = " and %d more" % (len(pending) - 3) if len(pending) > 3 else ""
        raise OperationError(
            "not_migrated",
            "%s migrations not applied on database '%s' (%s%s): run manage.py migrate%s"
            % (" and ".join(apps_behind), database, names, more, migrate_option(database)),
        )
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
    missing = [model for model in models if model._meta.db_table not in tables]
    if missing:
        raise OperationError("not_migrated", _missing_tables(database, missing))


def _missing_tables(database: str, missing: list) -> str:
    from django.db import router

    plural = len(missing) > 1
    subject = "the table%s %s %s not on database '%s', although the migrations that create %s are recorded there" % (
        "s" if plural else "", ", ".join(model._meta.db_table for model in missing), "are" if plural else "is",
        database, "them" if plural else "it")
    refused = [model._meta.label for model in missing if not router.allow_migrate_model(database, model)]
    if refused:
        return (
            "%s: the project's DATABASE_ROUTERS do not migrate %s on '%s' (allow_migrate); work on the database "
            "they are migrated on (leave database unset to follow the routers)" % (subject, " and ".join(refused), database)
        )
    return "%s (applied with --fake, or dropped since)" % subject


def migrate_option(database: str) -> str:
    """What `manage.py migrate` needs to work on `database`: nothing for the default alias."""
    from django.db import DEFAULT_DB_ALIAS

    return "" if database == DEFAULT_DB_ALIAS else " --database %s" % database


def disk_migrations(app_label: str) -> dict:
    """{(app_label, name): Migration class} of one app's migrations package, found as Django's
    MigrationLoader finds them: settings.MIGRATION_MODULES first, else the app's `migrations`
    package; modules whose names start with '_' or '~' and subpackages are not migrations; an app
    without migrations (or with MIGRATION_MODULES set to None for it) has none to apply."""
    import pkgutil

    from django.db.migrations.exceptions import BadMigrationError
    from django.db.migrations.loader import MIGRATIONS_MODULE_NAME, MigrationLoader

    module_name, explicit = MigrationLoader.migrations_module(app_label)
    if module_name is None:
        return {}
    try:
        package = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not explicit and MIGRATIONS_MODULE_NAME in (exc.name or "").split("."):
            return {}
        raise
    path = getattr(package, "__path__", None)
    # A migrations.py module, or an empty directory (a namespace package): an unmigrated app.
    if path is None or (getattr(package, "__file__", None) is None and not isinstance(path, list)):
        return {}
    found = {}
    for _finder, name, is_package in pkgutil.iter_modules(path):
        if is_package or name[0] in "_~":
            continue
        module = importlib.import_module("%s.%s" % (module_name, name))
        if not hasattr(module, "Migration"):
            raise BadMigrationError("Migration %s in app %s has no Migration class" % (name, app_label))
        found[app_label, name] = module.Migration
    return found


def pending_migrations(connection, app_labels: list) -> list:
    """The migrations of `app_labels` that manage.py migrate would still apply, sorted.

    Squashed migrations count as Django's loader counts them: one is applied when every migration it
    replaces (a nested squash resolved to the migrations it replaces in turn) is recorded, whatever
    the record of the squashed one itself says; it stands in for the migrations it replaces when all
    or none of them are recorded, and when only some are, the unrecorded ones are what is pending.
    """
    from django.db.migrations.recorder import MigrationRecorder

    on_disk = {}
    for app_label in app_labels:
        on_disk.update(disk_migrations(app_label))
    if not on_disk:
        return []
    recorder = MigrationRecorder(connection)
    applied = set()
    if recorder.has_table():
        # Only the rows of these apps (and of the apps squashed migrations name), not the whole table.
        labels = sorted({key[0] for key in on_disk} | {replaced[0] for m in on_disk.values() for replaced in m.replaces})
        applied = set(recorder.migration_qs.filter(app__in=labels).values_list("app", "name"))
    nodes = set(on_disk)
    done = {}

    def resolved(key):
        keys = set()
        for replaced in on_disk[key].replaces:
            replaced = tuple(replaced)
            keys.update(resolved(replaced) if on_disk.get(replaced) and on_disk[replaced].replaces else {replaced})
        return keys

    def replace(key):
        if done.get(key):
            return
        if key in done:
            raise OperationError("internal", "cyclical squash replacement found, starting at %s.%s" % key)
        done[key] = False
        for replaced in on_disk[key].replaces:
            if on_disk.get(tuple(replaced)) and on_disk[tuple(replaced)].replaces:
                replace(tuple(replaced))
        statuses = [target in applied for target in resolved(key)]
        if all(statuses):
            applied.add(key)
        else:
            applied.discard(key)
        if all(statuses) or not any(statuses):
            nodes.difference_update(tuple(replaced) for replaced in on_disk[key].replaces)
        else:
            nodes.discard(key)
        done[key] = True

    for key in sorted(on_disk):
        if on_disk[key].replaces:
            replace(key)
    return sorted(nodes - applied)
