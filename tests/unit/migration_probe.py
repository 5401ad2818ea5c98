"""Run by test_migration_check.py in a process of its own (a fresh database, other settings):
reads a list of steps as JSON on stdin, runs them in order, prints one JSON list of results.

Steps: {"migrate": [args]}, {"record": [app, name]}, {"unrecord": [app, name]},
{"check": "application" | "tokens"} (require_migrated: null or the error message), and
{"pending": [app labels]} (the check's pending migrations next to what Django's own
MigrationLoader holds unapplied for those apps).
"""

import json
import sys

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.migrations.loader import MigrationLoader  # noqa: E402
from django.db.migrations.recorder import MigrationRecorder  # noqa: E402
from oauthops_django_side import _django_core, _django_migrations  # noqa: E402


def models(kind):
    from oauth2_provider import models as dot

    if kind == "application":
        return [dot.get_application_model()]
    return [dot.get_refresh_token_model(), dot.get_access_token_model(), dot.get_id_token_model(), dot.get_grant_model()]


def djangos_view(labels):
    """What Django's MigrationLoader (the one migrate uses) holds unapplied among the apps `labels`:
    the nodes of its graph, squashed migrations resolved, that it does not count as applied."""
    loader = MigrationLoader(connection)
    return sorted(list(key) for key in loader.graph.nodes if key[0] in labels and key not in loader.applied_migrations)


def run(step):
    (action, argument), = step.items()
    if action == "migrate":
        call_command("migrate", *argument, verbosity=0)
    elif action == "record":
        MigrationRecorder(connection).record_applied(*argument)
    elif action == "unrecord":
        MigrationRecorder(connection).record_unapplied(*argument)
    elif action == "check":
        try:
            _django_migrations.require_migrated("default", models(argument))
        except _django_core.OperationError as exc:
            return exc.message
    elif action == "pending":
        ours = [list(key) for key in _django_migrations.pending_migrations(connection, argument)]
        return {"ours": ours, "django": djangos_view(argument)}
    return None


results = [run(step) for step in json.loads(sys.stdin.read())]
print(json.dumps(results))
