# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Django side of oauth_token_revoke (and of oauth_application's revoke_tokens): revoke what some
applications, or one user, could still use.

The end state is what DOT's own per-object revocation of every selected row leaves, in this order:
each selected refresh token that is not revoked yet gets RefreshToken.revoke() (its access token is
deleted, the row stays, marked revoked, with its token_family: what replay detection reads), each
selected access token left gets AccessToken.revoke() (a delete), each selected ID token IDToken.revoke()
(a delete, which cascades to an access token that still points at it), and each selected grant is
deleted (DOT has no Grant.revoke(); a used grant is deleted). Those methods have been the same code
from DOT 1.5 to 3.4.1, except RefreshToken.revoke() in 3.0 (routers) and 3.4.0 (`pk=`); the engine
knows them by fingerprint (PROVEN_REVOKES) and runs its set-based passes only for the versions the
differential tests prove (tests/unit/test_cleanup_differential.py); any other revoke() -- a swapped
model's own, a fork's -- is called per object, and the result says so.

The work is the cleanup engine's (_django_cleanup): each pass walks its table in primary-key order, a
bounded batch per short transaction, deletes through the same set-based plans, under the same lock,
stopping between batches at max_runtime.

Django is imported inside functions: Ansible imports this file on hosts without it.
"""

from __future__ import annotations

import time

from ._django_cleanup import _Run, _token_models, cleanup_options, fetch_rows, keys_for_sql, locked
from ._django_cleanup_rules import CATEGORIES, Category, SqlDeleter, function_fingerprint, installed_dot_version
from ._django_core import OperationError
from ._django_database import prepare_database, resolve_user

# The cleanup's names for the kinds of rows: refresh_tokens is its name for refresh tokens as a whole.
REVOKED = ("refresh_tokens",) + CATEGORIES[3:]

# revoke() of DOT's abstract token models, by fingerprint (function_fingerprint): the implementations
# the differential tests run against (DOT 2.2.0, 2.4.0, 3.2.0, 3.4.0 and the newest, 3.4.1), and the
# releases that ship the same code (found by fingerprinting every release's source with
# tests/tools/dot-fingerprints).
PROVEN_REVOKES = {
    # self.delete(), in every release from 1.5.0 to 3.4.1
    "access_tokens": ("3dfdac2273f13c2f",),
    "id_tokens": ("fb02ca608fa3b196",),
    # 1.5.0 to 2.4.0; 3.0.0 to 3.3.0, which look the access token up by id= where 3.4 says pk= (the same
    # row, for any access token model whose primary key is `id`; DOT's own revoke() fails on any other);
    # 3.4.0 and 3.4.1
    "refresh_tokens": ("49714280f9fe3085", "9f258b0310c3b0fb", "d5b2319b1c78437b"),
}


def _models() -> dict:
    refresh, access, id_token, grant = _token_models()
    return {"refresh_tokens": refresh, "access_tokens": access, "id_tokens": id_token, "grants": grant}


def revoke_fingerprints() -> dict:
    """The fingerprint of each (possibly swapped) token model's revoke(), None where it cannot be read."""
    models = _models()
    return dict((name, function_fingerprint(getattr(models[name], "revoke", None))) for name in PROVEN_REVOKES)


class Selection:
    """What a run revokes: the rows of every token table that all the selectors match."""

    def __init__(self, applications=None, user=None, issued_before=None) -> None:
        self.applications = applications  # [(pk, client_id)], or None: any application
        self.user = user
        self.issued_before = issued_before

    def query(self):
        from django.db.models import Q

        query = Q()
        if self.applications is not None:
            keys = [pk for pk, unused in self.applications]
            # One application is an equality, which an index on (application_id, primary key) -- SQLite's and
            # InnoDB's implicitly -- serves in primary-key order: each batch reads only its own rows.
            query &= Q(application=keys[0]) if len(keys) == 1 else Q(application__in=keys)
        if self.user is not None:
            query &= Q(user=self.user.pk)
        if self.issued_before is not None:
            query &= Q(created__lt=self.issued_before)
        return query

    def passes(self) -> list:
        """DOT's per-object order: refresh tokens (which delete their access tokens), access tokens,
        ID tokens (which cascade to access tokens pointing at them), grants."""
        from django.db.models import Q

        models = _models()
        query = self.query()
        live = query & Q(revoked__isnull=True)  # RefreshToken.revoke() leaves a revoked one as it is
        return [Category(name, models[name], live if name == "refresh_tokens" else query) for name in REVOKED]

    def describe(self) -> dict:
        return {
            "client_ids": None if self.applications is None else [client_id for unused, client_id in self.applications],
            "user": None if self.user is None else self.user.pk,
            "username": None if self.user is None else self.user.get_username(),
            "issued_before": None if self.issued_before is None else self.issued_before.isoformat(),
        }


