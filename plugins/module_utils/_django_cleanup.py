# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Django side of oauth_token_cleanup: the token cleanup engine (also run by the cron role).

The end state equals what the installed DOT's clear_expired() leaves; the rows and the
relations to follow come from _django_cleanup_rules. What differs is the work per batch:
DOT re-counts and re-scans each filter on every batch and deletes through Django's
collector, which loads every row. Here each pass walks its table once in primary-key
order (keyset pagination: a batch starts where the previous one ended, so no batch
re-reads rows already passed), and each batch is a few set-based statements in one short
transaction. A run stopped between batches (max_runtime, SIGKILL) leaves whole batches
done and nothing half done; the next run simply continues.

Django is imported inside functions: Ansible imports this file on hosts without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time

from ._django_cleanup_rules import (
    CATEGORIES,
    REFRESH_CATEGORIES,
    SqlDeleter,
    categories,
    cutoffs,
    delete_plan,
    installed_clear_expired_fingerprint,
    installed_dot_version,
    predicted_counts,
    proven_releases,
    rule_set_for,
)
from ._django_core import OperationError
from ._django_database import prepare_database

LOCK_NAME = "oauthops.toolkit token cleanup"
LOCK_POLL_SECONDS = 0.2


def _number(params: dict, name: str, default, minimum: float, integer: bool = False, exclusive: bool = False):
    value = params.get(name)
    if value is None:
        value = default
    if value is None:
        return None
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        number = None
    invalid = number is None or not math.isfinite(number) or (integer and number != value)
    if invalid or number < minimum or (exclusive and number == minimum):
        kind = "an integer" if integer else "a finite number"
        bound = "greater than" if exclusive else "at least"
        raise OperationError("invalid", "%s: must be %s %s %s, got %r" % (name, kind, bound, minimum, value))
    return number


def cleanup_options(params: dict) -> dict:
    """The run's options; batch size and interval default to the project's DOT settings."""
    from oauth2_provider.settings import oauth2_settings

    return {
        "batch_size": _number(params, "batch_size", oauth2_settings.CLEAR_EXPIRED_TOKENS_BATCH_SIZE, 1, integer=True),
        "batch_interval": _number(params, "batch_interval", oauth2_settings.CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL, 0),
        "max_runtime": _number(params, "max_runtime", None, 0, exclusive=True),
        "lock": params.get("lock", True) is not False,
        "lock_timeout": _number(params, "lock_timeout", 0, 0),
    }


class _SessionLock:
    """PostgreSQL advisory lock or MySQL/MariaDB GET_LOCK: held by the database session, so the
    server frees it when a killed run's connection drops."""

    def __init__(self, connection) -> None:
        self.connection = connection
        if connection.vendor == "postgresql":
            # Advisory locks are scoped to the current database already.
            self.method = "PostgreSQL advisory lock"
            key = int.from_bytes(hashlib.sha256(LOCK_NAME.encode()).digest()[:8], "big", signed=True)
            self.take, self.give, self.args = "SELECT pg_try_advisory_lock(%s)", "SELECT pg_advisory_unlock(%s)", [key]
        else:
            # GET_LOCK names are server-wide (at most 64 characters): name the database in it.
            self.method = "MySQL GET_LOCK"
            database = str(connection.settings_dict["NAME"]).encode()
            name = "oauthops_token_cleanup_%s" % hashlib.sha256(database).hexdigest()[:32]
            self.take, self.give, self.args = "SELECT GET_LOCK(%s, 0)", "SELECT RELEASE_LOCK(%s)", [name]

    def try_acquire(self) -> bool:
        with self.connection.cursor() as cursor:
            cursor.execute(self.take, self.args)
            return bool(cursor.fetchone()[0])

    def release(self) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(self.give, self.args)


# Descriptors of SQLite database files held open for _FileLock, one per file, for the life of the
# process: closing any descriptor of a file drops every POSIX lock this process holds on it, and
# SQLite's own locks on the database are POSIX locks.
_DATABASE_FILES: dict = {}


