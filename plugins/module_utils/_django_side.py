# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Django side of the bridge: the entry point of the modules.

This file is not run by Ansible's interpreter: the bridge copies it, with the
other `_django_*` files next to it, into a package in a temporary directory and starts
`main()` with the project's own Python, which has Django and the project on its
path. It reads one JSON request on stdin, sets Django up, runs one operation and
writes one JSON response on stdout. It imports nothing from Ansible, and nothing
from Django at import time (Ansible imports it only to ship it).

The token_cleanup role ships the same files to the managed host, where cron runs
`_django_cleanup_job` (one cleanup per run, a summary line for the log) instead of `main()`.

Request:  {"op": "application", "params": {...}, "check_mode": false, "no_log": true, "database": "oauth" or null,
           "project_path": "/srv/shop" or null, "env_file": "/srv/shop/.env" or null,
           "environment_keys": ["DATABASE_URL", ...]}
Response: {"ok": true, "result": {...}}
      or: {"ok": false, "error": {"kind": "...", "message": "...", "fields": {...}, "traceback": "..."}}

The values of the `environment` option arrive in the process environment, never in the request;
`environment_keys` names them so that their secrets can be scrubbed from every message.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback

from ._django_core import Context, OperationError, database_error_message, first_line
from ._django_database import require_alias
from ._django_env import apply_env_file, missing_variable, read_env_file, scrub, secret_values

# op name -> (the side's module, its function that runs the op: function(params, context) -> result). Imported when
# the op runs: the package is written anew for every task, so Python compiles each file it imports on every run,
# and a task compiles only what its operation uses.
OPERATIONS = {
    "application": ("_django_applications", "run_application"),
    "application_info": ("_django_applications", "run_application_info"),
    "applications": ("_django_application_set", "run_applications"),
    "token_cleanup": ("_django_cleanup", "run_token_cleanup"),
    "token_revoke": ("_django_revoke", "run_token_revoke"),
}


def operation(op: str):
    """The function that runs `op`."""
    module, function = OPERATIONS[op]
    return getattr(importlib.import_module("." + module, __package__), function)


def setup_django(database: str | None, project_path: str | None = None) -> None:
    """django.setup() with failures turned into messages a user can act on; a `database` given must be an
    alias of DATABASES (None: each operation asks the routers, _django_database.choose_database)."""
    try:
        import django
    except ImportError:
        raise OperationError("django_missing", "Django is not importable by %s" % sys.executable)
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not settings_module:
        raise OperationError("settings", "no settings module: set the settings option (DJANGO_SETTINGS_MODULE)")
    try:
        importlib.import_module(settings_module)
    except Exception as exc:
        raise_settings_error(settings_module, project_path, exc)
        raise
    django.setup()

    if database:
        require_alias(database)
    try:
        importlib.import_module("oauth2_provider")
    except ImportError:
        raise OperationError("dot_missing", "django-oauth-toolkit is not importable by %s" % sys.executable)


def raise_settings_error(settings_module: str, project_path: str | None, exc: Exception) -> None:
    """Raise the one line for a settings module that failed to import, naming what is missing and where,
    from `exc` (its traceback is for -vvv readers); return for a failure of another kind, which is
    reported as it is (type and first line). A settings module that is not there has no traceback
    worth reading."""
    from django.core.exceptions import ImproperlyConfigured

    subject = "settings module '%s'" % settings_module
    where = settings_location(settings_module, exc)
    at = " (%s)" % where if where else ""
    variable = missing_variable(exc)
    if variable:
        raise OperationError(
            "environment",
            "%s reads the environment variable %s, which is not set%s: set it in environment or env_file"
            % (subject, variable, at),
        ) from exc
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        missing = exc.name
        if missing == settings_module or settings_module.startswith(missing + "."):
            # project_path is the working directory of both entry points.
            hint = ""
            if project_path and not os.path.isfile("manage.py"):
                hint = "; project_path %s has no manage.py: is it the project's directory?" % project_path
            raise OperationError(
                "settings", "%s not found (project_path and pythonpath are searched first%s)" % (subject, hint)
            ) from None
        if missing.partition(".")[0] == settings_module.partition(".")[0]:
            message = "%s imports '%s', which does not exist%s" % (subject, missing, at)
            raise OperationError("settings", message) from exc
        raise OperationError(
            "settings",
            "%s imports '%s', which is not importable by %s%s: install it in the project's virtualenv, or point "
            "virtualenv or python at the interpreter that has it" % (subject, missing, sys.executable, at),
        ) from exc
    if isinstance(exc, ImproperlyConfigured):
        reason = first_line(exc) or "no reason given"
        raise OperationError("settings", "%s is improperly configured: %s%s" % (subject, reason, at)) from exc


