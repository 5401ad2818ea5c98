"""Django side of oauth_applications: a whole set of applications in one transaction.

Each declared item goes through the same `converge_plan()` as oauth_application; every item is
planned and validated before anything is written, so one bad item fails the task with every
problem named and nothing changed. Exclusive mode adds the deletion of what is not declared.
The declared secrets are verified, and the secrets to store hashed, hash_threads at once
(_django_secrets); the queries and writes stay on this thread, in the one transaction.
"""

from __future__ import annotations

import fnmatch

from ._django_applications import (
    ACTIONS,
    Plan,
    apply_plan,
    converge_plan,
    describe,
    plan_result,
    prepare_secrets,
    refuse_to_return_secrets_in_sight,
    refuse_writes_that_cannot_roll_back,
    registration_source_filter,
    revoke_on_secret_change,
    secret_to_verify,
    warn_hashed_against_wish,
)
from ._django_core import OperationError, database_error_message
from ._django_database import prepare_database
from ._django_secrets import thread_count, verify_all


def _item_name(position: int, client_id) -> str:
    return "applications[%d] (client_id %r)" % (position, client_id)


def _refuse_duplicates(items: list) -> None:
    seen = {}
    for position, item in enumerate(items):
        seen.setdefault(item["client_id"], []).append(position)
    twice = dict((client_id, positions) for client_id, positions in seen.items() if len(positions) > 1)
    if twice:
        raise OperationError(
            "invalid",
            "; ".join(
                "client_id %r is declared %d times (applications %s)"
                % (client_id, len(positions), ", ".join(str(position) for position in positions))
                for client_id, positions in sorted(twice.items())
            ),
        )


def _refuse_what_exclusive_cannot_mean(items: list, exclusive_filter: dict) -> None:
    """Exclusive mode deletes what the set does not keep, as far as the filter reaches. A set that keeps
    nothing, or a filter key with nothing in it, is most often a variable that did not load, and would
    delete every eligible application (an empty client_id list once did): refused, naming the way to
    say it on purpose."""
    if not items:
        raise OperationError(
            "invalid",
            "exclusive with an empty applications list would delete every eligible application; declare the "
            "applications to keep, or delete applications by name with state: absent",
        )
    if all(item.get("state") == "absent" for item in items):
        raise OperationError(
            "invalid",
            "exclusive with no item in state present would delete every eligible application; declare the "
            "applications to keep, or leave exclusive out to delete only the absent ones",
        )
    empty = sorted(key for key, value in exclusive_filter.items() if isinstance(value, list) and not value)
    if empty:
        raise OperationError(
            "invalid",
            "; ".join(
                "exclusive_filter.%s is an empty list, most often a variable that did not load; list what exclusive "
                "may delete, or leave the key out for its default" % key
                for key in empty
            ),
        )


def exclusive_candidates(model, manager, declared: list, exclusive_filter: dict) -> list:
    """Stored applications that exclusive mode deletes: not declared, and chosen by the filter.

    By default only applications an operator registered (registration_source manual) are chosen, so a
    client that registered itself (dynamic registration, CIMD) survives unless the filter names its
    source. A DOT without registration_source has no self-registration: every application counts as manual.
    """
    sources = exclusive_filter.get("registration_source")
    rows = manager.exclude(client_id__in=declared).select_related("user").order_by("client_id")
    rows = rows.filter(**registration_source_filter(model, ["manual"] if sources is None else list(sources)))
    patterns = exclusive_filter.get("client_id")
    if patterns is not None:
        return [row for row in rows if any(fnmatch.fnmatchcase(row.client_id, pattern) for pattern in patterns)]
    return list(rows)