class _FileLock:
    """SQLite has no advisory lock: an flock() on the database file itself, freed by the kernel when
    the process dies. (BEGIN IMMEDIATE would also block the application's writers.) flock() and
    SQLite's POSIX locks do not interact on a local file system, flock() needs only read access, and
    the file is there already: no lock file that one user creates and another cannot open, nothing
    left beside the database, no path to plant a link at."""

    def __init__(self, database_path: str) -> None:
        self.path = database_path
        self.method = "file lock on %s" % database_path
        self.fd = None

    def try_acquire(self) -> bool:
        import fcntl

        if self.fd is None:
            self.fd = _DATABASE_FILES.get(self.path)
        if self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise OperationError("lock", "cannot open the SQLite database %s to lock it (%s)" % (self.path, exc.strerror))
            _DATABASE_FILES[self.path] = self.fd
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def release(self) -> None:
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)


def cleanup_lock(connection):
    """The lock that keeps two cleanups of one database apart, or None where there is none to take."""
    if connection.vendor in ("postgresql", "mysql"):
        return _SessionLock(connection)
    if connection.vendor == "sqlite":
        name = str(connection.settings_dict["NAME"])
        if name in ("", ":memory:") or "mode=memory" in name:
            return None  # private to this process: nobody else can run a cleanup on it
        return _FileLock(name)
    return None


def acquire(lock, timeout: float) -> tuple:
    """(acquired, seconds waited), polling so that every backend waits the same way."""
    started = time.monotonic()
    while not lock.try_acquire():
        waited = time.monotonic() - started
        if waited >= timeout:
            return False, waited
        time.sleep(min(LOCK_POLL_SECONDS, timeout - waited))
    return True, time.monotonic() - started


def fetch_rows(rows, database: str, limit: int) -> list:
    """The first `limit` rows of a values_list() QuerySet as tuples, converted as iterating it would
    convert them, in one fetch: iterating fetches 100 rows at a time, each through Django's cursor
    wrapper, which costs more than the index walk that finds a batch of ten thousand."""
    compiler = rows[:limit].query.get_compiler(using=database)
    return list(compiler.results_iter(tuple_expected=True, chunk_size=max(limit, 1)))


def keys_for_sql(model, keys: list, connection) -> list:
    """Primary keys of `model` as SqlDeleter binds them: a UUID, say, in the form the database stores."""
    from django.db.models import IntegerField

    pk = model._meta.pk
    return keys if isinstance(pk, IntegerField) else [pk.get_db_prep_value(key, connection) for key in keys]


class _Run:
    """One real (not check mode) cleanup: the passes, batch by batch. The revocation engine
    (_django_revoke) runs its passes through a subclass, which changes what a batch does."""

    def __init__(self, options: dict, database: str, deadline, counted=CATEGORIES) -> None:
        from django.db import connections

        self.options = options
        self.database = database
        self.deadline = deadline
        self.connection = connections[database]
        self.deleted = dict.fromkeys(counted, 0)
        self.cascaded = {}
        self.strategy = {}
        self.plans = {}
        self.batches = 0
        self.pause_pending = False

    def _may_start_batch(self) -> bool:
        """Wait out batch_interval, unless max_runtime would run out first."""
        pause = self.options["batch_interval"] if self.pause_pending else 0
        if self.deadline is not None and time.monotonic() + pause >= self.deadline:
            return False
        if pause:
            time.sleep(pause)
        self.pause_pending = False
        return True

    def plan(self, model):
        """How rows of `model` are deleted, read from its relations once per run."""
        if model not in self.plans:
            self.plans[model] = delete_plan(model)
        return self.plans[model]

    def batch_keys(self, category, rows, limit: int) -> list:
        """The primary keys of the next batch: the first `limit` of `rows`."""
        return [row[0] for row in fetch_rows(rows.values_list("pk"), self.database, limit)]

    def strategy_of(self, category, plan) -> str:
        reason = plan.collector_reason
        return "set-based SQL" if reason is None else "Django collector (%s)" % reason

    def apply(self, category, plan, keys: list) -> None:
        """One batch of a pass, in its transaction: here, delete the rows."""
        self.deleted[category.name] += self._delete_batch(category, plan, keys)

    def _count_cascaded(self, label: str, rows: int) -> None:
        if rows:
            self.cascaded[label] = self.cascaded.get(label, 0) + rows

    def _delete_batch(self, category, plan, keys: list) -> int:
        from django.db.models.deletion import ProtectedError, RestrictedError

        deleter = SqlDeleter(self.connection)
        sql_keys = keys_for_sql(category.model, keys, self.connection)
        if plan.collector_reason is None and not (_has_guards(plan) and deleter.guarded(plan, sql_keys)):
            deleted = deleter.delete(plan, sql_keys, absent=category.unreferenced_by)
            for label, rows in deleter.cascaded.items():
                self._count_cascaded(label, rows)
            return deleted
        # Signal receivers, PROTECT/RESTRICT rows and the like: Django's collector, as DOT does it.
        try:
            per_model = category.model.objects.db_manager(self.database).filter(pk__in=keys).delete()[1]
        except (ProtectedError, RestrictedError) as exc:
            raise OperationError("protected", "%s: %s" % (category.name, exc.args[0]))
        label = category.model._meta.label
        deleted = per_model.get(label, 0)
        for other, rows in per_model.items():
            self._count_cascaded(other, rows - deleted if other == label else rows)
        return deleted

    def run(self, passes: list) -> bool:
        """Run every pass to its end; False when max_runtime stopped it between batches."""
        from django.db import transaction

        batch_size = self.options["batch_size"]
        for category in passes:
            plan = self.plan(category.model)
            self.strategy[category.name] = self.strategy_of(category, plan)
            last = None
            while True:
                if not self._may_start_batch():
                    return False
                rows = category.rows(self.database, after=last).order_by("pk")
                with transaction.atomic(using=self.database):
                    keys = self.batch_keys(category, rows, batch_size)
                    if not keys:
                        break
                    self.apply(category, plan, keys)
                self.batches += 1
                self.pause_pending = True
                last = keys[-1]
                if len(keys) < batch_size:
                    break  # the walk reached the end of the table
        return True


