"""oauth_token_revoke's refusals, lock and fallback, and revoke_tokens of oauth_application and
oauth_applications, in-process against a real database.

What a revocation leaves is proven against DOT's own revoke() in test_cleanup_differential.py (on every
backend, model variant and DOT release); here the same oracle (dot_revoke) checks what a secret rotation
revokes, and the rest is behaviour around it.
"""

import random

import pytest
import token_graphs as graphs
from test_cleanup_differential import NOW, Hold, dot_revoke, far_graph, finished, revoke_engine, start_engine
# The differential tests' fixtures: every test starts and ends on empty token tables (autouse), at a frozen NOW.
from test_cleanup_differential import clean_tables, frozen  # noqa: F401  pylint: disable=unused-import

APPLICATION_SPEC = dict(
    state="present",
    update_secret="always",
    client_type="confidential",
    authorization_grant_type="authorization-code",
)


def side():
    from oauthops_django_side import _django_application_set, _django_applications, _django_core

    return _django_core, _django_applications, _django_application_set


@pytest.fixture
def graph(frozen):
    """Tokens of two users in two applications; the snapshot before anything is revoked."""
    graphs.generate(random.Random("revoke"), NOW, size=16, pairs=graphs.owners())
    return graphs.snapshot()


def refused(**params):
    core = side()[0]
    with pytest.raises(core.OperationError) as raised:
        revoke_engine(**params)
    assert "\n" not in raised.value.message
    return raised.value.kind, raised.value.message


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "params, kind, message",
    [
        ({}, "invalid", "no selector: give client_id, user or both (with issued_before to narrow them); refusing to "
         "revoke every token"),
        ({"issued_before": "2031-05-17T12:00:00Z"}, "invalid", "no selector: give client_id, user or both (with "
         "issued_before to narrow them); refusing to revoke every token"),
        ({"client_id": []}, "invalid", "client_id is an empty list, most often a variable that did not load; name "
         "the applications"),
        ({"client_id": ["token-graphs", "nope", "gone"]}, "not_found", "no application with client_id 'nope', "
         "'gone' in database 'default'; nothing revoked"),
        ({"user": "ghost"}, "not_found", "user 'ghost' does not exist in database 'default' (looked up by username "
         "and by primary key)"),
        ({"user": " "}, "invalid", "user is empty, most often a variable that did not load; name the user"),
        ({"client_id": "token-graphs", "issued_before": "yesterday"}, "invalid", "issued_before: 'yesterday' is not "
         "a date and time (ISO 8601, e.g. 2026-12-07T03:00:00Z)"),
        ({"client_id": "token-graphs", "batch_size": 0}, "invalid", "batch_size: must be an integer at least 1, got 0"),
    ],
)
def test_bad_selectors_are_refused_in_one_line_and_nothing_changes(graph, params, kind, message):
    assert refused(**params) == (kind, message)
    assert graphs.snapshot() == graph


@pytest.mark.one_backend
def test_check_mode_counts_and_a_narrower_selection_revokes_less(graph):
    every = revoke_engine(check_mode=True, user="token-leaver")
    narrowed = revoke_engine(check_mode=True, user="token-leaver", client_id="token-graphs")
    assert graphs.snapshot() == graph
    assert 0 < narrowed["total"] < every["total"] and every["changed"] is True
    assert "lock" not in every and every["msg"].startswith("would revoke %d refresh tokens" % every["revoked"]["refresh_tokens"])
    assert every["selection"] == {"client_ids": None, "user": graphs.owners()[2][0].pk, "username": "token-leaver",
                                  "issued_before": None}


@pytest.mark.one_backend
def test_an_unproven_revoke_runs_per_object_and_says_so(graph, monkeypatch):
    from oauthops_django_side import _django_revoke

    expected_counts = dot_revoke(client_id="token-graphs-other")
    expected = graphs.snapshot()
    graphs.restore(graph)
    monkeypatch.setitem(_django_revoke.PROVEN_REVOKES, "refresh_tokens", ("0123456789abcdef",))
    result = revoke_engine(client_id="token-graphs-other")
    assert graphs.snapshot() == expected and result["revoked"] == expected_counts
    assert result["strategy"]["refresh_tokens"].startswith("DOT's revoke() per object (oauth2_provider.RefreshToken")
    assert result["strategy"]["access_tokens"] == "set-based SQL"
    assert result["warnings"] == ["refresh_tokens: " + result["strategy"]["refresh_tokens"]]


def test_a_revocation_skips_while_a_cleanup_holds_the_lock():
    far_graph(60)
    before = graphs.snapshot()
    hold = Hold()
    holder = start_engine(hold=hold, batch_size=4)
    try:
        assert hold.wait() is not None, "the cleanup ended before its second batch"
        during = graphs.snapshot()
        skipped = revoke_engine(client_id="token-graphs", lock_timeout=0)
        assert graphs.snapshot() == during
    finally:
        hold.release()
    finished(holder)
    assert skipped["lock"]["acquired"] is False and skipped["complete"] is False
    assert (skipped["changed"], skipped["total"], skipped["batches"]) == (False, 0, 0)
    assert skipped["msg"].startswith("skipped: a token cleanup or revocation holds the ")
    assert skipped["warnings"] == [skipped["msg"]] and during != before


