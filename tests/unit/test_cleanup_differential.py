"""The cleanup engine leaves exactly what the installed DOT's clear_expired() leaves, and the revocation
engine what DOT's revoke() leaves.

Each differential case writes a token graph (token_graphs.py), takes a snapshot, runs
DOT's clear_expired() and snapshots the result, puts the original rows back, runs the
engine (check mode first, then for real) and compares every row of every table. The
per-category counts must agree three ways: DOT's own log lines, the engine's real run and
its check-mode prediction. Time is frozen (django.utils.timezone.now, which DOT and the
engine both call) so that tokens sitting exactly on a cut-off stay there.

Every case must be worth something: it deletes some rows and keeps some, and a run of the
whole file must see each category that the installed rule set has delete rows somewhere
(token_graphs.exercised, checked at the end of the session by tests/unit/conftest.py).

The revocation engine (oauth_token_revoke, revoke_tokens) is proven here too, on the same graphs: it must
leave what DOT's own revoke() of every selected row leaves (dot_revoke), with the same counts.

Runs on the session's backend (--backend) and against whatever DOT is installed: tests/tools/suite
runs it on every backend, for every DOT release in PROVEN_IMPLEMENTATIONS, on a project with
swapped token models (--models swapped-tokens), and (its core cases) on one whose router keeps DOT on
a second database (--models routed, SQLite and PostgreSQL). --random-graphs N sets how many random graphs to try
(default 120).
"""

import contextlib
import json
import logging
import os
import random
import select
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import pytest
import token_graphs as graphs

from provisioning import DJANGO_PROJECT

# Also on swapped access and refresh token models with non-integer keys (--models swapped-tokens).
pytestmark = pytest.mark.models("stock", "swapped-tokens")

NOW = datetime(2031, 5, 17, 12, 0, 0, 500000, tzinfo=dt_timezone.utc)
BATCH_SIZES = (1, 2, 3, 7, 10000)
DOT_LOG_LINES = {
    "Revoked refresh tokens deleted": "revoked_refresh_tokens",
    "Orphaned refresh tokens deleted": "orphaned_refresh_tokens",
    "Expired refresh tokens deleted": "expired_refresh_tokens",
    "Expired access tokens deleted": "access_tokens",
    "Expired ID tokens deleted": "id_tokens",
    "Expired grant tokens deleted": "grants",
}
EXPIRE_CHOICES = (None, 3600, timedelta(minutes=90))
GRACE_CHOICES = (0, 120)
REUSE_CHOICES = (False, True)
SETTINGS_COMBINATIONS = [
    (expire, grace, reuse) for expire in EXPIRE_CHOICES for grace in GRACE_CHOICES for reuse in REUSE_CHOICES
]


def engine_modules():
    from oauthops_django_side import _django_cleanup, _django_cleanup_rules, _django_core

    return _django_core, _django_cleanup, _django_cleanup_rules


def engine(check_mode=False, **params):
    core, cleanup = engine_modules()[:2]
    context = core.Context(None, check_mode)  # no database given: the routers choose, as for cleartokens
    result = cleanup.run_token_cleanup(params, context)
    result["warnings"] = context.warnings
    return result


@pytest.fixture(autouse=True)
def clean_tables():
    graphs.wipe()
    yield
    graphs.wipe()


@pytest.fixture
def frozen(monkeypatch):
    from django.utils import timezone

    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return NOW


@pytest.fixture
def dot_settings(monkeypatch):
    """Override OAUTH2_PROVIDER settings for one test, as DOT's own tests do (attributes of oauth2_settings)."""
    from oauth2_provider.settings import oauth2_settings

    def apply(**values):
        for name, value in values.items():
            monkeypatch.setattr(oauth2_settings, name, value, raising=False)

    return apply