def _issued_before(value):
    from django.utils import timezone
    from django.utils.dateparse import parse_date, parse_datetime

    text = str(value).strip()
    try:
        moment = parse_datetime(text)
        if moment is None and parse_date(text) is not None:
            moment = parse_datetime(text + "T00:00:00")
    except ValueError:
        moment = None
    if moment is None:
        raise OperationError(
            "invalid", "issued_before: %r is not a date and time (ISO 8601, e.g. 2026-12-07T03:00:00Z)" % value
        )
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)  # the project's TIME_ZONE, as Django reads a naive form value
    return moment


def _applications(client_ids, database: str) -> list:
    from oauth2_provider.models import get_application_model

    if isinstance(client_ids, str):
        client_ids = [client_ids]
    if not client_ids:
        raise OperationError(
            "invalid", "client_id is an empty list, most often a variable that did not load; name the applications"
        )
    wanted = list(dict.fromkeys(str(client_id) for client_id in client_ids))
    rows = get_application_model()._default_manager.db_manager(database).filter(client_id__in=wanted)
    found = dict(rows.values_list("client_id", "pk"))
    missing = [client_id for client_id in wanted if client_id not in found]
    if missing:
        raise OperationError(
            "not_found",
            "no application with client_id %s in database '%s'; nothing revoked"
            % (", ".join(repr(client_id) for client_id in missing), database),
        )
    return [(found[client_id], client_id) for client_id in wanted]


def selection_from(params: dict, database: str) -> Selection:
    """The selection that the task's selectors name, every one resolved; refused when none is given."""
    if params.get("client_id") is None and params.get("user") is None:
        raise OperationError(
            "invalid",
            "no selector: give client_id, user or both (with issued_before to narrow them); refusing to revoke every "
            "token",
        )
    selection = Selection()
    if params.get("client_id") is not None:
        selection.applications = _applications(params["client_id"], database)
    if params.get("user") is not None:
        if str(params["user"]).strip() == "":
            raise OperationError("invalid", "user is empty, most often a variable that did not load; name the user")
        hint = _models()["access_tokens"]()
        hint._state.db = database  # a token of this database: whose user would it be?
        selection.user = resolve_user(params["user"], params.get("user_lookup") or "auto", hint)
    if params.get("issued_before") is not None:
        selection.issued_before = _issued_before(params["issued_before"])
    return selection


