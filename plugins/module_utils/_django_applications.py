# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Django side of oauth_application and oauth_application_info.

`plan_application()` is the whole reconcile rule (declared options + the stored
row -> planned change); `converge_plan()` adds DOT's validation, and `apply_plan()`
writes. oauth_application runs them for one application, oauth_applications
(`_django_application_set`) for a whole set. Django is imported inside functions because Ansible imports
this file (to ship it) on hosts without Django.
"""

from __future__ import annotations

import datetime
import decimal
import inspect
import uuid

from ._django_cleanup_rules import installed_dot_version
from ._django_core import OperationError
from ._django_migrations import require_migrated

LIST_FIELDS = ("redirect_uris", "post_logout_redirect_uris", "allowed_origins")
SCALAR_FIELDS = ("name", "client_type", "authorization_grant_type", "skip_authorization", "algorithm")
DESCRIBED_FIELDS = ("client_id", "name", "client_type", "authorization_grant_type") + LIST_FIELDS + (
    "user",
    "skip_authorization",
    "algorithm",
    "hash_client_secret",
)
SECRET_PLACEHOLDER = "<hidden>"
# Fields that a named option manages (or that are the identity or the secret): extra_fields refuses them.
NAMED_OPTION_FIELDS = dict(
    [(name, name) for name in SCALAR_FIELDS + LIST_FIELDS + ("client_id", "hash_client_secret", "user")],
    client_secret="client_secret or regenerate_secret",
)


class Plan:
    """What converging one application would do; `instance` already carries the change."""

    def __init__(self, action, instance, before, changed_fields, generated_secret=None):
        self.action = action  # "create", "update", "delete" or None
        self.instance = instance
        self.before = before
        self.changed_fields = changed_fields
        self.generated_secret = generated_secret


def _field_names(model) -> set:
    return {field.name for field in model._meta.get_fields()}


def _settable_by_extra_fields(field) -> bool:
    """A concrete, editable, non-relation field that Django does not set itself and no option manages."""
    return (
        field.concrete
        and field.editable
        and not field.primary_key
        and not field.is_relation
        and not getattr(field, "auto_now", False)
        and not getattr(field, "auto_now_add", False)
        and field.name not in NAMED_OPTION_FIELDS
    )


def extra_field_names(model) -> list:
    """The fields extra_fields can set on `model`: those of a swapped model, and those DOT adds."""
    return [field.name for field in model._meta.concrete_fields if _settable_by_extra_fields(field)]


def _extra_field(model, name: str):
    """The model field that extra_fields names, or the reason it may not."""
    from django.core.exceptions import FieldDoesNotExist

    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        known = ", ".join(extra_field_names(model)) or "none"
        return None, "is not a field of %s (extra_fields can set: %s)" % (model._meta.label, known)
    if name in NAMED_OPTION_FIELDS:
        return None, "is managed by the %s option" % NAMED_OPTION_FIELDS[name]
    if field.is_relation:
        return None, "is a relation, which extra_fields does not set"
    if not _settable_by_extra_fields(field):
        return None, "is set by Django itself"
    return field, None


def _extra_value(field, value):
    """`value` as the field stores it, so that a declared "3" matches a stored 3 and a string a datetime."""
    from django.conf import settings
    from django.db import models
    from django.utils import timezone

    value = field.to_python(value)
    if isinstance(field, models.DateTimeField) and value is not None and settings.USE_TZ and timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return value


def _plain(value):
    """A field value as JSON carries it."""
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    return value


def _assign_extra_fields(model, instance, declared: dict, creating: bool, changed: list) -> None:
    """Set the declared extra fields; refuse every bad one at once, naming each."""
    from django.core.exceptions import ValidationError

    problems = {}
    for name, value in sorted(declared.items()):
        field, reason = _extra_field(model, str(name))
        if field is not None:
            try:
                value = _extra_value(field, value)
            except ValidationError as exc:
                reason = " ".join(exc.messages)
        if reason:
            problems["extra_fields.%s" % name] = [reason]
            continue
        if creating or field.value_from_object(instance) != value:
            setattr(instance, field.attname, value)
            changed.append(name)
    if problems:
        message = "; ".join("%s: %s" % (key, " ".join(found)) for key, found in sorted(problems.items()))
        raise OperationError("invalid", message, problems)


def _is_hashed(value: str) -> bool:
    from django.contrib.auth.hashers import identify_hasher

    try:
        identify_hasher(value)
    except ValueError:
        return False
    return True


def _stores_hashed(instance) -> bool:
    """Whether DOT hashes this application's secret on save. A model without the hash_client_secret
    field hashes every secret: DOT before 2.4 has no such field, and its ClientSecretField since reads a
    missing one as true."""
    return getattr(instance, "hash_client_secret", True)


def _secret_matches(declared: str, stored: str) -> bool:
    """Stored hashes are salted, so compare by verifying, never hash to hash."""
    from django.contrib.auth.hashers import check_password
    from django.utils.crypto import constant_time_compare

    if _is_hashed(stored) and not _is_hashed(declared):
        return check_password(declared, stored)
    return constant_time_compare(declared, stored)


def _named(user) -> str:
    return "%r (pk %s)" % (user.get_username(), user.pk)


def _resolve_user(value, lookup: str, database: str):
    """The owner that `value` names, by USERNAME_FIELD, by primary key or (auto) by either.

    In auto, a value that is the USERNAME_FIELD of one user and the primary key of another is
    refused: taking either would attach the application to a user without a word about the other.
    """
    from django.contrib.auth import get_user_model
    from django.core.exceptions import ValidationError

    value = str(value)
    if value == "":
        return None
    user_model = get_user_model()
    field = user_model.USERNAME_FIELD
    users = user_model._default_manager.db_manager(database)
    by_name = users.filter(**{field: value}).first() if lookup != "pk" else None
    by_pk = None
    if lookup != "username":
        try:
            by_pk = users.filter(pk=value).first()
        except (ValueError, TypeError, ValidationError):
            by_pk = None
    if by_name is not None and by_pk is not None and by_name.pk != by_pk.pk:
        raise OperationError(
            "ambiguous",
            "user %r is ambiguous: the %s of user %s and the primary key of user %s; "
            "set user_lookup to username or pk to choose" % (value, field, _named(by_name), _named(by_pk)),
        )
    user = by_name or by_pk
    if user is None:
        looked_up = {"auto": "%s and by primary key" % field, "username": field, "pk": "primary key"}[lookup]
        raise OperationError("not_found", "user %r does not exist (looked up by %s)" % (value, looked_up))
    return user


def _refuse_unsafe_input(spec: dict) -> None:
    """Refuse values that DOT would store as something weaker than the task says.

    An empty or blank secret usually comes from a lookup that found nothing (a folded `>` block
    around one gives "\n"), and DOT accepts it and issues tokens for it. Whitespace around a secret
    is almost always a templating slip too: a client would have to send it to authenticate. The
    messages never quote the secret. List items are stored space-separated, so one item holding
    whitespace would allow every part of it.
    """
    problems = {}
    secret = spec.get("client_secret")
    if secret is not None and not secret.strip():
        problems["client_secret"] = [
            "must not be empty or only whitespace (often a lookup that found nothing); leave it out to keep the "
            "stored secret (a new application gets one from DOT), or set regenerate_secret to have DOT generate a "
            "new one"
        ]
    elif secret is not None and secret != secret.strip():
        problems["client_secret"] = [
            "has leading or trailing whitespace, which every client would have to send too (often a templating "
            "slip, such as the line break a `>` block adds); remove it, for example with `| trim`"
        ]
    for name in LIST_FIELDS:
        for position, item in enumerate(spec.get(name) or [], 1):
            item = str(item)
            if item == "":
                problems.setdefault(name, []).append("item %d is empty." % position)
            elif any(character.isspace() for character in item):
                problems.setdefault(name, []).append(
                    "item %d %r contains whitespace: DOT stores the list space-separated, "
                    "so give each URI as its own item." % (position, item)
                )
    if problems:
        message = "; ".join("%s: %s" % (name, " ".join(found)) for name, found in sorted(problems.items()))
        raise OperationError("invalid", message, problems)


def describe(instance) -> dict:
    """Every managed field in the module's vocabulary, and every field extra_fields can set; never the secret."""
    model = type(instance)
    names = _field_names(model)
    described = {}
    for name in DESCRIBED_FIELDS:
        if name == "hash_client_secret":
            value = _stores_hashed(instance)
        elif name not in names:
            continue
        elif name == "user":
            user = instance.user if instance.user_id is not None else None
            value = user.get_username() if user is not None else None
        else:
            value = getattr(instance, name)
            if name in LIST_FIELDS:
                value = value.split()
            elif name == "algorithm":
                value = value or "none"
        described[name] = value
    described["extra_fields"] = dict(
        (name, _plain(model._meta.get_field(name).value_from_object(instance))) for name in extra_field_names(model)
    )
    return described