class Differential:
    """Runs one graph through clear_expired() and the engine and compares the outcomes."""

    def __init__(self, caplog, dot_settings):
        self.caplog = caplog
        self.dot_settings = dot_settings

    def dot_clear_expired(self, batch_size):
        from oauth2_provider.models import clear_expired

        self.dot_settings(CLEAR_EXPIRED_TOKENS_BATCH_SIZE=batch_size, CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL=0)
        self.caplog.clear()
        with self.caplog.at_level(logging.INFO, logger="oauth2_provider"):
            clear_expired()
        counts = dict.fromkeys(DOT_LOG_LINES.values(), 0)
        for record in self.caplog.records:
            category = DOT_LOG_LINES.get(record.msg[3:]) if record.msg.startswith("%s ") else None
            if record.name == "oauth2_provider.models" and category:
                counts[category] = record.args[0]
        return counts

    def expected(self, batch_size=10000):
        """(snapshot after clear_expired(), its counts); the database is back to the original after."""
        original = graphs.snapshot()
        counts = self.dot_clear_expired(batch_size)
        after = graphs.snapshot()
        graphs.restore(original)
        return after, counts

    def check(self, batch_size):
        original = graphs.snapshot()
        predicted = engine(check_mode=True, batch_size=batch_size)
        assert graphs.snapshot() == original, "check mode changed the database"
        expected, dot_counts = self.expected(batch_size)
        kept = graphs.token_rows(expected)
        assert sum(dot_counts.values()) > 0 and kept > 0, "vacuous case: %d rows deleted, %d kept" % (
            sum(dot_counts.values()),
            kept,
        )
        result = engine(batch_size=batch_size)
        actual = graphs.snapshot()
        assert actual == expected, "end states differ:\n" + graphs.differences(expected, actual)
        assert result["deleted"] == dot_counts, "engine counts differ from clear_expired()'s log"
        assert predicted["deleted"] == dot_counts, "check-mode counts differ from clear_expired()'s log"
        assert result["complete"] is True
        assert result["changed"] is predicted["changed"] is (sum(dot_counts.values()) > 0)
        assert result["total"] == predicted["total"] == sum(dot_counts.values())
        rerun = engine(batch_size=batch_size)
        assert (rerun["changed"], rerun["total"]) == (False, 0)
        graphs.exercised.record(result["rules"], dot_counts)
        return result


@pytest.fixture
def differential(caplog, dot_settings, frozen):
    return Differential(caplog, dot_settings)


def _settings(expire, grace, reuse):
    return dict(
        REFRESH_TOKEN_EXPIRE_SECONDS=expire,
        REFRESH_TOKEN_GRACE_PERIOD_SECONDS=grace,
        REFRESH_TOKEN_REUSE_PROTECTION=reuse,
    )


def _combination_id(combination):
    expire, grace, reuse = combination
    expire = "td%ds" % expire.total_seconds() if isinstance(expire, timedelta) else expire
    return "expire=%s-grace=%s-reuse=%s" % (expire, grace, reuse)


# The core cases also on a project whose router keeps DOT on a second database (--models routed).
@pytest.mark.models("stock", "swapped-tokens", "routed")
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("combination", SETTINGS_COMBINATIONS, ids=_combination_id)
def test_differential_settings_combinations(differential, dot_settings, combination, seed):
    expire, grace, reuse = combination
    dot_settings(**_settings(expire, grace, reuse))
    rng = random.Random("%s/%d" % (_combination_id(combination), seed))
    # Seed 0 is a large graph, so every moment meets every kind of row.
    graphs.generate(rng, NOW, expire, grace, size=40 if seed == 0 else None)
    differential.check(batch_size=BATCH_SIZES[seed % len(BATCH_SIZES)])


def pytest_generate_tests(metafunc):
    if metafunc.definition.name == "test_differential_random_graphs":
        metafunc.parametrize("seed", range(metafunc.config.getoption("random_graphs")))


@pytest.mark.models("stock", "swapped-tokens", "routed")
def test_differential_random_graphs(differential, dot_settings, seed):
    rng = random.Random(seed)
    expire = rng.choice(EXPIRE_CHOICES + (0, 1, timedelta(0)))
    grace = rng.choice(GRACE_CHOICES + (1,))
    dot_settings(**_settings(expire, grace, rng.choice(REUSE_CHOICES)))
    graphs.generate(rng, NOW, expire, grace)
    differential.check(batch_size=rng.choice(BATCH_SIZES))


