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

Request:  {"op": "application", "params": {...}, "check_mode": false, "database": "default",
           "env_file": "/srv/shop/.env" or null, "environment_keys": ["DATABASE_URL", ...]}
Response: {"ok": true, "result": {...}}
      or: {"ok": false, "error": {"kind": "...", "message": "...", "fields": {...}, "traceback": "..."}}

The values of the `environment` option arrive in the process environment, never in the request;
`environment_keys` names them so that their secrets can be scrubbed from every message.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import stat
import sys
import traceback
from urllib.parse import unquote

# op name -> module beside this file that implements it (run(params, context))
OPERATIONS = {
    "application": "_django_applications",
    "application_info": "_django_applications",
    "applications": "_django_application_set",
    "token_cleanup": "_django_cleanup",
}


# The one rule of what an environment variable holds that is secret, for the modules (whose arguments
# show these values masked) and the scheduled job (which scrubs them from its lines). A name is secret
# when it contains one of these, in any case and anywhere (PGPASSWORD, APIKEY, DJANGO_SECRET_KEY):
SECRET_NAME_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "DSN")
# ...or when one of its words is one of these. Words are its runs of letters, split at '_', digits,
# other punctuation and camelCase humps (MYSQL_PWD, DB_PASS, REDIS_PASS2, dbPass): as substrings these
# would also mark PASSPORT_ID, COMPASS_URL, BYPASS_CACHE, PGPASSFILE (a path) or OLDPWD.
SECRET_NAME_PARTS = ("PASS", "PWD")
# Variables whose names match but that hold no secret: PWD is the shell's working directory (as a URL
# parameter, ODBC's and MySQL's PWD is a password).
NOT_SECRET_VARIABLES = ("PWD",)
NAME_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]+|[a-z]+")
# scheme://user:password@host...: the password is everything between the first ':' after the
# scheme and the last '@' (an unencoded '/' or '@' in it is what confuses URL parsers).
URL_WITH_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:(?P<password>.+)@[^@]*$", re.DOTALL)
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://", re.DOTALL)
# A URL's query parameters (?password=..., &sslpassword=...): a parameter whose name is secret by the
# rule above holds a secret, as libpq's password and sslpassword do.
URL_PARAMETER = re.compile(r"[?&](?P<name>[^=&#?]*)=(?P<value>[^&#]*)")
# Pieces of a URL's password shorter than this are not masked on their own: masking every '42' of
# every message would garble ordinary output more than two characters of a password reveal.
SHORTEST_MASKED_PIECE = 4
MASK = "********"
ENV_FILE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# An environment file holds a few lines; what is larger is not one (a log, a dump, a wrong path).
ENV_FILE_MAX_BYTES = 1024 * 1024


def is_secret_name(name) -> bool:
    """Whether a URL parameter, or a variable (see is_secret), of this name holds a secret."""
    name = str(name)
    if any(word in name.upper() for word in SECRET_NAME_WORDS):
        return True
    return any(word.upper() in SECRET_NAME_PARTS for word in NAME_WORDS.findall(name))


def url_passwords(value: str) -> list:
    """The passwords a URL carries: in its userinfo, and in query parameters whose names are secret."""
    if not URL.match(value):
        return []
    found = []
    match = URL_WITH_PASSWORD.match(value)
    if match:
        found.append(match.group("password"))
    found.extend(
        parameter.group("value")
        for parameter in URL_PARAMETER.finditer(value)
        if parameter.group("value") and is_secret_name(unquote(parameter.group("name")))
    )
    return found


def is_secret(name, value) -> bool:
    """Whether the variable `name` set to `value` holds a secret: a secret name, or a URL with a password."""
    value = str(value)
    by_name = is_secret_name(name) and str(name).upper() not in NOT_SECRET_VARIABLES
    return bool(value) and (by_name or bool(url_passwords(value)))


def secret_values(environment: dict) -> list:
    """The values of `environment` that are secret, and the pieces of them an error may quote."""
    found = set()
    for name, value in environment.items():
        value = str(value)
        if not is_secret(name, value):
            continue
        found.add(value)
        for password in url_passwords(value):
            found.update((password, unquote(password)))
            found.update(piece for piece in re.split(r"[/?#@:]", password) if len(piece) >= SHORTEST_MASKED_PIECE)
    return sorted(found, key=len, reverse=True)


# Values under a secret name that are no secret worth a replace in every message: a number, a
# boolean word or a few characters (REFRESH_TOKEN_GRACE_SECONDS=0, TOKEN_LIMIT=1, SECRET_KEY_FALLBACK=true).
# Masking them would garble counts and words of ordinary messages; they still show masked where the
# module's arguments are printed.
PLAIN_VALUE = re.compile(r"^(\s*[-+]?[0-9.]*\s*|true|false|yes|no|on|off|none|null)$", re.IGNORECASE)


def scrub(text, secrets: list):
    """`text` with every secret replaced by a mask; longest first, so that a piece of one secret (or a
    shorter secret of another source) never splits a longer one and leaves its ends readable. Plain
    values (numbers, booleans, fewer than SHORTEST_MASKED_PIECE characters) are left alone."""
    if not isinstance(text, str):
        return text
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= SHORTEST_MASKED_PIECE and not PLAIN_VALUE.match(secret):
            text = text.replace(secret, MASK)
    return text


