# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which rows DOT's clear_expired() deletes, per implementation of it: the "what" of token cleanup.

DOT changed these rules in 2.3 (ID tokens), 3.4.0 (grace period, reuse protection,
`revoked__lte`) and 3.4.1 (orphaned refresh tokens, `revoked IS NULL` and `__lte` for
idle expiry), each time in a minor or patch release; and DOT's main branch, a fork or a
patched install can change them while still calling itself 3.4.1. So the engine does not
go by the version string: it fingerprints the installed clear_expired() and uses a rule
set only for an implementation the differential tests (tests/unit/test_cleanup_differential.py)
have proven; anything else gets DOT's own clear_expired(). Each rule set below restates
DOT's filters verbatim, in DOT's order, because later categories see the effect of earlier
ones (deleting a refresh token frees its access token for the access-token category).

Django is imported inside functions: Ansible imports this file on hosts without it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import linecache
import types

CATEGORIES = (
    "revoked_refresh_tokens",
    "orphaned_refresh_tokens",
    "expired_refresh_tokens",
    "access_tokens",
    "id_tokens",
    "grants",
)
REFRESH_CATEGORIES = CATEGORIES[:3]

# The clear_expired() implementations the differential tests have been run against:
# (fingerprint, rule set, the release the tests run on, the releases on PyPI that ship it).
#
# Only the function is fingerprinted because it is the only part of DOT the rule sets restate:
# its filters, their order, its cut-offs and its batching (batch_delete is nested in it). What
# else decides which rows go is read from the installed DOT at run time, the same way
# clear_expired() reads it: the settings, the (possibly swapped) models and their relations'
# on_delete, signal receivers, and, from 3.4.1, DOT's refresh_token_expire_timedelta(), which
# the engine calls itself. So a release whose clear_expired() has the fingerprint of a proven
# one runs the proven code and gets its rule set, whatever its version string; the releases in
# the last column were found that way, by fingerprinting each wheel on PyPI
# (tests/tools/dot-fingerprints). Any other fingerprint -- a fork, a patch, DOT's main branch, a
# future release that changes the function -- runs DOT's own clear_expired(). Not covered: a token
# model whose `objects` manager overrides QuerySet.delete() (a soft delete, say), which DOT's
# batches call and the engine's SQL does not.
PROVEN_IMPLEMENTATIONS = (
    ("1547fa470e1e173b", "2.0", "2.2.0", "1.7.0 to 2.2.0"),
    ("2cd1589f2e0029c9", "2.3", "2.4.0", "2.3.0 to 3.3.0"),
    ("76f56431aa0ef5db", "3.4.0", "3.4.0", "3.4.0"),
    ("139e9933482f01cc", "3.4.1", "3.4.1", "3.4.1"),
)


class Category:
    """One of clear_expired()'s passes: the rows of `model` matching DOT's `query` and, when
    `unreferenced_by` (a foreign key of another model) is given, that no row points at."""

    def __init__(self, name: str, model, query, unreferenced_by=None) -> None:
        self.name = name
        self.model = model
        self.query = query
        self.unreferenced_by = unreferenced_by

    def rows(self, database: str, after=None):
        """The matching rows, only those with a primary key above `after` when given."""
        from django.db.models import Exists, OuterRef

        # DOT selects through `objects`, not the default manager; so do we.
        rows = self.model.objects.db_manager(database).filter(self.query)
        if self.unreferenced_by is not None:
            # DOT writes this as `<reverse relation>__isnull=True`: a LEFT JOIN ... IS NULL, which
            # PostgreSQL does not turn into an anti-join; it hash-joins the whole other table, and
            # the rest of this one, on every batch. NOT EXISTS selects the same rows.
            field = self.unreferenced_by
            referencing = field.model._base_manager.db_manager(database).filter(**{field.name: OuterRef("pk")})
            if after is not None:
                # Implied by the outer bound; lets the index scan of the other table start there.
                referencing = referencing.filter(**{field.name + "__gt": after})
            rows = rows.filter(~Exists(referencing))
        if after is not None:
            rows = rows.filter(pk__gt=after)
        return rows