def _identity(instance) -> dict:
    """Fields that only a saved row has."""
    return {
        "id": instance.pk,
        "created": instance.created.isoformat() if instance.created else None,
        "updated": instance.updated.isoformat() if instance.updated else None,
    }


def _diff_side(instance, secret_note: str | None) -> dict:
    side = describe(instance)
    if secret_note:
        side["client_secret"] = secret_note
    return side


def plan_application(model, spec: dict, existing, database: str) -> Plan:
    """Compare the declared options (None = not managed) with the stored row."""
    _refuse_unsafe_input(spec)
    if spec.get("state", "present") == "absent":
        if existing is None:
            return Plan(None, None, {}, [])
        return Plan("delete", existing, describe(existing), [])

    names = _field_names(model)
    hashing = spec.get("hash_client_secret")
    if hashing is not None and "hash_client_secret" not in names:
        if not hashing:
            problem = (
                "false needs django-oauth-toolkit 2.4 or later; the installed %s stores every client secret hashed"
                % installed_dot_version()
            )
            raise OperationError("unsupported", "hash_client_secret: " + problem, {"hash_client_secret": [problem]})
        hashing = None  # true is what this DOT always does: nothing to manage
    declared = [name for name in SCALAR_FIELDS + LIST_FIELDS + ("client_secret",) if spec.get(name) is not None]
    unsupported = [name for name in declared if name not in names]
    if unsupported:
        raise OperationError(
            "unsupported",
            "%s not supported by the installed application model %s"
            % (", ".join(unsupported), model._meta.label),
        )

    creating = existing is None
    instance = model(client_id=spec["client_id"]) if creating else existing
    before = {} if creating else describe(existing)
    changed = []

    def assign(name, value):
        if creating or getattr(instance, name) != value:
            setattr(instance, name, value)
            changed.append(name)

    for name in SCALAR_FIELDS:
        if spec.get(name) is not None:
            value = spec[name]
            assign(name, "" if name == "algorithm" and value == "none" else value)
    for name in LIST_FIELDS:
        if spec.get(name) is not None:
            assign(name, " ".join(str(item) for item in spec[name]))
    if spec.get("user") is not None:
        user = _resolve_user(spec["user"], spec.get("user_lookup", "auto"), database)
        if creating or instance.user_id != (user.pk if user else None):
            instance.user = user
            changed.append("user")
    if hashing is not None:
        assign("hash_client_secret", hashing)
    if spec.get("extra_fields"):
        _assign_extra_fields(model, instance, spec["extra_fields"], creating, changed)

    generated = None
    declared_secret = spec.get("client_secret")
    hash_wanted = _stores_hashed(instance)
    if creating or spec.get("regenerate_secret"):
        if declared_secret is None:
            from oauth2_provider.generators import generate_client_secret

            declared_secret = generated = generate_client_secret()
        instance.client_secret = declared_secret
        changed.append("client_secret")
    elif declared_secret is not None and spec.get("update_secret", "always") == "always":
        stored = instance.client_secret
        stored_as_wanted = _is_hashed(stored) == bool(hash_wanted) or _is_hashed(declared_secret)
        if not _secret_matches(declared_secret, stored) or not stored_as_wanted:
            instance.client_secret = declared_secret
            changed.append("client_secret")
    elif not hash_wanted and _is_hashed(instance.client_secret) and "hash_client_secret" in changed:
        problem = (
            "the stored client secret is hashed and cannot be turned back into plain text; "
            "declare client_secret (with update_secret: always) or set regenerate_secret to store one unhashed"
        )
        raise OperationError("invalid", "hash_client_secret: " + problem, {"hash_client_secret": [problem]})

    if not changed:
        return Plan(None, instance, before, [])
    return Plan("create" if creating else "update", instance, before, changed, generated)