class _RevokeRun(_Run):
    """The cleanup's batch loop, with DOT's revoke() semantics per pass: refresh tokens are revoked (their
    access tokens deleted), the rest deleted; every row a batch removes from a token table is counted."""

    def __init__(self, options: dict, database: str, deadline, now) -> None:
        super().__init__(options, database, deadline, counted=REVOKED)
        self.now = now
        self.models = _models()
        self.unproven = {}
        fingerprints = revoke_fingerprints()
        for name, proven in PROVEN_REVOKES.items():
            if fingerprints[name] not in proven:
                self.unproven[name] = "%s.revoke() is not one this module was proven against (fingerprint %s)" % (
                    self.models[name]._meta.label,
                    fingerprints[name],
                )
        if "refresh_tokens" not in self.unproven and _has_save_receivers(self.models["refresh_tokens"]):
            label = self.models["refresh_tokens"]._meta.label
            self.unproven["refresh_tokens"] = "save signal receivers are connected to %s" % label
        binding = self.models["refresh_tokens"]._meta.get_field("access_token")
        self.unbound = Category("access_tokens", self.models["access_tokens"], None, unreferenced_by=binding)
        self.bound = []  # the access tokens of the refresh tokens in the batch, read with their keys

    def batch_keys(self, category, rows, limit: int) -> list:
        if category.name != "refresh_tokens" or category.name in self.unproven:
            return super().batch_keys(category, rows, limit)
        found = fetch_rows(rows.values_list("pk", "access_token"), self.database, limit)
        self.bound = [access for unused, access in found if access is not None]
        return [pk for pk, unused in found]

    def strategy_of(self, category, plan) -> str:
        if category.name in self.unproven:
            return "DOT's revoke() per object (%s)" % self.unproven[category.name]
        if category.name == "refresh_tokens":
            plan = self.plan(self.unbound.model)  # what revoking does: delete the access tokens
        return super().strategy_of(category, plan)

    def apply(self, category, plan, keys: list) -> None:
        before = dict(self.cascaded)
        if category.name in self.unproven:
            self._per_object(category, keys)
        elif category.name == "refresh_tokens":
            self._revoke_refresh_tokens(keys)
        else:
            self.deleted[category.name] += self._delete_batch(category, plan, keys)
        # Token rows that went with others (access tokens with their ID token) count as what they are.
        for name in ("access_tokens", "id_tokens", "grants"):
            label = self.models[name]._meta.label
            gone = self.cascaded.get(label, 0) - before.get(label, 0)
            if gone:
                self.deleted[name] += gone
                self.cascaded[label] -= gone
                if not self.cascaded[label]:
                    del self.cascaded[label]

    def _revoke_refresh_tokens(self, keys: list) -> None:
        """RefreshToken.revoke() for a batch: delete the access tokens, then mark the rows revoked (and
        unbound, and updated, as its save() does). One moment for the run, as DOT's revoke_family() does."""
        from django.db import IntegrityError, transaction

        refresh = self.models["refresh_tokens"]
        sql = SqlDeleter(self.connection)
        sql_keys = keys_for_sql(refresh, keys, self.connection)
        binding = refresh._meta.get_field("access_token")
        bound = self.bound  # read in this transaction, with the batch's keys (batch_keys)
        try:
            with transaction.atomic(using=self.database):
                values = [(binding, None), (refresh._meta.get_field("revoked"), self.now)]
                values += [(field, self.now) for field in _auto_now_fields(refresh)]
                revoked = sql.set_columns(refresh, values, sql_keys)
                # Unbound first (MySQL checks foreign keys at once), so nothing points at these access tokens
                # through the refresh token's one-to-one key any more: their delete need not set it null again.
                deleted = self._delete_batch(self.unbound, self.plan(self.unbound.model), bound) if bound else 0
        except IntegrityError:
            # (token_checksum, revoked) is unique in DOT 3.4: two live rows sharing a checksum cannot take one
            # timestamp. DOT's revoke() gives each row its own moment.
            self._per_object(Category("refresh_tokens", refresh, None), keys)
            return
        self.deleted["access_tokens"] += deleted
        self.deleted["refresh_tokens"] += revoked

    def _per_object(self, category, keys: list) -> None:
        """DOT's own revoke() of each row, counting what it changed."""
        from django.db import router

        models = self.models
        if router.db_for_write(models["access_tokens"]) != self.database:
            raise OperationError(
                "unsupported",
                "%s; DOT's revoke() works on the database the routers choose, not on '%s'"
                % (self.unproven.get(category.name, "revoke()"), self.database),
            )
        counts = dict((name, models[name]._base_manager.using(self.database).count()) for name in REVOKED[1:])
        live = models["refresh_tokens"]._base_manager.using(self.database).filter(revoked__isnull=True)
        live_before = live.count()
        for row in category.model.objects.db_manager(self.database).filter(pk__in=keys).order_by("pk"):
            row.revoke()
        self.deleted["refresh_tokens"] += live_before - live.count()
        for name, before in counts.items():
            self.deleted[name] += before - models[name]._base_manager.using(self.database).count()


def _auto_now_fields(model) -> list:
    return [field for field in model._meta.concrete_fields if getattr(field, "auto_now", False)]


def _has_save_receivers(model) -> bool:
    from django.db.models import signals

    return signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model)