def installed_dot_version() -> str:
    import oauth2_provider

    version = getattr(oauth2_provider, "__version__", None)
    if version:
        return str(version)
    from importlib.metadata import version as distribution_version

    return distribution_version("django-oauth-toolkit")


# Fields that say nothing about what the code does (`ctx` follows from the syntax around a
# name) or that appeared in later Pythons; leaving them out, with empty fields, keeps one
# function's fingerprint the same on every Python from 3.8 on.
_UNFINGERPRINTED_FIELDS = frozenset(["ctx", "kind", "type_comment", "type_params"])


def _syntax(node) -> str:
    if isinstance(node, ast.AST):
        fields = []
        for name in node._fields:
            value = getattr(node, name, None)
            if name not in _UNFINGERPRINTED_FIELDS and value is not None and value != []:
                fields.append("%s=%s" % (name, _syntax(value)))
        return "%s(%s)" % (type(node).__name__, ", ".join(fields))
    if isinstance(node, list):
        return "[%s]" % ", ".join(_syntax(item) for item in node)
    return repr(node)


def source_fingerprint(source: str, name: str, first_line: int | None = None) -> str | None:
    """The fingerprint of the function `name` in module `source` (the one whose code starts at
    `first_line` when given: a module can define a name twice).

    It hashes the function's syntax tree, not its text: comments, blank lines, line breaks,
    quotes and the spacing inside f-strings do not count; any change to the code does,
    docstrings and decorators included. None when there is no such function.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            # A function's code starts at its first decorator.
            starts = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
            if first_line is None or starts == first_line:
                return hashlib.sha256(_syntax(node).encode("utf-8")).hexdigest()[:16]
    return None


def function_fingerprint(function) -> str | None:
    """The fingerprint of the code `function` runs, or None when its source cannot be read.

    Read through the function's own code object rather than inspect.getsource(), which
    follows functools.wraps to the wrapped function and would fingerprint that instead
    of a wrapper that changes what it does."""
    if not isinstance(function, types.FunctionType):
        return None
    code = function.__code__
    lines = linecache.getlines(code.co_filename, function.__globals__)
    if not lines:
        return None
    return source_fingerprint("".join(lines), code.co_name, code.co_firstlineno)


def installed_clear_expired_fingerprint() -> str | None:
    """The fingerprint of the clear_expired() the cleartokens command would run now."""
    from oauth2_provider import models

    return function_fingerprint(getattr(models, "clear_expired", None))


def rule_set_for(fingerprint: str | None) -> str | None:
    """The rule set proven for the clear_expired() with this fingerprint, or None for any other."""
    for proven, rule_set, unused_proven_on, unused_releases in PROVEN_IMPLEMENTATIONS:
        if fingerprint == proven:
            return rule_set
    return None


def proven_releases() -> str:
    """For messages: the DOT releases whose clear_expired() the engine has rules for."""
    return ", ".join(releases for unused, unused_rules, unused_on, releases in PROVEN_IMPLEMENTATIONS)


def cutoffs(rule_set: str, now) -> dict:
    """The moments clear_expired() compares against, computed exactly as that DOT release does."""
    from datetime import timedelta

    from django.core.exceptions import ImproperlyConfigured
    from oauth2_provider.settings import oauth2_settings

    refresh_revoked_at = None
    refresh_expire_at = None
    if rule_set in ("3.4.0", "3.4.1"):
        refresh_revoked_at = now
        grace = oauth2_settings.REFRESH_TOKEN_GRACE_PERIOD_SECONDS
        if grace:
            try:
                grace = timedelta(seconds=grace)
            except TypeError:
                raise ImproperlyConfigured("REFRESH_TOKEN_GRACE_PERIOD_SECONDS must be in seconds")
            if grace < timedelta(0):
                raise ImproperlyConfigured("REFRESH_TOKEN_GRACE_PERIOD_SECONDS must not be negative")
            refresh_revoked_at = now - grace
    if rule_set == "3.4.1":
        from oauth2_provider.models import refresh_token_expire_timedelta

        delta = refresh_token_expire_timedelta()
        if delta:
            refresh_expire_at = now - delta
    else:
        # Before 3.4.1 the setting's own truthiness decides, not the converted timedelta's.
        setting = oauth2_settings.REFRESH_TOKEN_EXPIRE_SECONDS
        if setting:
            if not isinstance(setting, timedelta):
                try:
                    setting = timedelta(seconds=setting)
                except TypeError:
                    raise ImproperlyConfigured("REFRESH_TOKEN_EXPIRE_SECONDS must be either a timedelta or seconds")
            refresh_expire_at = now - setting
    if rule_set in ("3.4.0", "3.4.1") and oauth2_settings.REFRESH_TOKEN_REUSE_PROTECTION:
        # DOT keeps revoked refresh tokens until they expire: they are what detects reuse.
        refresh_revoked_at = refresh_expire_at
    if rule_set in ("2.0", "2.3"):
        # Before 3.4.0 revoked refresh tokens went with the idle-expiry cut-off, strictly before it.
        refresh_revoked_at = refresh_expire_at
    return {"now": now, "refresh_revoked_at": refresh_revoked_at, "refresh_expire_at": refresh_expire_at}


def categories(rule_set: str, moments: dict) -> list:
    """clear_expired()'s passes for `rule_set`, in DOT's order, with DOT's filters."""
    from django.db.models import Q
    from oauth2_provider.models import (
        get_access_token_model,
        get_grant_model,
        get_id_token_model,
        get_refresh_token_model,
    )

    now = moments["now"]
    revoked_at = moments["refresh_revoked_at"]
    expire_at = moments["refresh_expire_at"]
    refresh_model = get_refresh_token_model()
    passes = []
    if revoked_at:
        lookup = "revoked__lt" if rule_set in ("2.0", "2.3") else "revoked__lte"
        passes.append(Category("revoked_refresh_tokens", refresh_model, Q(**{lookup: revoked_at})))
    if rule_set == "3.4.1":
        orphaned = Q(revoked__isnull=True, access_token__isnull=True)
        passes.append(Category("orphaned_refresh_tokens", refresh_model, orphaned))
    if expire_at:
        if rule_set == "3.4.1":
            expired = Q(revoked__isnull=True, access_token__expires__lte=expire_at)
        else:
            expired = Q(access_token__expires__lt=expire_at)
        passes.append(Category("expired_refresh_tokens", refresh_model, expired))
    # DOT: refresh_token__isnull=True / access_token__isnull=True, the reverse one-to-one relations.
    access_model = get_access_token_model()
    unrefreshed = access_model._meta.get_field("refresh_token").field
    passes.append(Category("access_tokens", access_model, Q(expires__lt=now), unreferenced_by=unrefreshed))
    if rule_set != "2.0":
        id_model = get_id_token_model()
        unused = id_model._meta.get_field("access_token").field
        passes.append(Category("id_tokens", id_model, Q(expires__lt=now), unreferenced_by=unused))
    passes.append(Category("grants", get_grant_model(), Q(expires__lt=now)))
    return passes