def read_small_file(path: str, label: str, kind: str) -> str:
    """The UTF-8 text of the regular file `path` of at most ENV_FILE_MAX_BYTES; `label` names it in errors.

    A wrong path must fail, not hang or fill memory: /dev/zero never ends, a FIFO blocks its reader,
    and opening some devices has effects. So a path that is not a regular file is refused before it is
    opened, what was opened is checked again (fstat), so that a swap in between gains nothing, and the
    read stops one byte past the limit. Links are followed (/srv/app/.env -> shared/.env is common):
    what must be regular is the file read.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise OperationError(kind, "%s %s is not a regular file" % (label, path))
        fd = os.open(path, flags)
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise OperationError(kind, "%s %s is not a regular file" % (label, path))
            data = b""
            while opened.st_size <= ENV_FILE_MAX_BYTES and len(data) <= ENV_FILE_MAX_BYTES:
                chunk = os.read(fd, ENV_FILE_MAX_BYTES + 1 - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
    except OSError as exc:
        raise OperationError(kind, "cannot read %s %s (%s)" % (label, path, exc.strerror))
    if opened.st_size > ENV_FILE_MAX_BYTES or len(data) > ENV_FILE_MAX_BYTES:
        raise OperationError(kind, "%s %s is larger than 1 MiB" % (label, path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OperationError(kind, "%s %s is not UTF-8 text" % (label, path))


def read_env_file(path: str) -> dict:
    """A KEY=value file as docker's env_file and systemd's EnvironmentFile hold them.

    Blank lines and lines starting with # or ; are skipped, an `export ` prefix is allowed, and a
    value wrapped in matching single or double quotes loses them. Errors name the line, never its text.
    """
    lines = read_small_file(path, "env_file", "env_file").splitlines()
    variables = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if name.startswith("export "):
            name = name[len("export "):].strip()
        if not equals or not ENV_FILE_NAME.match(name):
            raise OperationError("env_file", "env_file %s, line %d: expected NAME=value" % (path, number))
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        variables[name] = value
    return variables


def apply_env_file(path: str, keep: list) -> dict:
    """Export the variables of env_file, except those the environment option set (`keep`), which win.

    The interpreter has started already, so a PYTHONPATH of the file is added to sys.path here.
    """
    variables = read_env_file(path)
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if "DJANGO_SETTINGS_MODULE" in variables and settings_module and "DJANGO_SETTINGS_MODULE" not in keep:
        if variables["DJANGO_SETTINGS_MODULE"] != settings_module:
            raise OperationError(
                "env_file",
                "env_file %s sets DJANGO_SETTINGS_MODULE=%s, but the settings option says %s: give one of them"
                % (path, variables["DJANGO_SETTINGS_MODULE"], settings_module),
            )
    for name, value in variables.items():
        if name == "PYTHONPATH":
            sys.path.extend(entry for entry in value.split(os.pathsep) if entry and entry not in sys.path)
        elif name not in keep:
            os.environ[name] = value
    return variables


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
    """Fail with one line when the tables behind `models` are not migrated yet.

    Only the apps that hold those tables are checked: oauth2_provider (its tables are what deleting
    an application cascades to) and the app of each swapped model. Their own migrations imply their
    dependencies (manage.py migrate applies those first, and refuses a history where a migration is
    recorded before one it depends on), so the cost of this check follows these apps, never the size
    of the project: no migration graph is built, no other app's migrations are imported.
    """
    from django.db import DEFAULT_DB_ALIAS, connections

    database = database or DEFAULT_DB_ALIAS
    app_labels = sorted({model._meta.app_label for model in models} | {"oauth2_provider"})
    pending = pending_migrations(connections[database], app_labels)
    if pending:
        apps_behind = sorted({app for app, _name in pending}, key=app_labels.index)
        names = ", ".join("%s.%s" % key for key in pending[:3])
        more = " and %d more" % (len(pending) - 3) if len(pending) > 3 else ""
        raise OperationError(
            "not_migrated",
            "%s migrations not applied on database '%s' (%s%s): run manage.py migrate"
            % (" and ".join(apps_behind), database, names, more),
        )


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


def database_error_message(exc: Exception) -> str:
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return "database error (%s): %s" % (type(exc).__name__, first_line)


def request_secrets(request: dict) -> list:
    """The secrets this run knows of: those of the environment option, and (once read) of env_file."""
    keys = request.get("environment_keys") or []
    return secret_values(dict((name, os.environ.get(name, "")) for name in keys))


def handle(request: dict) -> dict:
    if request.get("env_file"):
        apply_env_file(request["env_file"], request.get("environment_keys") or [])
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


def error_response(exc: Exception) -> dict:
    if isinstance(exc, OperationError):
        return {"kind": exc.kind, "message": exc.message, "fields": exc.fields}
    # The bridge shows the message, and the traceback at -vvv.
    return {"kind": "unexpected", "message": "%s: %s" % (type(exc).__name__, exc), "traceback": traceback.format_exc()}


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