def _release(lock) -> None:
    from django.db import DatabaseError

    try:
        lock.release()
    except DatabaseError:
        pass  # the connection is gone, and the server dropped its session lock with it


def _has_guards(plan) -> bool:
    return bool(plan.guards) or any(_has_guards(child) for unused, child in plan.cascades)


def _token_models() -> list:
    from oauth2_provider.models import (
        get_access_token_model,
        get_grant_model,
        get_id_token_model,
        get_refresh_token_model,
    )

    return [get_refresh_token_model(), get_access_token_model(), get_id_token_model(), get_grant_model()]


def _run_dot_clear_expired(database: str) -> dict:
    """DOT's own clear_expired(), for an implementation we have no proven rules for; counts by row counts.

    Such an implementation may clean up more than the token tables (DOT's main branch also
    deletes expired pushed authorization requests), so the rows every other table of DOT's
    app lost are counted too, under the model's label."""
    from django.apps import apps
    from django.db import router
    from oauth2_provider.models import clear_expired

    models = _token_models()
    if any(router.db_for_write(model) != database for model in models):
        raise OperationError(
            "unsupported",
            "DOT's clear_expired() always works on the database the routers choose, not on '%s'" % database,
        )
    models += [model for model in apps.get_app_config("oauth2_provider").get_models() if model not in models]
    before = [model._base_manager.using(database).count() for model in models]
    clear_expired()
    gone = [count - model._base_manager.using(database).count() for count, model in zip(before, models)]
    deleted = dict.fromkeys(REFRESH_CATEGORIES)
    deleted.update(access_tokens=gone[1], id_tokens=gone[2], grants=gone[3], refresh_tokens=gone[0])
    deleted.update((model._meta.label, rows) for model, rows in zip(models[4:], gone[4:]) if rows)
    return deleted


def _summary(verb: str, total: int, batches: int) -> str:
    return "%s %d expired or revoked token rows%s" % (verb, total, " in %d batches" % batches if batches else "")


def _cutoffs(moments: dict) -> dict:
    return {name: moment and moment.isoformat() for name, moment in moments.items()}


def _unproven(result: dict) -> str:
    """Why the engine does not use its own rules for the installed clear_expired()."""
    fingerprint = result["clear_expired_fingerprint"]
    which = "fingerprint %s" % fingerprint if fingerprint else "its source cannot be read"
    message = (
        "the clear_expired() of the installed django-oauth-toolkit %s (%s) is not one this module's cleanup rules "
        "were proven against (those of DOT %s)"
    )
    return message % (result["dot_version"], which, proven_releases())


