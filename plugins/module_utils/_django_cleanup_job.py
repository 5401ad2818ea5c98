# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scheduled job's entry point (cron runs it): one token cleanup per run, one line for the log.

The token_cleanup role ships this file with the rest of the Django side (the package
`oauthops_django_side`) to the managed host, and cron runs it as the application's user:

    cd DIR && /usr/bin/flock -n DIR/cleanup.lock /srv/shop/venv/bin/python -m oauthops_django_side._django_cleanup_job \\
        --project-path /srv/shop --settings shop.settings --env-json DIR/environment.json [--env-file /srv/shop/.env] \\
        --log-file /var/log/oauthops-token-cleanup.log [--batch-size N] [--max-runtime S] ...

It runs the operation of the oauth_token_cleanup module, through the same `handle()`, so the
module and the cron job share one engine. Each run writes ONE summary line, to the log file
(or to stdout without --log-file):

    2026-11-27T03:17:00+00:00 engine=oauthops database=default revoked_refresh_tokens=5 ... grants=3 total=18 batches=9 elapsed=0.412 complete=true

A successful run prints nothing at all, so cron has nothing to mail: whatever the project prints
or logs to stdout or stderr while it loads and runs is swallowed, and warnings (Python's, and the
engine's own, such as an unknown DOT release) are counted in the line as `warnings=N` with the
first one quoted. A failure appends a line with `failed=true error="..."` to the log, prints that
one line on stderr (cron mails it) and exits 1.

With --metrics-file each run (not a check) also replaces that file, in Prometheus' text format, for
node_exporter's textfile collector: a temporary file in the same directory, renamed over it, readable
by everyone. Its gauges say when the last run started, how long it took, whether it failed, stopped at
max_runtime or skipped for another cleanup's lock, what it deleted by category, the engine, rule set and
DOT release, and when the last successful run ended, a value carried over from the file it replaces, so
a failure leaves it where it was.

With --check a run counts what it would delete (for either engine, by the rules the engine proved
for the installed DOT), deletes nothing, takes no database lock and writes its line to stdout
instead of the log, which it still opens as a run does; it writes no metrics, but fails when the
run could not. The token_cleanup role appends --check to the cron line and runs it, as the job's
user with cron's environment, before it leaves the job to cron (or to a systemd timer): a setting, a
file or a variable the job lacks fails the play, not the first scheduled run.

Secrets come from --env-json, a JSON object of environment variables readable only by the user (the
role's token_cleanup_environment), and from --env-file, the project's own NAME=value file; never
from the command line: cron files and the process list are readable by every user. Their secret values are scrubbed from every line.

Like the rest of the Django side it imports nothing from Ansible, and Django only when it runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import tempfile
import time
import warnings

from . import _django_cleanup
from ._django_core import Context, OperationError, database_error_message, first_line
from ._django_database import prepare_database
from ._django_env import apply_env_file, read_env_file, read_small_file, scrub, secret_values
from ._django_side import handle, operation_error, setup_django

ENGINES = ("oauthops", "cleartokens")
BATCH_OPTIONS = ("batch_size", "batch_interval", "max_runtime")
METRIC_PREFIX = "oauthops_token_cleanup_"
LAST_SUCCESS = METRIC_PREFIX + "last_success_time_seconds"


def parse_arguments(argv: list | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m oauthops_django_side._django_cleanup_job",
        description="Delete expired and revoked Django OAuth Toolkit tokens; one summary line per run.",
    )
    parser.add_argument("--project-path", help="the Django project: working directory and first on sys.path")
    parser.add_argument("--settings", help="settings module (DJANGO_SETTINGS_MODULE)")
    parser.add_argument("--pythonpath", action="append", default=[], help="another directory for sys.path")
    parser.add_argument(
        "--database",
        help="alias in DATABASES (default: the one the project's DATABASE_ROUTERS choose for DOT's token models, "
        "'default' without routers)",
    )
    parser.add_argument("--env-json", help="JSON object of environment variables to set first (secrets go here)")
    parser.add_argument("--env-file", help="NAME=value file of environment variables (the --env-json ones win)")
    parser.add_argument("--log-file", help="append the summary line to this file (created with mode 0640)")
    parser.add_argument(
        "--metrics-file",
        help="replace this NAME.prom file with the run's Prometheus metrics (node_exporter's textfile collector)",
    )
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="oauthops",
        help="oauthops: the collection's engine (default); cleartokens: DOT's own clear_expired(), "
        "which is what manage.py cleartokens runs, with DOT's batch settings",
    )
    parser.add_argument("--batch-size", type=int, help="most tokens per transaction")
    parser.add_argument("--batch-interval", type=float, help="seconds between batches")
    parser.add_argument("--max-runtime", type=float, help="stop between batches after this many seconds")
    parser.add_argument("--lock-timeout", type=float, default=0, help="seconds to wait for another cleanup's lock")
    parser.add_argument("--check", action="store_true", help="count what a run would delete, delete nothing; print the line")
    args = parser.parse_args(argv)
    if args.engine == "cleartokens":
        given = ["--" + name.replace("_", "-") for name in BATCH_OPTIONS if getattr(args, name) is not None]
        if given:
            parser.error("--engine cleartokens has DOT's own batching: drop %s" % " ".join(given))
    return args


def known_secrets(args: argparse.Namespace) -> list:
    """The secret values of both environment files, for scrubbing; a file that cannot be read has none."""
    found = []
    for path, read in ((args.env_json, load_environment), (args.env_file, read_env_file)):
        try:
            found += secret_values(read(path)) if path else []
        except OperationError:
            pass
    return sorted(set(found), key=len, reverse=True)


def load_environment(path: str) -> dict:
    try:
        variables = json.loads(read_small_file(path, "the environment file", "environment"))
    except ValueError as exc:
        raise OperationError("environment", "the environment file %s is not JSON: %s" % (path, exc))
    if not isinstance(variables, dict):
        raise OperationError("environment", "the environment file %s must hold a JSON object" % path)
    return dict((str(name), str(value)) for name, value in variables.items())


def prepare(args: argparse.Namespace) -> None:
    """What the bridge does for a module run: settings, then the extra environment, then the paths."""
    if args.settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    explicit = load_environment(args.env_json) if args.env_json else {}
    pythonpath = explicit.pop("PYTHONPATH", "")
    os.environ.update(explicit)
    sys.path.extend(entry for entry in pythonpath.split(os.pathsep) if entry)
    if args.env_file:
        apply_env_file(args.env_file, list(explicit))
    if args.project_path:
        try:
            os.chdir(args.project_path)
        except OSError as exc:
            raise OperationError("project_path", "project_path %s: %s" % (args.project_path, exc.strerror))
    sys.path[:0] = [path for path in [args.project_path] + args.pythonpath if path]


def run_cleartokens(database: str | None, project_path: str | None) -> dict:
    """DOT's own clear_expired(), counted the way the module counts it for a DOT release it does not know."""
    setup_django(database, project_path)
    context = Context(database, False)
    from django.db import DatabaseError

    try:
        prepare_database(context, _django_cleanup._token_models())
        deleted = _django_cleanup._run_dot_clear_expired(context.database)
    except DatabaseError as exc:
        raise OperationError("database", database_error_message(exc))
    total = sum(count for count in deleted.values() if count)
    return {"deleted": deleted, "total": total, "complete": True, "warnings": context.warnings, "database": context.database}


def run(args: argparse.Namespace) -> dict:
    # Check mode counts what DOT's clear_expired() would delete by the engine's rules for the installed DOT
    # (its end state is theirs), which is what the module's check mode reports too.
    if args.engine == "cleartokens" and not args.check:
        return run_cleartokens(args.database, args.project_path)
    params = dict((name, getattr(args, name)) for name in BATCH_OPTIONS)
    params.update(lock=True, lock_timeout=args.lock_timeout)
    return handle({"op": "token_cleanup", "params": params, "check_mode": args.check, "database": args.database,
                   "project_path": args.project_path})


def logfmt(value) -> str:
    if isinstance(value, str) and value and not any(char.isspace() or char in "\"=" for char in value):
        return value
    return json.dumps(value)


def summary_line(started_at: str, fields: list) -> str:
    return " ".join([started_at] + ["%s=%s" % (name, logfmt(value)) for name, value in fields]) + "\n"


def warning_fields(messages: list) -> list:
    if not messages:
        return []
    return [("warnings", len(messages)), ("warning", first_line(messages[0]))]


def result_fields(args: argparse.Namespace, result: dict, elapsed: float) -> list:
    fields = [("engine", args.engine), ("database", result["database"])]
    if args.check:
        fields.append(("check_mode", True))
    # Counts a run does not know (DOT's clear_expired() does not tell refresh token kinds apart) are left out.
    fields.extend((name, count) for name, count in result["deleted"].items() if count is not None)
    fields.extend([("total", result["total"]), ("batches", result.get("batches")), ("elapsed", round(elapsed, 3))])
    fields.append(("complete", result["complete"]))
    if not result["complete"]:
        fields.append(("note", result["msg"]))
    return [(name, value) for name, value in fields if value is not None]


def label_text(labels: dict) -> str:
    escaped = ('%s="%s"' % (name, str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
               for name, value in labels.items())
    return "{" + ",".join(escaped) + "}"


def previous_success(path: str) -> float:
    """When the last successful run ended, as the metrics file this run replaces says (0: no success known)."""
    try:
        with open(path, "rb") as previous:
            text = previous.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return 0.0
    found = re.search(r"^%s(?:\{[^}]*\})? (\S+)$" % LAST_SUCCESS, text, re.MULTILINE)
    try:
        return float(found.group(1)) if found else 0.0
    except ValueError:
        return 0.0


def metrics_text(name: str, started: float, duration: float, result: dict | None, info: dict | None,
                 last_success: float) -> str:
    """The run in Prometheus' text format: gauges labelled with the job's name (a host may run several jobs).
    `result` is None for a failed run, which deleted an unknown number of rows."""
    lock = (result or {}).get("lock") or {}
    skipped = lock.get("acquired") is False
    families = [
        ("last_run_start_time_seconds", "Start of the last run, in seconds since the epoch.", [({}, started)]),
        ("last_run_duration_seconds", "How long the last run took.", [({}, duration)]),
        ("last_run_failed", "1 if the last run failed, else 0.", [({}, int(result is None))]),
        ("last_success_time_seconds", "End of the last successful run, in seconds since the epoch (0: none yet); "
         "a failed or skipped run leaves it as it was.", [({}, last_success)]),
    ]
    if result is not None:
        families += [
            ("last_run_max_runtime_reached", "1 if the last run stopped at max_runtime with work left (the next run "
             "continues), else 0.", [({}, int(not result["complete"] and not skipped))]),
            ("last_run_skipped", "1 if the last run deleted nothing because another cleanup held the database lock, "
             "else 0.", [({}, int(skipped))]),
            ("last_run_deleted_rows", "Rows the last run deleted, by category.",
             [({"category": category}, count) for category, count in result["deleted"].items() if count is not None]),
        ]
    if info is not None:
        families.append(("info", "The engine, cleanup rule set and django-oauth-toolkit release of the last run.",
                         [(info, 1)]))
    lines = []
    for metric, help_text, samples in families:
        lines += ["# HELP %s%s %s" % (METRIC_PREFIX, metric, help_text), "# TYPE %s%s gauge" % (METRIC_PREFIX, metric)]
        lines += ["%s%s%s %s" % (METRIC_PREFIX, metric, label_text(dict(name=name, **labels)), value if isinstance(
            value, int) else repr(float(value))) for labels, value in samples]
    return "\n".join(lines) + "\n"


def run_info(args: argparse.Namespace, result: dict) -> dict:
    if args.engine == "cleartokens":  # DOT's own clear_expired(): no rule set of ours
        from ._django_cleanup_rules import installed_dot_version

        return {"engine": args.engine, "rules": "clear_expired", "dot_version": installed_dot_version()}
    return {"engine": args.engine, "rules": result["rules"], "dot_version": result["dot_version"]}


def write_metrics(path: str, text: str) -> None:
    """Atomically: a new file in the same directory, readable by everyone (node_exporter runs as its own
    user), renamed over the old one, so a scrape reads a whole run's file, the old one or the new."""
    directory, base = os.path.split(path)
    fd, temporary = tempfile.mkstemp(prefix="." + base + ".", suffix=".tmp", dir=directory or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        os.rename(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def require_writable_metrics(path: str) -> None:
    """Check mode: the run it stands for would write the metrics file."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
        reason = "it is not a directory" if not os.path.isdir(directory) else "it is not writable by this user"
        raise OperationError("metrics", "cannot write the metrics file %s: %s (%s)" % (path, directory, reason))


class SilencedOutput:
    """Points file descriptors 1 and 2 (child processes included) and sys.stdout/sys.stderr at a
    scratch file while the run works, and gives the real ones back for the run's own line."""

    def __enter__(self):
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = os.dup(1), os.dup(2)
        self.scratch = tempfile.TemporaryFile()
        for fd in (1, 2):
            os.dup2(self.scratch.fileno(), fd)
        self.streams = sys.stdout, sys.stderr
        # Left open on exit: logging handlers made while the run worked keep writing here, harmlessly.
        self.sink = open(os.dup(self.scratch.fileno()), "w", buffering=1, errors="replace")
        sys.stdout = sys.stderr = self.sink
        return self

    def __exit__(self, *exc_info):
        self.sink.flush()
        sys.stdout, sys.stderr = self.streams
        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)
            os.close(saved)
        self.scratch.close()
        return False


def main(argv: list | None = None) -> int:
    args = parse_arguments(argv)
    wall_start = time.time()
    started_at = datetime.datetime.fromtimestamp(wall_start, datetime.timezone.utc).isoformat(timespec="seconds")
    started = time.monotonic()
    log_fd = None
    error = None
    info = None
    with SilencedOutput(), warnings.catch_warnings(record=True) as caught:
        try:
            if args.log_file:
                try:
                    log_fd = os.open(args.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
                except OSError as exc:
                    raise OperationError("log", "cannot open the log file %s (%s)" % (args.log_file, exc.strerror))
            if args.check and args.metrics_file:
                require_writable_metrics(args.metrics_file)
            prepare(args)
            result = run(args)
            info = run_info(args, result)
        except Exception as exc:  # one line for cron's mail, worded as the modules word it
            error = operation_error(exc).message
    duration = time.monotonic() - started
    elapsed = round(duration, 3)
    secrets = known_secrets(args)
    if error is None:
        # A run that found the lock taken says so in its summary line already.
        messages = [str(warning.message) for warning in caught]
        messages += [warning for warning in result["warnings"] if warning != result.get("msg")]
        messages = [scrub(message, secrets) for message in messages]
        line = summary_line(started_at, result_fields(args, result, elapsed) + warning_fields(messages))
    else:
        error = scrub(first_line(error), secrets)
        sys.stderr.write("oauthops token cleanup failed: %s\n" % error)
        line = summary_line(started_at, [("engine", args.engine), ("failed", True), ("error", error), ("elapsed", elapsed)])
    if args.metrics_file and not args.check:
        failed = error is not None
        skipped = not failed and (result.get("lock") or {}).get("acquired") is False
        last_success = previous_success(args.metrics_file) if failed or skipped else wall_start + duration
        name = os.path.basename(args.metrics_file)
        name = name[:-len(".prom")] if name.endswith(".prom") else name
        try:
            write_metrics(args.metrics_file, metrics_text(
                name, wall_start, duration, None if failed else result, info, last_success))
        except OSError as exc:
            metrics_error = "cannot write the metrics file %s (%s)" % (args.metrics_file, exc.strerror)
            line = line[:-1] + " metrics_error=%s\n" % logfmt(metrics_error)
            if error is None:
                sys.stderr.write("oauthops token cleanup failed: %s\n" % metrics_error)
                error = metrics_error
    if log_fd is not None:
        if not args.check:  # the log is the record of cleanups; a check run's line is for whoever ran it
            os.write(log_fd, line.encode("utf-8"))  # one write: concurrent appends never interleave
        os.close(log_fd)
    if args.check or not args.log_file:
        sys.stdout.write(line)
    return 1 if error is not None else 0


if __name__ == "__main__":
    raise SystemExit(main())