def test_differential_with_delete_receivers_uses_the_collector(differential, dot_settings):
    """A post_delete receiver on a cascaded model must fire exactly as often as under DOT."""
    from django.db.models.signals import post_delete
    from testapp.models import TokenAudit

    calls = []

    def receiver(sender, instance, **kwargs):
        calls.append(instance.pk)

    dot_settings(**_settings(3600, 0, False))
    graphs.generate(random.Random("receivers"), NOW, 3600, size=30)
    post_delete.connect(receiver, sender=TokenAudit)
    try:
        expected, dot_counts = differential.expected(batch_size=3)
        under_dot, calls[:] = sorted(calls), []
        result = engine(batch_size=3)
    finally:
        post_delete.disconnect(receiver, sender=TokenAudit)
    assert graphs.snapshot() == expected
    assert result["deleted"] == dot_counts
    assert sorted(calls) == under_dot and under_dot
    assert result["strategy"]["access_tokens"].startswith("Django collector (delete signal receivers")
    assert result["strategy"]["grants"] == "set-based SQL"


@contextlib.contextmanager
def temporary_models(*models):
    """Tables for project models declared inside a test, gone (with their reverse relations) after it."""
    from django.apps import apps
    from django.db import connection

    with connection.schema_editor() as editor:
        for model in models:
            editor.create_model(model)
    try:
        yield
    finally:
        with connection.schema_editor() as editor:
            for model in reversed(models):
                editor.delete_model(model)
        for model in models:
            del apps.all_models[model._meta.app_label][model._meta.model_name]
        apps.clear_cache()


@pytest.fixture
def token_hold():
    """A project model with a PROTECT foreign key to access tokens."""
    from django.db import models
    from oauth2_provider.models import get_access_token_model

    class TokenHold(models.Model):
        access_token = models.ForeignKey(get_access_token_model(), on_delete=models.PROTECT, related_name="+")

        class Meta:
            app_label = "testapp"

    with temporary_models(TokenHold):
        yield TokenHold
        TokenHold.objects.all().delete()


@pytest.fixture
def more_relations():
    """Relations the test project lacks: a cascade two levels deep, SET_DEFAULT and SET(value)."""
    from django.db import models
    from oauth2_provider.models import get_access_token_model

    access_model = get_access_token_model()

    class TokenNote(models.Model):
        access_token = models.ForeignKey(access_model, on_delete=models.CASCADE, related_name="+")

        class Meta:
            app_label = "testapp"

    class TokenNoteLine(models.Model):
        note = models.ForeignKey(TokenNote, on_delete=models.CASCADE, related_name="+")
        flagged = models.ForeignKey(
            access_model, null=True, default=None, on_delete=models.SET_DEFAULT, related_name="+"
        )
        marked = models.ForeignKey(access_model, null=True, on_delete=models.SET(None), related_name="+")

        class Meta:
            app_label = "testapp"

    with temporary_models(TokenNote, TokenNoteLine):
        yield TokenNote, TokenNoteLine
        TokenNoteLine.objects.all().delete()
        TokenNote.objects.all().delete()