def validate(plan: Plan, database: str) -> None:
    """DOT's own rules, exactly as the admin applies them."""
    from django.core.exceptions import ValidationError
    from django.db import DEFAULT_DB_ALIAS

    # Django's unique and constraint checks query the default database; on another alias the
    # client_id lookup done by the caller and the database's own constraints stand in.
    on_default = database == DEFAULT_DB_ALIAS
    checks = {"validate_unique": on_default}
    # Django 4.1 added Meta.constraints checks to full_clean() and this keyword with them; older
    # releases (3.2 and 4.0, which DOT 2.x supports) check no constraints and refuse the keyword.
    if "validate_constraints" in inspect.signature(plan.instance.full_clean).parameters:
        checks["validate_constraints"] = on_default
    try:
        plan.instance.full_clean(**checks)
    except ValidationError as exc:
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
        message = "; ".join(
            "%s: %s" % (field, " ".join(messages)) if field != "__all__" else " ".join(messages)
            for field, messages in sorted(fields.items())
        )
        raise OperationError("invalid", message, fields)


def _own_tables(model) -> list:
    """The tables a row of `model` lives in: its concrete model's and its multi-table parents'."""
    concrete = model._meta.concrete_model
    return [each._meta.db_table for each in [concrete] + concrete._meta.get_parent_list()]