def predicted(selection: Selection, database: str) -> dict:
    """What a run would revoke, from COUNT queries only: every access token of a selected live refresh
    token, selected itself or pointing at a selected ID token goes, once."""
    from django.db.models import Q

    refresh, access, id_tokens, grants = [category.rows(database) for category in selection.passes()]
    freed = Q(pk__in=refresh.exclude(access_token__isnull=True).values("access_token"))
    pointing = Q(id_token__in=id_tokens.values("pk"))
    gone = _models()["access_tokens"].objects.db_manager(database).filter(selection.query() | freed | pointing)
    return {
        "refresh_tokens": refresh.count(),
        "access_tokens": gone.count(),
        "id_tokens": id_tokens.count(),
        "grants": grants.count(),
    }


def revoke_selection(selection: Selection, database: str, check_mode: bool, options: dict, deadline=None) -> dict:
    """Revoke (in check mode: count) what `selection` names, in batches; no lock. Returns the run's facts."""
    from django.utils import timezone

    if check_mode:
        return {"revoked": predicted(selection, database), "batches": 0, "complete": True}
    run = _RevokeRun(options, database, deadline, timezone.now())
    complete = run.run(selection.passes())
    return {
        "revoked": run.deleted,
        "batches": run.batches,
        "complete": complete,
        "cascaded": run.cascaded,
        "strategy": run.strategy,
        "revoked_at": run.now.isoformat(),
    }


def revoke_application_tokens(application, context) -> dict:
    """Per-category counts of revoking every token of `application`, inside the caller's transaction
    (oauth_application's revoke_tokens: on_secret_change)."""
    options = cleanup_options({"batch_interval": 0})
    selection = Selection([(application.pk, application.client_id)])
    facts = revoke_selection(selection, context.database, context.check_mode, options)
    _warn_per_object(facts, context)
    return facts["revoked"]


def _warn_per_object(facts: dict, context) -> None:
    for name, how in sorted((facts.get("strategy") or {}).items()):
        if how.startswith("DOT's revoke()"):
            context.warn("%s: %s" % (name, how))


def _summary(verb: str, result: dict) -> str:
    counts = result["revoked"]
    return "%s %d refresh tokens, %d access tokens, %d ID tokens and %d grants of %s%s" % (
        verb,
        counts["refresh_tokens"],
        counts["access_tokens"],
        counts["id_tokens"],
        counts["grants"],
        _selected(result["selection"]),
        " in %d batches" % result["batches"] if result["batches"] else "",
    )


def _selected(selection: dict) -> str:
    parts = []
    if selection["client_ids"] is not None:
        parts.append("client_id %s" % ", ".join(selection["client_ids"]))
    if selection["user"] is not None:
        parts.append("user %r (pk %s)" % (selection["username"], selection["user"]))
    if selection["issued_before"] is not None:
        parts.append("issued before %s" % selection["issued_before"])
    return " and ".join(parts)


def run_token_revoke(params: dict, context) -> dict:
    from django.core.exceptions import ImproperlyConfigured

    started = time.monotonic()
    prepare_database(context, _token_models())
    # A revocation is urgent: it waits for a cleanup holding the lock rather than giving up at once.
    lock_timeout = params.get("lock_timeout")
    options = cleanup_options(dict(params, lock_timeout=300 if lock_timeout is None else lock_timeout))
    selection = selection_from(params, context.database)
    result = {
        "changed": False,
        "revoked": dict.fromkeys(REVOKED, 0),
        "total": 0,
        "batches": 0,
        "complete": True,
        "selection": selection.describe(),
        "dot_version": installed_dot_version(),
        "batch_size": options["batch_size"],
    }
    try:
        if context.check_mode:
            result.update(revoke_selection(selection, context.database, True, options))
        else:
            with locked(options, context, result, "a token cleanup or revocation") as may_run:
                if not may_run:
                    result["elapsed"] = round(time.monotonic() - started, 3)
                    return result
                deadline = started + options["max_runtime"] if options["max_runtime"] else None
                result.update(revoke_selection(selection, context.database, False, options, deadline))
    except ImproperlyConfigured as exc:
        raise OperationError("settings", "OAUTH2_PROVIDER settings: %s" % exc)
    result["total"] = sum(result["revoked"].values())
    result["changed"] = result["total"] > 0
    result["msg"] = _summary("would revoke" if context.check_mode else "revoked", result)
    _warn_per_object(result, context)
    if not result["complete"]:
        result["msg"] += "; stopped by max_runtime before the end, the next run continues"
    result["elapsed"] = round(time.monotonic() - started, 3)
    return result