def predicted_counts(passes: list, now, database: str) -> dict:
    """What each pass would delete, without deleting: the check-mode answer.

    The passes interact, so each count is taken on the state the earlier passes leave:
    a refresh token deleted by an earlier refresh pass is not counted again, an access
    token is freed when its refresh token goes, an ID token when its access token goes.
    Only deletes propagate between passes (the SET_NULL updates they cause touch
    columns no later filter reads), which is what makes this a fixed set of COUNTs.
    """
    from django.db.models import Exists, OuterRef

    counts = dict.fromkeys(CATEGORIES, 0)
    by_name = {category.name: category for category in passes}
    refresh_gone = None
    for name in REFRESH_CATEGORIES:
        if name in by_name:
            rows = by_name[name].rows(database)
            if refresh_gone is not None:
                rows = rows.exclude(refresh_gone)
            counts[name] = rows.count()
            refresh_gone = by_name[name].query if refresh_gone is None else refresh_gone | by_name[name].query

    def freed(category, surviving):
        """The category's rows that no surviving row of the other table points at."""
        link = category.unreferenced_by
        return category.model.objects.db_manager(database).filter(
            category.query, ~Exists(surviving.filter(**{link.name: OuterRef("pk")}))
        )

    access = by_name["access_tokens"]
    surviving_refresh = access.unreferenced_by.model._base_manager.db_manager(database).all()
    if refresh_gone is not None:
        surviving_refresh = surviving_refresh.exclude(refresh_gone)
    access_gone = freed(access, surviving_refresh)
    counts["access_tokens"] = access_gone.count()
    if "id_tokens" in by_name:
        id_tokens = by_name["id_tokens"]
        surviving_access = id_tokens.unreferenced_by.model._base_manager.db_manager(database).exclude(
            pk__in=access_gone.values("pk")
        )
        counts["id_tokens"] = freed(id_tokens, surviving_access).count()
    counts["grants"] = by_name["grants"].rows(database).count()
    return counts