def run_applications(params: dict, context) -> dict:
    """Converge a whole set of applications in one transaction: every change applies, or none does."""
    from django.db import DatabaseError, transaction
    from oauth2_provider.models import get_application_model

    model = get_application_model()
    prepare_database(context, [model])
    items = params.get("applications") or []
    threads = thread_count(params.get("hash_threads"))
    if params.get("exclusive"):
        _refuse_what_exclusive_cannot_mean(items, params.get("exclusive_filter") or {})
    _refuse_duplicates(items)
    declared = [item["client_id"] for item in items]
    with transaction.atomic(using=context.database):
        manager = model._default_manager.db_manager(context.database)
        rows = manager.filter(client_id__in=declared)
        if not context.check_mode:
            rows = rows.select_for_update()
        stored = dict((row.client_id, row) for row in rows)
        verdicts = _verify_declared_secrets(items, stored, threads)
        plans, failures = [], []
        for position, item in enumerate(items):
            try:
                plans.append(
                    converge_plan(model, item, stored.get(item["client_id"]), context.database, verdicts.get(position))
                )
            except OperationError as exc:
                failures.append((position, item["client_id"], exc))
        if failures:
            raise _item_failures(failures, len(items))
        refuse_to_return_secrets_in_sight(plans, context)
        removals = []
        if params.get("exclusive"):
            removals = [
                Plan("deleted", row, describe(row), [])
                for row in exclusive_candidates(model, manager, declared, params.get("exclusive_filter") or {})
            ]
        refuse_writes_that_cannot_roll_back(removals + plans, context, "set")
        if not context.check_mode:
            prepare_secrets(plans, threads)
            for position, plan in [(None, plan) for plan in removals] + list(enumerate(plans)):
                try:
                    apply_plan(plan, context.database)
                except DatabaseError as exc:
                    where = "exclusive deletion of %r" % plan.instance.client_id if position is None else _item_name(
                        position, items[position]["client_id"]
                    )
                    raise OperationError("database", "%s: %s; nothing changed" % (where, database_error_message(exc)))
        for plan, item in zip(plans, items):
            revoke_on_secret_change(plan, item, context)
    for plan in plans:
        warn_hashed_against_wish(plan, context)
    return _bulk_result(plans, removals, declared)


def _verify_declared_secrets(items: list, stored: dict, threads: int) -> dict:
    """position -> Verdict for every item whose plan verifies its declared secret against the stored hash,
    all verified before planning, `threads` at once; every item is verified, even one that repeats
    another's secret and hash."""
    pairs = {}
    for position, item in enumerate(items):
        pair = secret_to_verify(item, stored.get(item["client_id"]))
        if pair is not None:
            pairs[position] = pair
    return dict(zip(pairs, verify_all(list(pairs.values()), threads)))


def _item_failures(failures: list, total: int) -> OperationError:
    """One error for every invalid item, each named by position and client_id, with its fields."""
    shown = "; ".join("%s: %s" % (_item_name(position, client_id), exc.message) for position, client_id, exc in failures)
    fields = dict(
        (client_id, exc.fields or {"__all__": [exc.message]}) for _position, client_id, exc in failures
    )
    kinds = set(exc.kind for _position, _client_id, exc in failures)
    return OperationError(
        kinds.pop() if len(kinds) == 1 else "invalid",
        "%d of %d applications failed, nothing changed: %s" % (len(failures), total, shown),
        fields,
    )


def _bulk_result(plans: list, removals: list, declared: list) -> dict:
    """Per-item results (declared items in their order, then exclusive deletions), counts and a diff per
    changed application, the deletions first."""
    counts = dict((action, 0) for action in ACTIONS)
    entries = []
    for plan, client_id, was_declared in [(plan, plan.instance.client_id, False) for plan in removals] + [
        (plan, client_id, True) for plan, client_id in zip(plans, declared)
    ]:
        single = plan_result(plan)
        counts[plan.action] += 1
        entry = {
            "client_id": client_id,
            "changed": single["changed"],
            "action": plan.action,
            "declared": was_declared,
            "application": single["application"],
        }
        if "client_secret" in single:
            entry["client_secret"] = single["client_secret"]
        if "revoked" in single:
            entry["revoked"] = single["revoked"]
        diff = dict(single["diff"], before_header=client_id, after_header=client_id) if single["changed"] else None
        entries.append((entry, diff))
    results = [entry for entry, _diff in entries[len(removals):] + entries[: len(removals)]]
    return {
        "changed": any(entry["changed"] for entry in results),
        "results": results,
        "counts": counts,
        "diff": [diff for _entry, diff in entries if diff is not None],
    }
