# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Django side of the bridge.

This file is not run by Ansible's interpreter: the bridge copies it, with the
operation files next to it, into a package in a temporary directory and starts
`main()` with the project's own Python, which has Django and the project on its
path. It reads one JSON request on stdin, sets Django up, runs one operation and
writes one JSON response on stdout. It imports nothing from Ansible, and nothing
from Django at import time (Ansible imports it only to ship it).

The token_cleanup role ships the same files to the managed host, where cron runs
`_django_cli` (one cleanup per run, a summary line for the log) instead of `main()`.

Request:  {"op": "application", "params": {...}, "check_mode": false, "database": "default"}
Response: {"ok": true, "result": {...}}
      or: {"ok": false, "error": {"kind": "...", "message": "...", "fields": {...}, "traceback": "..."}}
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback

# op name -> module beside this file that implements it (run(params, context))
OPERATIONS = {
    "application": "_django_applications",
    "application_info": "_django_applications",
    "token_cleanup": "_django_cleanup",
}


class OperationError(Exception):
    """A failure the user can act on; `kind` lets the Ansible side word it."""

    def __init__(self, kind: str, message: str, fields: dict | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.fields = fields or {}


class Context:
    """What every operation needs besides its parameters."""

    def __init__(self, database: str, check_mode: bool) -> None:
        self.database = database
        self.check_mode = check_mode
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def setup_django(database: str) -> None:
    """django.setup() with failures turned into messages a user can act on."""
    try:
        import django
    except ImportError:
        raise OperationError("django_missing", "Django is not importable by %s" % sys.executable)
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not settings_module:
        raise OperationError("settings", "no settings module: set the settings option (DJANGO_SETTINGS_MODULE)")
    try:
        importlib.import_module(settings_module)
    except ModuleNotFoundError as exc:
        if exc.name and settings_module.startswith(exc.name):
            raise OperationError(
                "settings",
                "settings module '%s' not found (project_path and pythonpath are searched first)" % settings_module,
            )
        raise
    django.setup()

    from django.conf import settings

    if database not in settings.DATABASES:
        raise OperationError(
            "database",
            "database alias '%s' is not in DATABASES (known: %s)" % (database, ", ".join(sorted(settings.DATABASES))),
        )
    require_sqlite_file(database)
    try:
        importlib.import_module("oauth2_provider")
    except ImportError:
        raise OperationError("dot_missing", "django-oauth-toolkit is not importable by %s" % sys.executable)


def require_sqlite_file(database: str) -> None:
    """SQLite creates a missing database file on connect: an empty file, owned by whoever ran the
    task (root, say), where a mistyped path or the wrong settings should be an error."""
    from django.db import connections

    connection = connections[database]
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict["NAME"] or "")
    if name in ("", ":memory:") or name.startswith("file:") or "mode=memory" in name:
        return
    if not os.path.exists(name):
        raise OperationError(
            "database",
            "the SQLite database %s of database '%s' does not exist (check NAME in the settings, or run manage.py "
            "migrate to create it)" % (name, database),
        )


def require_migrated(database: str, models: list) -> None:
    """Fail with one line when the tables behind `models` are not migrated yet."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from django.db.migrations.executor import MigrationExecutor

    connection = connections[database or DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    app_labels = sorted({model._meta.app_label for model in models})
    targets = [key for key in executor.loader.graph.leaf_nodes() if key[0] in app_labels]
    pending = [migration for migration, backwards in executor.migration_plan(targets) if not backwards]
    if pending:
        names = ", ".join("%s.%s" % (m.app_label, m.name) for m in pending[:3])
        more = " and %d more" % (len(pending) - 3) if len(pending) > 3 else ""
        raise OperationError(
            "not_migrated",
            "%s migrations not applied on database '%s' (%s%s): run manage.py migrate"
            % (" and ".join(app_labels), database, names, more),
        )


def database_error_message(exc: Exception) -> str:
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return "database error (%s): %s" % (type(exc).__name__, first_line)


def handle(request: dict) -> dict:
    database = request.get("database") or "default"
    context = Context(database, bool(request.get("check_mode")))
    op = request.get("op")
    if op not in OPERATIONS:
        raise OperationError("internal", "unknown operation %r" % op)
    setup_django(database)
    operation = importlib.import_module("." + OPERATIONS[op], __package__)
    from django.db import DatabaseError

    try:
        result = getattr(operation, "run_" + op)(request.get("params") or {}, context)
    except DatabaseError as exc:
        raise OperationError("database", database_error_message(exc))
    result["warnings"] = context.warnings
    return result


def reserve_stdout():
    """Keep stdout for the answer alone; return it as a file to write the answer to.

    Settings files, apps and drivers may print. File descriptor 1 points at stderr while
    the work runs (child processes included), and the real stdout is kept for the end.
    """
    answer_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(answer_fd, "w")


def main() -> None:
    out = reserve_stdout()
    try:
        response = {"ok": True, "result": handle(json.loads(sys.stdin.read() or "{}"))}
    except OperationError as exc:
        response = {"ok": False, "error": {"kind": exc.kind, "message": exc.message, "fields": exc.fields}}
    except Exception as exc:  # the bridge shows the message, and the traceback at -vvv
        error = {"kind": "unexpected", "message": "%s: %s" % (type(exc).__name__, exc)}
        error["traceback"] = traceback.format_exc()
        response = {"ok": False, "error": error}
    with out:
        json.dump(response, out, default=str)
