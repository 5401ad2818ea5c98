# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which database an operation works on: the alias the module was given, else the one the project's
DATABASE_ROUTERS choose for the models the operation touches, which is where DOT's own code goes
(its managers ask the routers; so does its cleartokens). A project without routers gets 'default'.
Also the user a task names (an application's owner, the user whose tokens go), looked up where the routers
send that user.

Django is imported inside functions: Ansible imports this file (to ship it) on hosts without Django.
"""

from __future__ import annotations

import os

from ._django_core import OperationError
from ._django_migrations import migrate_option, require_migrated


def _routed(models: list, purpose: str) -> list:
    """[(model, alias)] as the routers answer for reading or writing each model (no hints: the
    managers' own question when DOT queries a table)."""
    from django.db import router

    ask = router.db_for_write if purpose == "write" else router.db_for_read
    return [(model, ask(model)) for model in models]


def _where(routed: list) -> str:
    """'oauth2_provider.AccessToken and oauth2_provider.Grant to 'oauth', ...' of (model, alias) pairs."""
    by_alias = {}
    for model, alias in routed:
        by_alias.setdefault(alias, []).append(model._meta.label)
    return ", ".join("%s to '%s'" % (" and ".join(labels), alias) for alias, labels in sorted(by_alias.items()))


def require_alias(database: str) -> None:
    """The alias is one of DATABASES, and a SQLite file it names exists."""
    from django.conf import settings

    if database not in settings.DATABASES:
        raise OperationError(
            "database",
            "database alias '%s' is not in DATABASES (known: %s)" % (database, ", ".join(sorted(settings.DATABASES))),
        )
    require_sqlite_file(database)


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
            "migrate%s to create it)" % (name, database, migrate_option(database)),
        )


def choose_database(context, models: list, purpose: str = "write") -> str:
    """Set and return context.database for an operation on `models`: the alias the task gave (with a
    warning when the routers send those models elsewhere), else the routers' one alias for them all.

    `purpose` is "write" for an operation that writes (or would, in check mode: it reads where it
    would write, in one transaction) and "read" for one that only reads. Models that the routers
    spread over several databases are refused: no one transaction or lock spans them.
    """
    from django.db import router

    routed = _routed(models, purpose)
    aliases = sorted({alias for _model, alias in routed})
    if context.requested:
        database = context.requested
        # Without routers every model "routes" to 'default': a project that names another alias contradicts nobody.
        if router.routers and aliases != [database]:
            context.warn(
                "database '%s' was given, but the project's DATABASE_ROUTERS send %s (for %s); working on '%s' as "
                "told: leave database unset to follow the routers" % (database, _where(routed), purpose + "s", database)
            )
    elif len(aliases) > 1:
        raise OperationError(
            "database",
            "the project's DATABASE_ROUTERS send %s (for %ss): this operation works on one database, in one "
            "transaction; set database to the alias that holds them all" % (_where(routed), purpose),
        )
    else:
        database = aliases[0]
    require_alias(database)
    context.database = database
    return database


def prepare_database(context, models: list, purpose: str = "write") -> str:
    """The alias of choose_database(), once the pre-flight check found `models` migrated there."""
    database = choose_database(context, models, purpose)
    require_migrated(database, models)
    return database


def owner_database(application) -> str:
    """Where the owner of `application` (a saved or unsaved instance with _state.db set) is looked up:
    what the routers answer for reading the user model with the application as hint, which is the
    question Django asks when DOT reads application.user."""
    from django.contrib.auth import get_user_model
    from django.db import router

    return router.db_for_read(get_user_model(), instance=application)


def _named(user) -> str:
    return "%r (pk %s)" % (user.get_username(), user.pk)


def resolve_user(value, lookup: str, instance):
    """The user that `value` names, by USERNAME_FIELD, by primary key or (auto) by either, on the database
    the routers choose for the user of `instance` (see owner_database): an application's owner, a token's user.
    None for "": no user.

    In auto, a value that is the USERNAME_FIELD of one user and the primary key of another is
    refused: taking either would act on one user without a word about the other.
    """
    from django.contrib.auth import get_user_model
    from django.core.exceptions import ValidationError

    value = str(value)
    if value == "":
        return None
    user_model = get_user_model()
    field = user_model.USERNAME_FIELD
    database = owner_database(instance)
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
        raise OperationError(
            "not_found", "user %r does not exist in database '%s' (looked up by %s)" % (value, database, looked_up)
        )
    return user