# ---------------------------------------------------------------------------------------
# Django's on_delete rules, applied with set-based SQL.
#
# QuerySet.delete() runs Django's collector, which loads every row (and every cascaded
# row) as a model instance. The end state only depends on each relation's on_delete,
# which the model metadata tells us once; so a plan is built per token model and run per
# batch as a few statements keyed by primary key. Where the collector does something
# SQL cannot repeat (signal receivers, parents of multi-table inheritance, generic
# relations, SET(callable)), the plan says why and the batch goes through the collector.


class DeletePlan:
    """How rows of `model`, given by primary key, are deleted the way Django's collector would."""

    def __init__(self, model) -> None:
        self.model = model
        self.updates = []  # (field, value): SET_NULL / SET_DEFAULT / SET(value) on rows pointing here
        self.fast_cascades = []  # field: cascaded rows with nothing of their own to follow
        self.cascades = []  # (field, DeletePlan): cascaded rows whose own relations must be followed
        self.guards = []  # field: PROTECT / RESTRICT; a referencing row hands the batch to the collector
        self.collector_reason = None  # set when SQL cannot reproduce the collector for this model


def _has_delete_receivers(model) -> bool:
    from django.db.models import signals

    return signals.pre_delete.has_listeners(model) or signals.post_delete.has_listeners(model)


def delete_plan(model, path: tuple = ()) -> DeletePlan:
    """Read `model`'s reverse relations once; `path` holds the models cascading into it."""
    from django.db.models import deletion

    skipped = getattr(deletion, "SKIP_COLLECTION", frozenset([deletion.DO_NOTHING]))
    plan = DeletePlan(model)
    label = model._meta.label
    if _has_delete_receivers(model):
        plan.collector_reason = "delete signal receivers are connected to %s" % label
        return plan
    if model._meta.concrete_model._meta.parents:
        plan.collector_reason = "%s has multi-table inheritance parents" % label
        return plan
    if any(hasattr(field, "bulk_related_objects") for field in model._meta.private_fields):
        plan.collector_reason = "%s has generic relations" % label
        return plan
    for related in deletion.get_candidate_relations_to_delete(model._meta):
        field = related.field
        on_delete = field.remote_field.on_delete
        where = "%s.%s" % (related.related_model._meta.label, field.name)
        if on_delete in skipped:
            continue  # DO_NOTHING, or the database's own ON DELETE does it
        if field.target_field != model._meta.pk:
            plan.collector_reason = "%s points at %s.%s, not the primary key" % (where, label, field.target_field.name)
        elif on_delete is deletion.CASCADE:
            child = related.related_model
            if child._meta.concrete_model in path + (model._meta.concrete_model,):
                plan.collector_reason = "cascade cycle through %s" % where
            else:
                child_plan = delete_plan(child, path + (model._meta.concrete_model,))
                plan.collector_reason = child_plan.collector_reason
                if child_plan.updates or child_plan.fast_cascades or child_plan.cascades or child_plan.guards:
                    plan.cascades.append((field, child_plan))
                else:
                    plan.fast_cascades.append(field)
        elif on_delete is deletion.SET_NULL:
            plan.updates.append((field, None))
        elif on_delete is deletion.SET_DEFAULT:
            plan.updates.append((field, field.get_default()))
        elif on_delete in (deletion.PROTECT, deletion.RESTRICT):
            plan.guards.append(field)
        elif getattr(on_delete, "lazy_sub_objs", False) and hasattr(on_delete, "deconstruct"):
            constant = on_delete.deconstruct()[1][0]  # SET(value) with a constant; a model instance means its key
            plan.updates.append((field, getattr(constant, "pk", constant)))
        else:
            plan.collector_reason = "%s has on_delete=%s" % (where, getattr(on_delete, "__name__", on_delete))
        if plan.collector_reason:
            return plan
    return plan