def test_differential_with_nested_cascades_set_default_and_set_value(differential, dot_settings, more_relations):
    from oauth2_provider.models import get_access_token_model

    note_model, line_model = more_relations
    dot_settings(**_settings(3600, 0, False))
    rng = random.Random("more relations")
    graphs.generate(rng, NOW, 3600, size=40)
    tokens = list(get_access_token_model().objects.all())
    for token in rng.sample(tokens, k=len(tokens) // 2):
        note = note_model.objects.create(access_token=token)
        for unused in range(rng.randint(0, 3)):
            line_model.objects.create(note=note, flagged=rng.choice(tokens), marked=rng.choice(tokens))
    result = differential.check(batch_size=3)
    assert result["strategy"]["access_tokens"] == "set-based SQL"
    assert result["cascaded"].get("testapp.TokenNote") and result["cascaded"].get("testapp.TokenNoteLine")


def test_protect_without_protected_rows_stays_set_based(differential, token_hold):
    graphs.generate(random.Random("protect"), NOW, size=30)
    result = differential.check(batch_size=4)
    assert result["strategy"]["access_tokens"] == "set-based SQL"


def test_protect_is_not_bypassed(differential, token_hold):
    from django.db.models import ProtectedError
    from oauth2_provider.models import get_access_token_model

    application = graphs.owner()[1]
    access_model = get_access_token_model()
    for index in range(6):
        access_model.objects.create(token="held-%d" % index, expires=NOW - timedelta(days=1), application=application)
    held = access_model.objects.order_by("pk")[3]
    token_hold.objects.create(access_token=held)
    with pytest.raises(ProtectedError):
        differential.dot_clear_expired(batch_size=2)
    assert access_model.objects.filter(pk=held.pk).exists()

    core = engine_modules()[0]
    with pytest.raises(core.OperationError) as raised:
        engine(batch_size=2)
    assert raised.value.kind == "protected"
    assert raised.value.message == (
        "access_tokens: Cannot delete some instances of model 'AccessToken' because they are referenced "
        "through protected foreign keys: 'TokenHold.access_token'."
    )
    assert access_model.objects.filter(pk=held.pk).exists()


def test_an_unproven_clear_expired_runs_itself(differential, dot_settings, monkeypatch):
    cleanup = engine_modules()[1]
    monkeypatch.setattr(cleanup, "installed_clear_expired_fingerprint", lambda: "0123456789abcdef")
    dot_settings(**_settings(3600, 0, False))
    graphs.generate(random.Random("fallback"), NOW, 3600, size=30)
    expected, dot_counts = differential.expected()

    predicted = engine(check_mode=True)
    assert predicted["total"] is None and predicted["changed"] is False
    assert any("cannot predict" in warning for warning in predicted["warnings"])
    result = engine()
    assert graphs.snapshot() == expected
    assert result["rules"] == "clear_expired" and "fingerprint 0123456789abcdef" in result["warnings"][0]
    refresh = sum(
        dot_counts[name] for name in ("revoked_refresh_tokens", "orphaned_refresh_tokens", "expired_refresh_tokens")
    )
    assert result["deleted"]["refresh_tokens"] == refresh
    assert result["deleted"]["revoked_refresh_tokens"] is None
    assert result["deleted"]["access_tokens"] == dot_counts["access_tokens"]
    assert result["total"] == sum(dot_counts.values())


def pushed_authorization_requests(now):
    """Requests on both sides of `now`, where DOT has them (its main branch): how many have expired."""
    from oauth2_provider import models

    if not hasattr(models, "get_par_request_model"):
        return 0
    moments = [now - graphs.FAR, now - graphs.MICROSECOND, now, now + graphs.FAR]
    for index, expires in enumerate(moments):
        models.get_par_request_model().objects.create(
            request_uri="urn:ietf:params:oauth:request_uri:graph-%d" % index, client_id="token-graphs", expires=expires
        )
    return 2


def test_the_installed_clear_expired_decides_the_rules(differential, dot_settings, monkeypatch, pytestconfig):
    """The engine goes by the installed clear_expired(), not by DOT's version string.

    A DOT release the differential tests run on has the fingerprint recorded for it and gets its
    rule set. test_cleanup_implementations.py runs this test again against DOTs that say 3.4.1 and
    are not (a patched copy, DOT's main branch) with --expect-rules clear_expired: there the
    engine must run that clear_expired() itself, where the rules of 3.4.1 would have gone wrong.
    """
    cleanup, rules = engine_modules()[1:]
    version, fingerprint = rules.installed_dot_version(), rules.installed_clear_expired_fingerprint()
    expected_rules = pytestconfig.getoption("expect_rules")
    if expected_rules is None:
        recorded = {on: proven for proven, unused, on, unused_releases in rules.PROVEN_IMPLEMENTATIONS}
        if version in recorded:
            assert fingerprint == recorded[version], "DOT %s's clear_expired() is not the one recorded" % version
        expected_rules = rules.rule_set_for(fingerprint) or "clear_expired"
    dot_settings(**_settings(3600, 0, False))
    graphs.generate(random.Random("installed"), NOW, 3600, size=40)
    expired_requests = pushed_authorization_requests(NOW)
    original = graphs.snapshot()
    expected, dot_counts = differential.expected()

    result = engine()
    assert (result["rules"], result["dot_version"]) == (expected_rules, version)
    assert result["clear_expired_fingerprint"] == fingerprint
    actual = graphs.snapshot()
    assert actual == expected, graphs.differences(expected, actual)
    if expected_rules != "clear_expired":
        assert result["deleted"] == dot_counts and not result["warnings"]
        return
    assert "installed django-oauth-toolkit %s (fingerprint %s)" % (version, fingerprint) in result["warnings"][0]
    assert result["total"] == sum(dot_counts.values()) + expired_requests
    if expired_requests:
        assert result["deleted"]["oauth2_provider.PushedAuthorizationRequest"] == expired_requests
    # What going by the version string would have done: not what this clear_expired() does.
    graphs.restore(original)
    monkeypatch.setattr(cleanup, "rule_set_for", lambda fingerprint: "3.4.1")
    assert engine()["rules"] == "3.4.1"
    assert graphs.snapshot() != expected


class SleepOnlyClock:
    """The cleanup module's `time` for a test: only its sleeps advance the clock, so max_runtime stops
    a run after a known number of batches however slow the machine is."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_max_runtime_stops_between_batches_and_the_next_run_finishes(differential, dot_settings, monkeypatch):
    dot_settings(**_settings(3600, 0, False))
    graphs.generate(random.Random("max-runtime"), NOW, 3600, size=40)
    expected, dot_counts = differential.expected()
    with monkeypatch.context() as patch:
        patch.setattr(engine_modules()[1], "time", SleepOnlyClock())
        # Batches start at 0, 0.25, ..., 1.25; the next pause would end at 1.5, the deadline.
        first = engine(batch_size=1, batch_interval=0.25, max_runtime=1.5)
    assert sum(dot_counts.values()) > 6
    assert (first["complete"], first["batches"], first["total"]) == (False, 6, 6)
    assert "max_runtime" in first["msg"]
    second = engine(batch_size=1)
    assert second["complete"] is True
    assert first["total"] + second["total"] == sum(dot_counts.values())
    assert graphs.snapshot() == expected


def test_settings_errors_are_one_line(dot_settings):
    from django.core.exceptions import ImproperlyConfigured
    from oauth2_provider.models import clear_expired

    dot_settings(REFRESH_TOKEN_EXPIRE_SECONDS="a while")
    with pytest.raises(ImproperlyConfigured):
        clear_expired()
    core = engine_modules()[0]
    with pytest.raises(core.OperationError) as raised:
        engine()
    assert raised.value.kind == "settings"
    assert (
        raised.value.message
        == "OAUTH2_PROVIDER settings: REFRESH_TOKEN_EXPIRE_SECONDS must be either a timedelta or seconds"
    )


@pytest.mark.parametrize(
    "params, message",
    [
        ({"batch_size": 0}, "batch_size: must be an integer at least 1, got 0"),
        ({"batch_size": 2.5}, "batch_size: must be an integer at least 1, got 2.5"),
        ({"batch_interval": -1}, "batch_interval: must be a finite number at least 0, got -1"),
        ({"batch_interval": float("nan")}, "batch_interval: must be a finite number at least 0, got nan"),
        ({"max_runtime": 0}, "max_runtime: must be a finite number greater than 0, got 0"),
        ({"max_runtime": float("inf")}, "max_runtime: must be a finite number greater than 0, got inf"),
        ({"lock_timeout": float("-inf")}, "lock_timeout: must be a finite number at least 0, got -inf"),
    ],
)
def test_invalid_options(params, message):
    core = engine_modules()[0]
    with pytest.raises(core.OperationError) as raised:
        engine(**params)
    assert (raised.value.kind, raised.value.message) == ("invalid", message)


# --- Revocation (oauth_token_revoke and revoke_tokens): the same engine, with DOT's revoke() as the oracle.

ISSUED = NOW - timedelta(hours=1)  # the issued_before of the cases narrowed by it
ISSUE_TIMES = (NOW - graphs.FAR, ISSUED - graphs.MICROSECOND, ISSUED, ISSUED + graphs.MICROSECOND, NOW)
# (client_id, user) of a case: one application, both, one user everywhere, one user in one application.
REVOKE_SELECTORS = (
    ("token-graphs", None),
    (["token-graphs", "token-graphs-other"], None),
    (None, "token-leaver"),
    (["token-graphs-other"], "token-leaver"),
)


def revoke_engine(check_mode=False, **params):
    from oauthops_django_side import _django_core, _django_revoke

    context = _django_core.Context(None, check_mode)
    result = _django_revoke.run_token_revoke(params, context)
    result["warnings"] = context.warnings
    return result


def spread_issue_times(rng):
    """Issue times around ISSUED (`created` is auto_now_add: the frozen NOW; `updated` too, so that a revocation
    that forgets what RefreshToken.save() sets shows), and token families on some refresh tokens where DOT has
    them, which revocation must keep."""
    import uuid

    for model in graphs.dot_token_models():
        for pk in model._base_manager.values_list("pk", flat=True):
            issued = rng.choice(ISSUE_TIMES)
            model._base_manager.filter(pk=pk).update(created=issued, updated=issued)
    refresh = graphs.dot_token_models()[2]
    if any(field.name == "token_family" for field in refresh._meta.get_fields()):
        families = [uuid.UUID(int=rng.getrandbits(128), version=4) for unused in range(3)]
        for pk in refresh._base_manager.values_list("pk", flat=True):
            if rng.random() < 0.5:
                refresh._base_manager.filter(pk=pk).update(token_family=rng.choice(families))


def dot_revoke(client_id=None, user=None, issued_before=None, **unused_options):
    """DOT's own revocation of each selected row, object by object, and its counts: the oracle. The selection
    is written here again, in the ORM's words, rather than taken from the engine."""
    from django.db.models import Q

    id_model, access_model, refresh_model, grant_model = graphs.dot_token_models()
    query = Q()
    if client_id is not None:
        query &= Q(application__client_id__in=[client_id] if isinstance(client_id, str) else client_id)
    if user is not None:
        query &= Q(user__username=user)
    if issued_before is not None:
        query &= Q(created__lt=issued_before)
    tables = {"access_tokens": access_model, "id_tokens": id_model, "grants": grant_model}
    before = dict((name, model.objects.count()) for name, model in tables.items())
    live = refresh_model.objects.filter(revoked__isnull=True)
    live_before = live.count()
    for token in refresh_model.objects.filter(query, revoked__isnull=True).order_by("pk"):
        token.revoke()
    for model in (access_model, id_model):
        for token in model.objects.filter(query).order_by("pk"):
            token.revoke()
    for grant in grant_model.objects.filter(query).order_by("pk"):
        grant.delete()
    counts = {"refresh_tokens": live_before - live.count()}
    counts.update((name, before[name] - model.objects.count()) for name, model in tables.items())
    return counts


def check_revoke(params):
    """The engine (check mode, then for real, then again) against dot_revoke() on the graph in the database."""
    original = graphs.snapshot()
    predicted = revoke_engine(check_mode=True, **params)
    assert graphs.snapshot() == original, "check mode changed the database"
    dot_counts = dot_revoke(**params)
    expected = graphs.snapshot()
    graphs.restore(original)
    kept = len(expected[graphs.dot_token_models()[1]._meta.db_table][1])  # access tokens nobody selected
    assert sum(dot_counts.values()) > 0 and kept > 0, "vacuous case: %r revoked, %d access tokens kept" % (
        dot_counts,
        kept,
    )
    result = revoke_engine(**params)
    actual = graphs.snapshot()
    assert actual == expected, "end states differ:\n" + graphs.differences(expected, actual)
    assert result["revoked"] == dot_counts, "engine counts differ from DOT's revoke()"
    assert predicted["revoked"] == dot_counts, "check-mode counts differ from DOT's revoke()"
    assert result["changed"] is predicted["changed"] is True and result["complete"] is True
    assert set(result["strategy"].values()) == {"set-based SQL"} and not result["warnings"]
    rerun = revoke_engine(**params)
    assert (rerun["changed"], rerun["total"]) == (False, 0)
    return result


# The core cases also on a project whose router keeps DOT on a second database (--models routed).
@pytest.mark.models("stock", "swapped-tokens", "routed")
@pytest.mark.parametrize("seed", range(len(REVOKE_SELECTORS)))
def test_revoke_differential(frozen, seed):
    """One case per selector (small: these run in every unit session of every DOT release), every other one
    narrowed by issued_before."""
    rng = random.Random("revoke/%d" % seed)
    graphs.generate(rng, NOW, size=rng.randint(10, 16), pairs=graphs.owners())
    spread_issue_times(rng)
    client_id, user = REVOKE_SELECTORS[seed]
    params = {"client_id": client_id, "user": user, "batch_size": BATCH_SIZES[seed % len(BATCH_SIZES)]}
    if seed % 2:
        params["issued_before"] = ISSUED.isoformat()
    result = check_revoke(params)
    named = [client_id] if isinstance(client_id, str) else client_id
    assert (result["selection"]["client_ids"], result["selection"]["username"]) == (named, user)


def test_revoke_max_runtime_stops_between_batches_and_the_next_run_finishes(frozen, monkeypatch):
    from oauthops_django_side import _django_revoke

    graphs.generate(random.Random("revoke-max-runtime"), NOW, size=30)
    original = graphs.snapshot()
    dot_counts = dot_revoke(client_id="token-graphs")
    expected = graphs.snapshot()
    graphs.restore(original)
    with monkeypatch.context() as patch:
        clock = SleepOnlyClock()
        patch.setattr(engine_modules()[1], "time", clock)
        patch.setattr(_django_revoke, "time", clock)
        # Batches start at 0, 0.25, ..., 1.25; the next pause would end at 1.5, the deadline.
        first = revoke_engine(client_id="token-graphs", batch_size=1, batch_interval=0.25, max_runtime=1.5)
    assert (first["complete"], first["batches"]) == (False, 6) and "max_runtime" in first["msg"]
    assert graphs.snapshot() != original
    second = revoke_engine(client_id="token-graphs", batch_size=1)
    assert second["complete"] is True
    assert graphs.snapshot() == expected
    assert dict((name, first["revoked"][name] + second["revoked"][name]) for name in dot_counts) == dot_counts


# --- Runs in other processes: a SIGKILL mid-run, and two cleanups at once. Time is not frozen
# there, so these graphs keep every timestamp a day or more away from any cut-off.


def far_graph(size):
    now = datetime.now(dt_timezone.utc)
    far = [now - graphs.FAR, now - timedelta(days=2), now + timedelta(days=2), now + graphs.FAR]
    graphs.generate(random.Random("far/%d" % size), now, size=size, points=far)


# The engine's entry point, run by the process of a Hold: it reports how many access and refresh tokens
# are committed when its run gets to the hold (its first batch committed), and waits for the test.
HELD_MAIN = """
import os, sys
from oauthops_django_side import _django_cleanup
from oauthops_django_side._django_side import main

reached, release, where = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
Run = _django_cleanup._Run
hooked = Run._delete_batch if where == "transaction" else Run._may_start_batch


def committed_rows():
    from oauth2_provider.models import get_access_token_model, get_refresh_token_model

    return get_access_token_model().objects.count() + get_refresh_token_model().objects.count()


def held(self, *args):
    global reached
    if self.batches != 1 or reached is None:
        return hooked(self, *args)
    committed = committed_rows()
    result = hooked(self, *args) if where == "transaction" else None
    os.write(reached, str(committed).encode())
    os.close(reached)
    reached = None
    os.read(release, 1)  # until the test releases the run or goes away
    return result if where == "transaction" else hooked(self, *args)


setattr(Run, hooked.__name__, held)
main()
"""


class Hold:
    """Where a test holds an engine process (start_engine(hold=...)), so that it waits for a moment of
    the run instead of sleeping: once the first batch is committed, either before the second batch
    ("between") or inside the second batch's transaction after its deletes ("transaction")."""

    def __init__(self, where="between"):
        self.where = where
        self.reached, self.child_reached = os.pipe()
        self.child_release, self.releasing = os.pipe()

    def command(self):
        return [sys.executable, "-c", HELD_MAIN, str(self.child_reached), str(self.child_release), self.where]

    def started(self):
        os.close(self.child_reached)
        os.close(self.child_release)

    def wait(self, timeout=120):
        """Access and refresh tokens committed when the run got to the hold, or None if it ended first."""
        ready = select.select([self.reached], [], [], timeout)[0]
        assert ready, "the engine process neither got to its hold nor ended in %d s" % timeout
        reported = os.read(self.reached, 32)
        os.close(self.reached)
        return int(reported) if reported else None

    def release(self):
        if self.releasing is not None:
            os.close(self.releasing)
            self.releasing = None


def start_engine(hold=None, **params):
    """The engine in its own process, started the way the bridge starts it."""
    import oauthops_django_side

    side_root = Path(oauthops_django_side.__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(side_root), str(DJANGO_PROJECT)]))
    request = {"op": "token_cleanup", "params": params, "check_mode": False, "database": "default"}
    process = subprocess.Popen(
        hold.command() if hold else [sys.executable, "-c", "from oauthops_django_side._django_side import main; main()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=DJANGO_PROJECT,
        env=env,
        text=True,
        pass_fds=(hold.child_reached, hold.child_release) if hold else (),
    )
    if hold:
        hold.started()
    process.stdin.write(json.dumps(request))
    process.stdin.close()
    return process


def finished(process, timeout=120):
    out = process.stdout.read()
    err = process.stderr.read()
    process.wait(timeout)
    response = json.loads(out or "null")
    assert response and response["ok"], "engine process failed: %s %s" % (out, err[-2000:])
    return response["result"]


def token_rows():
    from oauth2_provider.models import get_access_token_model, get_refresh_token_model

    return get_access_token_model().objects.count() + get_refresh_token_model().objects.count()


@pytest.fixture
def unfrozen_differential(caplog, dot_settings):
    return Differential(caplog, dot_settings)


def test_sigkill_mid_run_leaves_a_consistent_database_and_the_next_run_finishes(unfrozen_differential):
    from django.db import connection, transaction

    far_graph(120)
    expected, dot_counts = unfrozen_differential.expected()
    before = token_rows()
    hold = Hold("transaction")
    process = start_engine(hold=hold, batch_size=5)
    committed = hold.wait()
    process.send_signal(signal.SIGKILL)  # with the second batch's deletes done and not committed
    process.wait(30)
    process.stdout.close()
    process.stderr.close()

    killed_at = token_rows()
    assert expected != graphs.snapshot() and killed_at < before, "the first batch was not committed"
    assert killed_at == committed, "the killed batch was not rolled back as a whole"
    with transaction.atomic():
        connection.check_constraints()  # no row points at a deleted one: batches are all or nothing

    result = engine(batch_size=5, lock_timeout=10)
    assert result["lock"]["acquired"] is True, "the killed run's lock was not released"
    assert result["complete"] is True and result["total"] > 0
    actual = graphs.snapshot()
    assert actual == expected, graphs.differences(expected, actual)


class ReleasingClock:
    """The cleanup module's `time` for a run that waits for the lock: its first sleep releases `hold`."""

    def __init__(self, hold):
        self.hold = hold

    def __getattr__(self, name):
        return getattr(time, name)

    def sleep(self, seconds):
        self.hold.release()
        time.sleep(seconds)


def test_a_second_run_skips_or_waits_while_one_holds_the_lock(unfrozen_differential, monkeypatch):
    far_graph(100)
    expected, dot_counts = unfrozen_differential.expected()
    hold = Hold()
    holder = start_engine(hold=hold, batch_size=4)
    assert hold.wait() is not None, "the holder ended before its second batch"

    skipped = engine(lock_timeout=0)
    assert skipped["lock"]["acquired"] is False and skipped["complete"] is False
    assert (skipped["changed"], skipped["total"], skipped["batches"]) == (False, 0, 0)
    assert skipped["msg"].startswith("skipped: another token cleanup holds the ")
    assert skipped["warnings"] == [skipped["msg"]]

    # The waiting run lets the holder go on when it first finds the lock taken (its first sleep).
    with monkeypatch.context() as patch:
        patch.setattr(engine_modules()[1], "time", ReleasingClock(hold))
        waited = engine(lock_timeout=120)
    held = finished(holder)
    assert waited["lock"]["acquired"] is True and waited["lock"]["waited"] > 0
    assert waited["total"] == 0, "the waiting run found work the holder had done"
    assert held["complete"] is True and held["deleted"] == dot_counts
    assert graphs.snapshot() == expected


def test_two_concurrent_runs_do_not_both_delete(unfrozen_differential):
    far_graph(100)
    expected, dot_counts = unfrozen_differential.expected()
    holds = [Hold(), Hold()]
    runs = [start_engine(hold=hold, batch_size=4) for hold in holds]
    # Whichever run takes the lock is held after its first batch until the other one has ended.
    reached = [hold.wait() for hold in holds]
    assert sorted(count is None for count in reached) == [False, True], reached
    for hold in holds:
        hold.release()
    results = [finished(run) for run in runs]
    acquired = [result for result in results if result["lock"]["acquired"]]
    assert len(acquired) == 1, results
    assert acquired[0]["deleted"] == dot_counts and acquired[0]["complete"] is True
    assert graphs.snapshot() == expected