def _predict(rule_set, context, result: dict) -> None:
    """Check mode: the counts a real run would delete, from COUNT queries only."""
    from django.utils import timezone

    if rule_set is None:
        context.warn("check mode cannot predict what clear_expired() would delete, because %s" % _unproven(result))
        result.update(deleted=dict.fromkeys(CATEGORIES), total=None, msg="nothing predicted, nothing deleted")
        return
    moments = cutoffs(rule_set, timezone.now())
    deleted = predicted_counts(categories(rule_set, moments), moments["now"], context.database)
    total = sum(deleted.values())
    result.update(cutoffs=_cutoffs(moments), deleted=deleted, total=total, changed=total > 0)
    result["msg"] = _summary("would delete", total, 0)


@contextlib.contextmanager
def locked(options: dict, context, result: dict, others: str = "another token cleanup"):
    """Hold the lock (options lock, lock_timeout) for a real run; yields whether the run may go on. When
    `others` hold it past lock_timeout, result (lock, complete, msg) and a warning say the run was skipped."""
    from django.db import connections

    lock = cleanup_lock(connections[context.database]) if options["lock"] else None
    result["lock"] = {"method": lock.method if lock else None, "acquired": False, "waited": 0.0}
    if lock is not None:
        acquired, waited = acquire(lock, options["lock_timeout"])
        result["lock"].update(acquired=acquired, waited=round(waited, 3))
        if not acquired:
            result["complete"] = False
            result["msg"] = "skipped: %s holds the %s (waited %.1f s)" % (others, lock.method, waited)
            context.warn(result["msg"])
            yield False
            return
    try:
        yield True
    finally:
        if lock is not None:
            _release(lock)


def _clean(rule_set, options: dict, context, result: dict, started: float) -> None:
    """A real run: take the lock, run the passes (or DOT's clear_expired()), release the lock."""
    from django.utils import timezone

    with locked(options, context, result) as may_run:
        if not may_run:
            return
        if rule_set is None:
            result.update(deleted=_run_dot_clear_expired(context.database), strategy="clear_expired")
        else:
            # `now` is taken once the lock is held, so waiting does not age the cut-offs.
            moments = cutoffs(rule_set, timezone.now())
            deadline = started + options["max_runtime"] if options["max_runtime"] else None
            run = _Run(options, context.database, deadline)
            complete = run.run(categories(rule_set, moments))
            result.update(cutoffs=_cutoffs(moments), deleted=run.deleted, batches=run.batches, complete=complete)
            result.update(cascaded=run.cascaded, strategy=run.strategy)
    total = sum(count or 0 for count in result["deleted"].values())  # refresh_tokens: the fallback's sum
    result.update(total=total, changed=total > 0, msg=_summary("deleted", total, result["batches"]))
    if not result["complete"]:
        result["msg"] += "; stopped by max_runtime before the end, the next run continues"


def run_token_cleanup(params: dict, context) -> dict:
    from django.core.exceptions import ImproperlyConfigured

    started = time.monotonic()
    prepare_database(context, _token_models())
    options = cleanup_options(params)
    fingerprint = installed_clear_expired_fingerprint()
    rule_set = rule_set_for(fingerprint)
    result = {
        "changed": False,
        "deleted": dict.fromkeys(CATEGORIES, 0),
        "total": 0,
        "batches": 0,
        "complete": True,
        "dot_version": installed_dot_version(),
        "clear_expired_fingerprint": fingerprint,
        "rules": rule_set or "clear_expired",
        "batch_size": options["batch_size"],
        "batch_interval": options["batch_interval"],
    }
    if rule_set is None and not context.check_mode:
        context.warn(
            "ran DOT's own clear_expired(), with DOT's batch settings and without max_runtime, because %s"
            % _unproven(result)
        )
    try:
        if context.check_mode:
            _predict(rule_set, context, result)
        else:
            _clean(rule_set, options, context, result, started)
    except ImproperlyConfigured as exc:
        raise OperationError("settings", "OAUTH2_PROVIDER settings: %s" % exc)
    result["elapsed"] = round(time.monotonic() - started, 3)
    return result