class SqlDeleter:
    """Runs a DeletePlan on one connection, counting the rows it deletes through cascades.

    Every statement names its rows by a list of keys (on SQLite, a JSON array of them), never
    by a subquery of a table: MySQL cannot delete from a table that the statement also reads in
    a subquery.
    """

    UPDATE_VALUES = 8

    def __init__(self, connection) -> None:
        self.connection = connection
        self.quote = connection.ops.quote_name
        # Ten thousand placeholders per statement cost more than the delete itself: psycopg parses
        # them, MySQLdb escapes each one, Django's SQLite cursor rewrites each %s to ? with a regular
        # expression. So PostgreSQL gets the keys as one array parameter, SQLite as one JSON array
        # parameter that json_each() unpacks (no literals: its statement cache would keep every
        # distinct list), and MySQL integer keys as literals (safe: ints cannot carry SQL). At 1M tokens
        # (tests/bench/revoke_bench.py) psycopg's quoting had cost 9 of 52 s, SQLite's rewriting 0.8 of 13 s.
        self.as_array = connection.vendor == "postgresql"
        self.as_json = connection.vendor == "sqlite" and bool(getattr(connection.features, "supports_json_field", False))
        self.as_literals = connection.vendor == "mysql"
        # SQLite caps bound parameters per statement (999 before 3.32); MySQL takes any list.
        # A few parameters are kept for the values of an UPDATE (set_columns sets up to UPDATE_VALUES).
        limit = None if self.as_array else connection.features.max_query_params
        self.chunk = max(1, limit - self.UPDATE_VALUES) if limit else None
        self.cascaded = {}  # model label -> rows deleted because a row they point at went
        self._encoded = None  # (keys, what _encode made of them): the last list named

    def _matching(self, column: str, keys: list):
        """("column matches keys" as SQL, parameters), chunk by chunk of keys; nothing for no keys."""
        if not keys:
            return
        if self.as_array or self.as_json or self.as_literals:
            # One batch's keys name its rows in several tables: encode them once.
            if self._encoded is None or self._encoded[0] is not keys:
                self._encoded = (keys, self._encode(keys))
            if self._encoded[1] is not None:
                suffix, params = self._encoded[1]
                yield self.quote(column) + suffix, params
                return
        size = self.chunk or len(keys) or 1
        for start in range(0, len(keys), size):
            stop = start + size
            part = keys[start:stop]
            yield "%s IN (%s)" % (self.quote(column), ", ".join(["%s"] * len(part))), part

    def _encode(self, keys: list):
        """(" IN ..." to follow a column, its parameters) naming all of `keys` at once, or None."""
        kinds = set(map(type, keys))
        if self.as_array:
            # psycopg quotes a list element by element, through a regular expression each; integers need
            # no quoting, so they go as the array's text form, which PostgreSQL reads as the column's type.
            return " = ANY(%s)", ["{%s}" % ",".join(map(str, keys)) if kinds == {int} else keys]
        if self.as_json and kinds in ({int}, {str}):  # what JSON carries as it is (a UUID as SQLite stores it)
            return " IN (SELECT value FROM json_each(%s))", [json.dumps(keys)]
        if self.as_literals and kinds == {int}:
            return " IN (%s)" % ", ".join(map(str, keys)), []
        return None

    def set_columns(self, model, values: list, keys: list) -> int:
        """UPDATE rows `keys` of `model` to `values`, [(field, value)], at most UPDATE_VALUES of them; the number of
        rows updated."""
        table = self.quote(model._meta.db_table)
        assignments = ", ".join("%s = %%s" % self.quote(field.column) for field, unused in values)
        prepared = [field.get_db_prep_save(value, self.connection) for field, value in values]
        updated = 0
        with self.connection.cursor() as cursor:
            for condition, params in self._matching(model._meta.pk.column, keys):
                cursor.execute("UPDATE %s SET %s WHERE %s" % (table, assignments, condition), prepared + params)
                updated += cursor.rowcount
        return updated

    def _set_referencing(self, cursor, field, value, keys: list) -> None:
        """Set `field` to `value` in the rows that point at `keys` through it (SET_NULL and the like)."""
        update = "UPDATE %s SET %s = %%s" % (self.quote(field.model._meta.db_table), self.quote(field.column))
        prepared = field.get_db_prep_save(value, self.connection)
        column = field.column
        if self.as_literals:
            # MySQL and MariaDB will not walk the index of a column that the UPDATE itself changes when
            # the list is long: EXPLAIN shows a scan of the whole table, for every batch. So find the rows
            # through that index first, and update them by primary key (none found, no UPDATE at all).
            keys = self._referencing_keys(field, field.model, keys)
            column = field.model._meta.pk.column
        for condition, params in self._matching(column, keys):
            cursor.execute("%s WHERE %s" % (update, condition), [prepared] + params)

    def _count(self, model, rows: int) -> None:
        if rows:
            self.cascaded[model._meta.label] = self.cascaded.get(model._meta.label, 0) + rows

    def guarded(self, plan: DeletePlan, keys: list) -> bool:
        """True when a PROTECT/RESTRICT row points at `keys` anywhere down the cascade."""
        with self.connection.cursor() as cursor:
            for field in plan.guards:
                table = self.quote(field.model._meta.db_table)
                for condition, params in self._matching(field.column, keys):
                    cursor.execute("SELECT 1 FROM %s WHERE %s LIMIT 1" % (table, condition), params)
                    if cursor.fetchone():
                        return True
        for field, child in plan.cascades:
            if child.guards or child.cascades:
                if self.guarded(child, self._referencing_keys(field, child.model, keys)):
                    return True
        return False

    def _referencing_keys(self, field, model, keys: list) -> list:
        found = []
        with self.connection.cursor() as cursor:
            select = "SELECT %s FROM %s" % (self.quote(model._meta.pk.column), self.quote(model._meta.db_table))
            for condition, params in self._matching(field.column, keys):
                cursor.execute("%s WHERE %s" % (select, condition), params)
                found.extend(row[0] for row in cursor.fetchall())
        return found

    def delete(self, plan: DeletePlan, keys: list, absent=None, cascaded: bool = False) -> int:
        """Delete rows `keys` of plan.model and follow its relations, children first (MySQL checks
        foreign keys at once, not at commit).

        `absent` is a foreign key that the caller has just found no row pointing through (the
        category's own NOT EXISTS, in this transaction); following it again would cost ten thousand
        index probes per batch for nothing. Should a row appear through it in between, the database's
        own foreign key check fails the batch, which then rolls back whole."""
        with self.connection.cursor() as cursor:
            for field, value in plan.updates:
                if field is not absent:
                    self._set_referencing(cursor, field, value, keys)
            for field in plan.fast_cascades:
                if field is absent:
                    continue
                table = self.quote(field.model._meta.db_table)
                for condition, params in self._matching(field.column, keys):
                    cursor.execute("DELETE FROM %s WHERE %s" % (table, condition), params)
                    self._count(field.model, cursor.rowcount)
            for field, child in plan.cascades:
                child_keys = [] if field is absent else self._referencing_keys(field, child.model, keys)
                if child_keys:
                    self.delete(child, child_keys, cascaded=True)
            deleted = 0
            table = self.quote(plan.model._meta.db_table)
            for condition, params in self._matching(plan.model._meta.pk.column, keys):
                cursor.execute("DELETE FROM %s WHERE %s" % (table, condition), params)
                deleted += cursor.rowcount
        if cascaded:
            self._count(plan.model, deleted)
        return deleted