def settings_location(settings_module: str, exc: Exception) -> str | None:
    """'FILE, line N' of the failure's innermost frame in the settings' own package (the line of the
    settings that read the variable or imported the module), or None when it never got there."""
    package = settings_module.partition(".")[0]
    found = None
    frame = exc.__traceback__
    while frame is not None:
        name = frame.tb_frame.f_globals.get("__name__") or ""
        if name == package or name.startswith(package + "."):
            found = frame
        frame = frame.tb_next
    return "%s, line %d" % (found.tb_frame.f_code.co_filename, found.tb_lineno) if found else None


def request_secrets(request: dict) -> list:
    """The secrets this run knows of: those of the environment option, and (once read) of env_file."""
    keys = request.get("environment_keys") or []
    return secret_values(dict((name, os.environ.get(name, "")) for name in keys))


def handle(request: dict) -> dict:
    if request.get("env_file"):
        apply_env_file(request["env_file"], request.get("environment_keys") or [])
    database = request.get("database") or None
    context = Context(database, bool(request.get("check_mode")), bool(request.get("no_log")))
    op = request.get("op")
    if op not in OPERATIONS:
        raise OperationError("internal", "unknown operation %r" % op)
    setup_django(database, request.get("project_path"))
    from django.db import DatabaseError

    try:
        result = operation(op)(request.get("params") or {}, context)
    except DatabaseError as exc:
        raise OperationError("database", database_error_message(exc))
    result["warnings"] = context.warnings
    result["database"] = context.database
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


def operation_error(exc: Exception) -> OperationError:
    """Any failure as an OperationError: one line, raised from `exc` when it was not one already. A
    variable the environment lacks is named with the fix wherever it was read; anything else no
    operation foresaw is its type and the first line of its text."""
    if isinstance(exc, OperationError):
        return exc
    variable = missing_variable(exc)
    if variable:
        error = OperationError(
            "environment", "the environment variable %s is not set: set it in environment or env_file" % variable
        )
    else:
        text = first_line(exc)
        error = OperationError("unexpected", "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__)
    error.__cause__ = exc
    return error


def error_response(exc: Exception) -> dict:
    error = operation_error(exc)
    response = {"kind": error.kind, "message": error.message, "fields": error.fields}
    cause = error.__cause__
    if cause is not None:
        # The bridge returns it at -vvv only (django_traceback), never in msg.
        response["traceback"] = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    return response


def scrub_error(error: dict, secrets: list) -> dict:
    """Messages from Django, drivers and settings files may quote a secret of the environment."""
    scrubbed = dict((key, scrub(value, secrets)) for key, value in error.items())
    scrubbed["fields"] = dict((name, scrub(text, secrets)) for name, text in (error.get("fields") or {}).items())
    return scrubbed


def main() -> None:
    out = reserve_stdout()
    request = {}
    try:
        request = json.loads(sys.stdin.read() or "{}")
        response = {"ok": True, "result": handle(request)}
        secrets = env_file_secrets(request) + request_secrets(request)
        response["result"]["warnings"] = [scrub(warning, secrets) for warning in response["result"]["warnings"]]
    except Exception as exc:
        secrets = env_file_secrets(request) + request_secrets(request)
        response = {"ok": False, "error": scrub_error(error_response(exc), secrets)}
    with out:
        json.dump(response, out, default=str)


def env_file_secrets(request: dict) -> list:
    """The secrets of env_file, read again: the run may have failed before or while it read it."""
    try:
        return secret_values(read_env_file(request["env_file"])) if request.get("env_file") else []
    except OperationError:
        return []