# --- revoke_tokens: on_secret_change (oauth_application, oauth_applications)


def without_applications(state):
    from oauth2_provider.models import get_application_model

    return dict((table, rows) for table, rows in state.items() if table != get_application_model()._meta.db_table)


def rotate_one(check_mode=False, **options):
    core, single = side()[:2]
    params = dict(APPLICATION_SPEC, client_id="token-graphs", **options)
    return single.run_application(params, core.Context("default", check_mode, no_log=True))


def rotate_set(check_mode=False, **options):
    core, unused, application_set = side()
    items = [
        dict(APPLICATION_SPEC, client_id="token-graphs", **options),
        dict(APPLICATION_SPEC, client_id="token-graphs-other", revoke_tokens="on_secret_change"),  # secret kept
    ]
    return application_set.run_applications({"applications": items}, core.Context("default", check_mode, no_log=True))


@pytest.mark.parametrize("rotate", [rotate_one, rotate_set], ids=["oauth_application", "oauth_applications"])
def test_a_rotated_secret_revokes_the_applications_tokens_in_the_same_run(graph, rotate):
    expected_counts = dot_revoke(client_id="token-graphs")
    expected = without_applications(graphs.snapshot())
    graphs.restore(graph)

    predicted = rotate(check_mode=True, regenerate_secret=True, revoke_tokens="on_secret_change")
    assert graphs.snapshot() == graph
    result = rotate(regenerate_secret=True, revoke_tokens="on_secret_change")
    assert without_applications(graphs.snapshot()) == expected
    if rotate is rotate_set:
        assert "revoked" not in result["results"][1]  # its secret did not change
        predicted, result = predicted["results"][0], dict(result["results"][0], diff=result["diff"][0])
    assert predicted["revoked"] == result["revoked"] == expected_counts and sum(expected_counts.values()) > 0
    assert result["diff"]["after"]["revoked_tokens"] == expected_counts


def test_revoke_tokens_never_and_an_unchanged_secret_revoke_nothing(graph):
    rotate_one(regenerate_secret=True)
    assert without_applications(graphs.snapshot()) == without_applications(graph)
    kept = rotate_one(revoke_tokens="on_secret_change", name="renamed")
    assert kept["changed"] is True and "revoked" not in kept
    assert without_applications(graphs.snapshot()) == without_applications(graph)


@pytest.mark.models("stock", "custom-user")
def test_a_user_named_by_its_username_field_or_primary_key(frozen):
    """On a user model that logs in by email (and a swapped application model) too: the user is looked up as
    oauth_application looks up an owner, and only that user's tokens go."""
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import get_access_token_model, get_application_model

    users = get_user_model().objects
    leaver, stayer = users.create_user("leaver@example.com"), users.create_user("stayer@example.com")
    application = get_application_model().objects.create(
        client_id="mail", client_type="confidential", authorization_grant_type="client-credentials"
    )
    tokens = get_access_token_model().objects
    for index, user in enumerate((leaver, leaver, stayer)):
        tokens.create(token="mail-%d" % index, user=user, application=application, expires=NOW)
    by_name = revoke_engine(check_mode=True, user="leaver@example.com")
    assert by_name["revoked"]["access_tokens"] == 2 and by_name["selection"]["user"] == leaver.pk
    revoked = revoke_engine(user=leaver.pk, user_lookup="pk")
    assert revoked["revoked"] == {"refresh_tokens": 0, "access_tokens": 2, "id_tokens": 0, "grants": 0}
    assert list(tokens.values_list("user", flat=True)) == [stayer.pk]


def test_live_refresh_tokens_sharing_a_checksum_are_revoked_one_by_one():
    """DOT 3.4 keeps (token_checksum, revoked) unique, and two live rows may share a checksum (NULLs differ): one
    timestamp for the batch cannot revoke both, so that batch falls back to DOT's revoke(), a moment per row."""
    from oauth2_provider.models import get_refresh_token_model

    refresh_model = get_refresh_token_model()
    if not any(field.name == "token_checksum" for field in refresh_model._meta.get_fields()):
        pytest.skip("%s has no token_checksum field (DOT before 3.4, or a swapped refresh token model without it), so "
                    "there is no unique (token_checksum, revoked) key for two live rows to collide on"
                    % refresh_model._meta.label)
    user, application = graphs.owner()
    for unused in range(2):
        refresh_model.objects.create(token="same", user=user, application=application)
    result = revoke_engine(client_id="token-graphs")
    assert result["revoked"]["refresh_tokens"] == 2 and result["complete"] is True
    assert len(set(refresh_model.objects.values_list("revoked", flat=True))) == 2
