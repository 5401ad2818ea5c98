"""Token graphs for the cleanup tests, and exact snapshots of the database to compare end states.

A graph is every kind of row clear_expired() looks at, in every relation it cares about:
access tokens with and without refresh and ID tokens, refresh tokens revoked, orphaned,
bound to expired access tokens, access tokens minted from a refresh token, lone ID tokens,
grants, and the test project's TokenAudit (CASCADE) and TokenSession (SET_NULL) rows.
Timestamps are drawn from the moments where the rules flip (each cut-off, a microsecond
either side) and from far away on both sides.

Graphs live on the database the project's routers send DOT's token models to (the 'oauth' alias
of the routed variant, else 'default'), with their owner; a snapshot holds every database's tables,
so that a run that touches any other database differs.
"""

import itertools
from datetime import timedelta

from django.db import connections, transaction

MICROSECOND = timedelta(microseconds=1)
FAR = timedelta(days=30)


class Exercised:
    """What the differential cases of a session made clear_expired() delete: the categories with
    rows deleted in some case, per rule set. tests/unit/conftest.py fails a whole-file run in
    which a category of the installed rule set never deleted anything."""

    def __init__(self):
        self.cases = 0
        self.categories = {}  # rule set -> categories that deleted rows in some case

    def record(self, rules, counts):
        self.cases += 1
        hit = self.categories.setdefault(rules, set())
        hit.update(category for category, rows in counts.items() if rows)


exercised = Exercised()


def dot_token_models():
    from oauth2_provider.models import (
        get_access_token_model,
        get_grant_model,
        get_id_token_model,
        get_refresh_token_model,
    )

    return [get_id_token_model(), get_access_token_model(), get_refresh_token_model(), get_grant_model()]


def token_models():
    """Every table a graph writes to, and those DOT's clear_expired() deletes from."""
    from oauth2_provider import models
    from testapp.models import TokenAudit, TokenSession

    extra = []
    if hasattr(models, "get_par_request_model"):
        extra.append(models.get_par_request_model())  # DOT's main branch: pushed authorization requests
    return dot_token_models() + [TokenAudit, TokenSession] + extra


def token_rows(state):
    """How many rows a snapshot holds in DOT's four token tables."""
    return sum(len(state[model._meta.db_table][1]) for model in dot_token_models())


def moments(now, expire_seconds=None, grace_seconds=0):
    """Every instant at which some DOT release's rules flip, a microsecond either side, and far away."""
    anchors = [now]
    for seconds in (expire_seconds, grace_seconds):
        if seconds:
            anchors.append(now - (seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)))
    points = [now - FAR, now + FAR, now - timedelta(minutes=1), now + timedelta(minutes=1)]
    for anchor in anchors:
        points += [anchor - MICROSECOND, anchor, anchor + MICROSECOND]
    return points


def alias():
    """The database graphs live on: where the routers send DOT's token models (all to one, or the engine refuses)."""
    from django.db import router

    return router.db_for_write(dot_token_models()[1])


def wipe():
    """Empty every table a graph writes to (leaves users and applications to the unit conftest)."""
    connection = connections[alias()]
    with connection.constraint_checks_disabled(), transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            for model in token_models():
                cursor.execute("DELETE FROM %s" % connection.ops.quote_name(model._meta.db_table))


def owner(username="token-owner", client_id="token-graphs"):
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import get_application_model

    model = get_application_model()
    user = get_user_model()._default_manager.db_manager(alias()).get_or_create(username=username)[0]
    defaults = dict(
        user=user,
        client_type="confidential",
        authorization_grant_type="authorization-code",
        redirect_uris="https://app.example.com/cb",
        name="graphs",
    )
    if any(field.name == "hash_client_secret" for field in model._meta.get_fields()):
        defaults["hash_client_secret"] = False  # hashing costs a third of a second per graph
    application = model.objects.get_or_create(client_id=client_id, defaults=defaults)[0]
    return user, application


def owners():
    """Two users and two applications, every pairing: for graphs whose tokens a selection splits (revocation)."""
    return [owner(username, client_id) for username in ("token-owner", "token-leaver")
            for client_id in ("token-graphs", "token-graphs-other")]