def tables_a_delete_writes(model) -> list:
    """Every table that deleting rows of `model` can write, from the model metadata: its own, then,
    through each relation whose on_delete cascades, sets a value or has the database do either, the
    referencing model's, recursively (DOT's tokens and grants, and any project model pointing at them).
    PROTECT and RESTRICT only read; DO_NOTHING writes nothing.

    The cleanup engine's delete_plan() walks the same relations, but stops at the first one that SQL
    cannot repeat (a signal receiver, a generic relation) and leaves out those the database handles:
    what a write can touch needs every table."""
    from django.db.models import deletion

    cascades = (deletion.CASCADE, getattr(deletion, "DB_CASCADE", deletion.CASCADE))
    writes_nothing = (deletion.DO_NOTHING, deletion.PROTECT, deletion.RESTRICT)
    tables, seen, pending = set(), set(), [model]
    while pending:
        current = pending.pop()._meta.concrete_model
        if current in seen:
            continue
        seen.add(current)
        tables.update(_own_tables(current))
        for related in deletion.get_candidate_relations_to_delete(current._meta):
            on_delete = related.field.remote_field.on_delete
            if on_delete in cascades:
                pending.append(related.related_model)
            elif on_delete not in writes_nothing:
                tables.add(related.related_model._meta.db_table)
        # Generic relations: Django's collector deletes the related objects too.
        pending += [field.remote_field.model for field in current._meta.private_fields
                    if hasattr(field, "bulk_related_objects")]
    return sorted(tables)


def _tables_that_cannot_roll_back(plans: list, database: str) -> list:
    """(table, engine) for each table the planned writes can touch whose storage engine has no transactions,
    by the server's own word (information_schema.ENGINES: MyISAM, Aria, MEMORY ... say NO). Only MySQL and
    MariaDB have such tables; other backends are not asked."""
    from django.db import connections

    connection = connections[database]
    if connection.vendor != "mysql":
        return []
    tables = set()
    for plan in plans:
        if plan.action == "delete":
            tables.update(tables_a_delete_writes(type(plan.instance)))
        elif plan.action is not None:
            tables.update(_own_tables(type(plan.instance)))
    if not tables:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.TABLE_NAME, t.ENGINE FROM information_schema.TABLES t"
            " LEFT JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE"
            " WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE' AND t.TABLE_NAME IN (%s)"
            " AND COALESCE(e.TRANSACTIONS, 'NO') <> 'YES'" % ", ".join(["%s"] * len(tables)),
            sorted(tables),
        )
        return sorted((str(name), str(engine)) for name, engine in cursor.fetchall())


def refuse_writes_that_cannot_roll_back(plans: list, context, what: str) -> None:
    """Refuse the planned writes before the first one when a table they can touch cannot roll back: a
    failure midway would leave part of them done while the task says nothing changed. Check mode writes
    nothing, so it is not refused: it predicts as usual and warns that the real run would be."""
    found = _tables_that_cannot_roll_back(plans, context.database)
    if not found:
        return
    if len(found) == 1:
        table, engine = found[0]
        reason = "table %s uses %s, which cannot roll back a failed %s; convert it (ALTER TABLE %s ENGINE=InnoDB)" % (
            table, engine, what, table,
        )
    else:
        reason = "tables %s cannot roll back a failed %s; convert them (ALTER TABLE <table> ENGINE=InnoDB)" % (
            ", ".join("%s (%s)" % pair for pair in found), what,
        )
    if context.check_mode:
        context.warn("check mode: a real run would refuse to write: " + reason)
    else:
        raise OperationError("unsupported", "refusing to write: " + reason)


def apply_plan(plan: Plan, database: str) -> None:
    if plan.action == "delete":
        plan.instance.delete(using=database)
    elif plan.action in ("create", "update"):
        plan.instance.save(using=database, force_insert=plan.action == "create")


def plan_result(plan: Plan, check_mode: bool) -> dict:
    secret_changed = "client_secret" in plan.changed_fields
    before_note = SECRET_PLACEHOLDER if plan.before else None
    after_note = "<hidden, changed>" if secret_changed else before_note
    after = {} if plan.action == "delete" or plan.instance is None else _diff_side(plan.instance, after_note)
    result = {
        "changed": plan.action is not None,
        "action": plan.action or "none",
        "application": None if plan.action == "delete" or plan.instance is None else describe(plan.instance),
        "diff": {"before": dict(plan.before, **({"client_secret": before_note} if before_note else {})), "after": after},
    }
    if result["application"] is not None and plan.instance.pk is not None:
        result["application"].update(_identity(plan.instance))
    if plan.generated_secret and not check_mode:
        result["client_secret"] = plan.generated_secret
    return result


def converge_plan(model, spec: dict, existing, database: str) -> Plan:
    """The reconcile rule and DOT's validation, for one application: what both modules apply."""
    plan = plan_application(model, spec, existing, database)
    if plan.action in ("create", "update"):
        validate(plan, database)
    return plan


def warn_hashed_against_wish(plan: Plan, context) -> None:
    instance = plan.instance
    if (
        plan.action != "delete"
        and instance is not None
        and not _stores_hashed(instance)
        and _is_hashed(instance.client_secret)
    ):
        context.warn("client_secret of %s is stored hashed although hash_client_secret is false" % instance.client_id)


def run_application(params: dict, context) -> dict:
    from django.db import transaction
    from oauth2_provider.models import get_application_model

    model = get_application_model()
    require_migrated(context.database, [model])
    with transaction.atomic(using=context.database):
        rows = model._default_manager.db_manager(context.database).filter(client_id=params["client_id"])
        if not context.check_mode:
            rows = rows.select_for_update()
        plan = converge_plan(model, params, rows.first(), context.database)
        refuse_writes_that_cannot_roll_back([plan], context, "write")
        if not context.check_mode:
            apply_plan(plan, context.database)
    warn_hashed_against_wish(plan, context)
    return plan_result(plan, context.check_mode)


def _owner_filter(value, lookup: str, database: str) -> dict:
    """The queryset filter for applications owned by `value`: "" means no owner.

    A user that does not exist owns nothing, so the answer is an empty list rather than an error;
    an ambiguous value (auto lookup) is refused exactly as oauth_application refuses it.
    """
    try:
        user = _resolve_user(value, lookup, database)
    except OperationError as exc:
        if exc.kind != "not_found":
            raise
        return {"pk__in": []}
    return {"user__isnull": True} if user is None else {"user": user}


def registration_source_filter(model, sources: list) -> dict:
    """The query filter for applications registered one of these ways. Before DOT 3.4.0 recorded it,
    every application was registered by an operator: all count as manual."""
    if "registration_source" in _field_names(model):
        return {"registration_source__in": sources}
    return {} if "manual" in sources else {"pk__in": []}


def run_application_info(params: dict, context) -> dict:
    """The applications that every given filter matches (AND), filtered by the database."""
    from oauth2_provider.models import get_application_model

    model = get_application_model()
    require_migrated(context.database, [model])
    conditions = {}
    for option, lookup in (
        ("client_id", "client_id__in"),
        ("authorization_grant_type", "authorization_grant_type__in"),
        ("client_type", "client_type__in"),
    ):
        if params.get(option):
            conditions[lookup] = params[option]
    if params.get("name") is not None:
        conditions["name"] = params["name"]
    if params.get("registration_source"):
        conditions.update(registration_source_filter(model, params["registration_source"]))
    if params.get("user") is not None:
        conditions.update(_owner_filter(params["user"], params.get("user_lookup") or "auto", context.database))
    rows = model._default_manager.db_manager(context.database).select_related("user").filter(**conditions)
    applications = [dict(describe(row), **_identity(row)) for row in rows.order_by("client_id")]
    return {"changed": False, "applications": applications}