def generate(rng, now, expire_seconds=None, grace_seconds=0, size=None, points=None, pairs=None):
    """Write one random graph; `rng` is a random.Random, so a seed names the graph.
    Timestamps come from `points`, by default moments(now, expire_seconds, grace_seconds). Each row belongs to
    a (user, application) of `pairs` (owners()) when given, else all to owner()'s."""
    from oauth2_provider.models import (
        get_access_token_model,
        get_grant_model,
        get_id_token_model,
        get_refresh_token_model,
    )
    from testapp.models import TokenAudit, TokenSession

    access_model, refresh_model = get_access_token_model(), get_refresh_token_model()
    id_model, grant_model = get_id_token_model(), get_grant_model()
    user, application = owner()
    points = points or moments(now, expire_seconds, grace_seconds)
    serial = itertools.count(1)

    def common():
        """The owner of a row: drawn from `pairs` when given (which draws from rng), else the one owner."""
        if pairs is None:
            return dict(user=user, application=application)
        return dict(zip(("user", "application"), rng.choice(pairs)))

    def token():
        return "tok-%d-%d" % (rng.randrange(10**9), next(serial))

    def pick():
        return rng.choice(points)

    def id_token():
        return id_model.objects.create(expires=pick(), scope="openid", **common())

    size = rng.randint(0, 24) if size is None else size
    # Like a real table, every graph holds a token that every rule set deletes and one that every
    # rule set keeps, so no case compares two untouched databases (Differential.check asserts it).
    for expires in (min(points), max(points)):
        access_model.objects.create(token=token(), expires=expires, scope="read", **common())
    access_tokens = []
    refresh_tokens = []
    for unused in range(size):
        access = access_model.objects.create(
            token=token(), expires=pick(), scope="read", id_token=id_token() if rng.random() < 0.4 else None, **common()
        )
        access_tokens.append(access)
        if rng.random() < 0.6:
            revoked = None if rng.random() < 0.6 else pick()  # revoked yet still bound happens after crashes
            refresh_tokens.append(
                refresh_model.objects.create(token=token(), access_token=access, revoked=revoked, **common())
            )
        for unused in range(rng.choice((0, 0, 1, 2))):
            TokenAudit.objects.create(access_token=access, note="audit")
        if rng.random() < 0.3:
            TokenSession.objects.create(access_token=access)
    for unused in range(rng.randint(0, 8)):
        # Unbound refresh tokens: revoked ones (what rotation leaves) and orphans (access token deleted).
        revoked = pick() if rng.random() < 0.6 else None
        refresh_tokens.append(refresh_model.objects.create(token=token(), access_token=None, revoked=revoked, **common()))
    # Access tokens minted by a refresh: their source_refresh_token is SET_NULL when it goes.
    sources = rng.sample(refresh_tokens, k=min(len(refresh_tokens), len(access_tokens), rng.randint(0, 6)))
    for access, source in zip(rng.sample(access_tokens, k=len(sources)), sources):
        access_model.objects.filter(pk=access.pk).update(source_refresh_token=source)
    for unused in range(rng.randint(0, 5)):
        id_token()  # ID tokens whose access token is already gone, or never existed
    for unused in range(rng.randint(0, 5)):
        grant_model.objects.create(
            code=token(), expires=pick(), redirect_uri="https://app.example.com/cb", scope="read", **common()
        )
    if rng.random() < 0.3:
        TokenSession.objects.create(access_token=None)


def _tables(connection):
    return sorted(connection.introspection.django_table_names(only_existing=True, include_views=False))


def _key(connection, table):
    """A snapshot's key: the table's name on the graphs' database, ALIAS/TABLE on another."""
    return table if connection.alias == alias() else "%s/%s" % (connection.alias, table)


def snapshot():
    """{table: (columns, sorted rows)} of every table of the project on every database, read with plain SQL."""
    from django.conf import settings

    state = {}
    for name in settings.DATABASES:
        connection = connections[name]
        with connection.cursor() as cursor:
            for table in _tables(connection):
                cursor.execute("SELECT * FROM %s" % connection.ops.quote_name(table))
                columns = tuple(column[0] for column in cursor.description)
                state[_key(connection, table)] = (columns, sorted(cursor.fetchall(), key=repr))
    return state


def restore(state):
    """Put every table of the graphs' database back to `state` (rows, primary keys and timestamps exactly as
    they were); those of another database never change."""
    now = snapshot()
    changed = [table for table in state if state[table] != now.get(table)]
    elsewhere = [table for table in changed if "/" in table]
    assert not elsewhere, "tables of another database than the graphs' changed: %s" % ", ".join(elsewhere)
    connection = connections[alias()]
    quote = connection.ops.quote_name
    with connection.constraint_checks_disabled(), transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            for table in changed:
                cursor.execute("DELETE FROM %s" % quote(table))
            for table in changed:
                columns, rows = state[table]
                if rows:
                    sql = "INSERT INTO %s (%s) VALUES (%s)" % (
                        quote(table),
                        ", ".join(quote(column) for column in columns),
                        ", ".join(["%s"] * len(columns)),
                    )
                    cursor.executemany(sql, rows)
    if connection.vendor == "postgresql":
        _reset_sequences(connection)
    assert snapshot() == state


def _reset_sequences(connection):
    from django.core.management.color import no_style

    models = token_models()
    with connection.cursor() as cursor:
        for sql in connection.ops.sequence_reset_sql(no_style(), models):
            cursor.execute(sql)


def differences(expected, actual, limit=5):
    """A readable account of the rows that differ, table by table."""
    lines = []
    for table in sorted(set(expected) | set(actual)):
        if expected.get(table) == actual.get(table):
            continue
        columns = (expected.get(table) or actual.get(table))[0]
        want = set(expected.get(table, ((), []))[1])
        got = set(actual.get(table, ((), []))[1])
        lines.append("%s %s" % (table, columns))
        lines += ["  only in clear_expired() result: %r" % (row,) for row in sorted(want - got, key=repr)[:limit]]
        lines += ["  only in engine result:          %r" % (row,) for row in sorted(got - want, key=repr)[:limit]]
    return "\n".join(lines)
