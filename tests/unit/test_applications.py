"""Reconcile rules of oauth_application, in-process against a real database.

The suite runs this file a second time per backend with --models custom-user,
so the user rules are proven on a user model whose USERNAME_FIELD is "email" as well.
"""

import os

import pytest

# Also on a user model that logs in by email and a swapped application model (--models custom-user).
pytestmark = pytest.mark.models("stock", "custom-user")


def side():
    from oauthops_django_side import _django_applications, _django_core

    return _django_core, _django_applications


def converge(check_mode=False, no_log=True, **params):
    """oauth_application's Django side; by default as a no_log task calls it (it may return a generated secret)."""
    core, applications = side()
    context = core.Context("default", check_mode, no_log)
    params.setdefault("state", "present")
    params.setdefault("update_secret", "always")
    return applications.run_application(params, context)


def stored(client_id):
    from oauth2_provider.models import get_application_model

    return get_application_model().objects.filter(client_id=client_id).first()


def secret_opens(client_id, secret):
    from django.contrib.auth.hashers import check_password

    return check_password(secret, stored(client_id).client_secret)


WEB = dict(
    client_id="web",
    name="Web",
    client_type="confidential",
    authorization_grant_type="authorization-code",
    redirect_uris=["https://web.example.com/cb"],
)


def web(**changes):
    """The WEB declaration with some options changed."""
    declared = dict(WEB)
    declared.update(changes)
    return declared


def make_user(username):
    """A user of the session's user model whose USERNAME_FIELD is `username`."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username)


def username_field():
    from django.contrib.auth import get_user_model

    return get_user_model().USERNAME_FIELD


@pytest.fixture
def alice():
    return make_user("alice")


def refused(**params):
    """The OperationError that converging `params` raises."""
    core = side()[0]
    with pytest.raises(core.OperationError) as raised:
        converge(**params)
    assert "\n" not in raised.value.message
    return raised.value


def test_create_then_rerun_is_unchanged():
    first = converge(**WEB)
    again = converge(**WEB)
    assert (first["changed"], first["action"]) == (True, "created")
    assert (again["changed"], again["action"]) == (False, "unchanged")
    assert again["application"]["redirect_uris"] == ["https://web.example.com/cb"]
    assert "client_secret" not in again


def test_every_option_round_trips(alice):
    declared = web(
        redirect_uris=["https://a.example.com/cb", "https://b.example.com/cb"],
        post_logout_redirect_uris=["https://a.example.com/bye"],
        allowed_origins=["https://a.example.com"],
        user="alice",
        skip_authorization=True,
        algorithm="RS256",
        hash_client_secret=True,
        client_secret="declared-secret-value",
    )
    result = converge(**declared)
    application = result["application"]
    for option in ("name", "client_type", "authorization_grant_type", "redirect_uris", "post_logout_redirect_uris",
                   "allowed_origins", "skip_authorization", "algorithm", "hash_client_secret"):
        assert application[option] == declared[option], option
    assert application["user"] == "alice"
    row = stored("web")
    assert row.redirect_uris == "https://a.example.com/cb https://b.example.com/cb"
    assert row.user_id == alice.pk
    assert converge(**declared)["changed"] is False


def test_options_not_given_are_left_alone():
    converge(**web(skip_authorization=True))
    result = converge(client_id="web", name="Renamed")
    assert result["changed"] is True
    row = stored("web")
    assert (row.name, row.skip_authorization, row.redirect_uris) == ("Renamed", True, "https://web.example.com/cb")


@pytest.mark.real_hasher
def test_declared_secret_is_stored_hashed_and_verified_not_compared(hasher):
    converge(**web(client_secret="s3cret-one"))
    assert stored("web").client_secret.startswith({"real": "pbkdf2_sha256$", "fast": "md5$"}[hasher])
    assert secret_opens("web", "s3cret-one")
    assert converge(**web(client_secret="s3cret-one"))["changed"] is False


def test_update_secret_on_create_keeps_the_stored_secret():
    converge(**web(client_secret="s3cret-one"))
    result = converge(**web(client_secret="s3cret-two", update_secret="on_create"))
    assert result["changed"] is False
    assert secret_opens("web", "s3cret-one")


@pytest.mark.real_hasher
def test_update_secret_always_replaces_a_different_secret():
    converge(**web(client_secret="s3cret-one"))
    result = converge(**web(client_secret="s3cret-two"))
    assert result["changed"] is True
    assert result["diff"]["after"]["client_secret"] == "<hidden, changed>"
    assert secret_opens("web", "s3cret-two")
    assert "s3cret" not in repr(result)


@pytest.mark.real_hasher
def test_generated_secret_is_returned_once_and_opens_the_application():
    created = converge(**WEB)
    assert secret_opens("web", created["client_secret"])
    assert "client_secret" not in converge(**WEB)


def test_check_mode_create_returns_no_secret_and_writes_nothing():
    result = converge(check_mode=True, **WEB)
    assert result["changed"] is True and result["action"] == "created"
    assert "client_secret" not in result
    assert stored("web") is None


def test_unhashed_secret_for_hs256():
    declared = web(algorithm="HS256", hash_client_secret=False, client_secret="hmac-key-value")
    converge(**declared)
    assert stored("web").client_secret == "hmac-key-value"
    assert converge(**declared)["changed"] is False


def test_switching_hashing_off_without_the_secret_is_refused():
    core = side()[0]
    converge(**WEB)
    with pytest.raises(core.OperationError, match="hash_client_secret"):
        converge(client_id="web", hash_client_secret=False)
    assert stored("web").hash_client_secret is True


def test_a_prehashed_secret_is_stored_as_given():
    from django.contrib.auth.hashers import make_password

    hashed = make_password("pre-hashed")
    converge(**web(client_secret=hashed))
    assert stored("web").client_secret == hashed
    assert converge(**web(client_secret=hashed))["changed"] is False


def test_user_by_username_by_primary_key_and_cleared(alice):
    assert converge(**web(user="alice"))["application"]["user"] == "alice"
    assert converge(**web(user=alice.pk))["changed"] is False
    assert converge(**web(user=str(alice.pk)))["changed"] is False
    cleared = converge(**web(user=""))
    assert cleared["changed"] is True and cleared["application"]["user"] is None


def test_unknown_user_is_a_clear_error_and_writes_nothing():
    error = refused(**web(user="nobody"))
    assert error.message == "user 'nobody' does not exist in database 'default' (looked up by %s and by primary key)" % username_field()
    assert stored("web") is None


def test_the_custom_user_switch_takes_effect():
    expected = "email" if os.environ.get("OAUTHOPS_TEST_CUSTOM_USER") else "username"
    assert username_field() == expected


@pytest.fixture
def two_users_one_value():
    """(by_pk, by_name, value): `value` is by_pk's primary key and by_name's username."""
    by_pk = make_user("the-pk-owner")
    by_name = make_user(str(by_pk.pk))
    assert by_name.pk != by_pk.pk
    return by_pk, by_name, str(by_pk.pk)


@pytest.mark.parametrize("as_integer", [False, True])
def test_a_value_naming_two_users_is_refused_naming_both(two_users_one_value, as_integer):
    by_pk, by_name, value = two_users_one_value
    error = refused(**web(user=int(value) if as_integer else value))
    assert error.kind == "ambiguous"
    assert error.message == (
        "user '%s' is ambiguous: the %s of user '%s' (pk %s) and the primary key of user 'the-pk-owner' (pk %s); "
        "set user_lookup to username or pk to choose" % (value, username_field(), value, by_name.pk, by_pk.pk)
    )
    assert stored("web") is None


def test_an_ambiguous_owner_changes_nothing_on_an_existing_application(two_users_one_value, alice):
    converge(**web(user="alice"))
    before = stored("web")
    refused(client_id="web", user=two_users_one_value[2])
    assert (stored("web").user_id, stored("web").updated) == (alice.pk, before.updated)


def test_user_lookup_chooses_between_the_two(two_users_one_value):
    by_pk, by_name, value = two_users_one_value
    assert converge(**web(user=value, user_lookup="pk"))["application"]["user"] == "the-pk-owner"
    assert stored("web").user_id == by_pk.pk
    assert converge(**web(user=value, user_lookup="username"))["application"]["user"] == value
    assert stored("web").user_id == by_name.pk


def test_a_value_naming_the_same_user_both_ways_is_that_user():
    user = make_user("renamed-below")
    setattr(user, username_field(), str(user.pk))
    user.save()
    assert converge(**web(user=str(user.pk)))["application"]["user"] == str(user.pk)
    assert stored("web").user_id == user.pk


def test_user_lookup_looks_only_where_it_says(alice):
    error = refused(**web(user=str(alice.pk), user_lookup="username"))
    assert error.message == "user '%s' does not exist in database 'default' (looked up by %s)" % (alice.pk, username_field())
    error = refused(**web(user="alice", user_lookup="pk"))
    assert error.message == "user 'alice' does not exist in database 'default' (looked up by primary key)"
    assert stored("web") is None


def test_empty_secret_is_refused_on_create():
    error = refused(**web(client_secret=""))
    assert error.kind == "invalid" and list(error.fields) == ["client_secret"]
    assert error.message.startswith("client_secret: must not be empty")
    assert stored("web") is None


@pytest.mark.parametrize("update_secret", ["always", "on_create"])
def test_empty_secret_is_refused_on_update_and_the_secret_stays(update_secret):
    converge(**web(client_secret="s3cret-one"))
    before = stored("web")
    refused(**web(client_secret="", update_secret=update_secret, name="Not stored either"))
    after = stored("web")
    assert (after.client_secret, after.name, after.updated) == (before.client_secret, "Web", before.updated)
    assert secret_opens("web", "s3cret-one")


BLANK_SECRETS = [" ", "\n", "\t \r\n"]
PADDED_SECRETS = ["s3cret-padded\n", " s3cret-padded", "\ts3cret-padded "]


def converge_as_set(check_mode=False, **params):
    """`params` as the one item of an oauth_applications set."""
    from oauthops_django_side import _django_application_set

    item = dict(params, state="present", update_secret=params.get("update_secret", "always"))
    return _django_application_set.run_applications({"applications": [item]}, side()[0].Context("default", check_mode, no_log=True))


def refused_either_way(through, **params):
    """The OperationError of `params`, given to oauth_application or as the one item of oauth_applications."""
    if through == "single":
        return refused(**params)
    with pytest.raises(side()[0].OperationError) as raised:
        converge_as_set(**params)
    assert "\n" not in raised.value.message
    return raised.value


@pytest.mark.parametrize("through", ["single", "set"])
@pytest.mark.parametrize("blank", BLANK_SECRETS)
def test_a_blank_secret_is_refused_on_create_and_update(through, blank):
    error = refused_either_way(through, **web(client_secret=blank))
    assert "client_secret: must not be empty or only whitespace" in error.message
    assert stored("web") is None
    converge(**web(client_secret="s3cret-one"))
    before = stored("web")
    refused_either_way(through, **web(client_secret=blank, name="Not stored either"))
    after = stored("web")
    assert (after.client_secret, after.name, after.updated) == (before.client_secret, "Web", before.updated)
    assert secret_opens("web", "s3cret-one")


@pytest.mark.parametrize("through", ["single", "set"])
@pytest.mark.parametrize("padded", PADDED_SECRETS)
def test_a_secret_with_whitespace_around_it_is_refused_and_never_quoted(through, padded):
    error = refused_either_way(through, **web(client_secret=padded))
    assert "client_secret: has leading or trailing whitespace" in error.message
    assert "`| trim`" in error.message
    assert "s3cret-padded" not in repr((error.message, error.fields))
    assert stored("web") is None
    converge(**web(client_secret="s3cret-one"))
    refused_either_way(through, **web(client_secret=padded, update_secret="on_create"))
    assert secret_opens("web", "s3cret-one")


@pytest.mark.real_hasher
def test_regenerate_secret_rotates_and_returns_the_new_secret_once():
    converge(**web(client_secret="s3cret-one"))
    rotated = converge(client_id="web", regenerate_secret=True)
    assert (rotated["changed"], rotated["action"]) == (True, "updated")
    new_secret = rotated["client_secret"]
    assert len(new_secret) >= 32
    assert secret_opens("web", new_secret) and not secret_opens("web", "s3cret-one")
    assert stored("web").client_secret != new_secret
    assert rotated["diff"]["before"]["client_secret"] == "<hidden>"
    assert rotated["diff"]["after"]["client_secret"] == "<hidden, changed>"
    assert new_secret not in repr(dict(rotated, client_secret=None))
    again = converge(client_id="web", regenerate_secret=True)
    assert again["changed"] is True and again["client_secret"] != new_secret
    assert "client_secret" not in converge(client_id="web")


def test_regenerate_secret_in_check_mode_predicts_and_keeps_the_secret():
    converge(**web(client_secret="s3cret-one"))
    before = stored("web")
    predicted = converge(check_mode=True, client_id="web", regenerate_secret=True)
    assert (predicted["changed"], predicted["action"]) == (True, "updated")
    assert predicted["diff"]["after"]["client_secret"] == "<hidden, changed>"
    assert "client_secret" not in predicted
    assert (stored("web").client_secret, stored("web").updated) == (before.client_secret, before.updated)


def test_check_mode_generates_no_secret(drawn_secrets):
    """A preview draws no secret from DOT's generator, so it has none to return or show: --check --diff needs no
    no_log. The real run draws the one it stores and returns it once."""
    converge(**web(client_secret="s3cret-one"))
    for params in (web(client_id="new"), dict(client_id="web", regenerate_secret=True)):
        predicted = converge(check_mode=True, no_log=False, **params)
        assert predicted["changed"] is True and "client_secret" not in predicted
        assert predicted["diff"]["after"]["client_secret"] == "<hidden, changed>"
    assert drawn_secrets == []
    created = converge(**web(client_id="new"))
    assert drawn_secrets == [created["client_secret"]]
    assert secret_opens("new", created["client_secret"])


def test_a_secret_dot_would_generate_for_a_task_without_no_log_is_refused(drawn_secrets):
    """Ansible would show the returned secret: refused before anything is written, naming the application.
    Declared secrets, deletions and check mode return no secret and need no no_log."""
    converge(**web(client_secret="s3cret-one"))
    before = stored("web")
    for params in (web(client_id="new"), dict(client_id="web", regenerate_secret=True)):
        error = refused(no_log=False, **params)
        assert error.kind == "secret_in_sight"
        assert error.message.startswith(
            "refusing to write: DOT would generate the client secret of %r, and this task is not no_log, " % params["client_id"]
        )
        assert 'no_log: "{{ not ansible_check_mode }}"' in error.message
    assert stored("new") is None
    assert (stored("web").client_secret, stored("web").updated) == (before.client_secret, before.updated)
    assert drawn_secrets == []
    assert converge(no_log=False, **web(client_id="declared", client_secret="s3cret-two"))["action"] == "created"
    assert converge(no_log=False, check_mode=True, client_id="web", regenerate_secret=True)["changed"] is True
    assert converge(no_log=False, client_id="web", state="absent")["action"] == "deleted"


def test_regenerate_secret_on_create_is_a_create_with_a_generated_secret():
    created = converge(regenerate_secret=True, **WEB)
    assert created["action"] == "created"
    assert secret_opens("web", created["client_secret"])


def test_regenerate_secret_unhashed_for_hs256():
    converge(**web(algorithm="HS256", hash_client_secret=False, client_secret="hmac-key-value"))
    rotated = converge(client_id="web", regenerate_secret=True)
    assert stored("web").client_secret == rotated["client_secret"] != "hmac-key-value"


def test_regenerate_secret_stores_an_unhashed_one_when_hashing_is_switched_off():
    converge(**WEB)
    rotated = converge(client_id="web", hash_client_secret=False, regenerate_secret=True)
    assert stored("web").client_secret == rotated["client_secret"]


def test_public_clients_get_and_rotate_a_secret_as_dot_gives_them_one():
    """DOT's model gives every application a secret and checks it whenever a client presents one."""
    declared = dict(client_id="spa", client_type="public", authorization_grant_type="authorization-code",
                    redirect_uris=["https://spa.example.com/cb"])
    created = converge(**declared)
    assert secret_opens("spa", created["client_secret"])
    rotated = converge(client_id="spa", regenerate_secret=True)
    assert secret_opens("spa", rotated["client_secret"]) and not secret_opens("spa", created["client_secret"])
    refused(**dict(declared, client_secret=""))


URI_OPTIONS = ("redirect_uris", "post_logout_redirect_uris", "allowed_origins")


@pytest.mark.parametrize("option", URI_OPTIONS)
@pytest.mark.parametrize(
    "items, problem",
    [
        (["https://a.example.com/cb https://evil.example.com/x"],
         "item 1 'https://a.example.com/cb https://evil.example.com/x' contains whitespace"),
        (["https://a.example.com/cb", "https://a.example.com/x\nhttps://evil.example.com/x"],
         "item 2 'https://a.example.com/x\\nhttps://evil.example.com/x' contains whitespace"),
        (["https://a.example.com/cb\t"], "item 1 'https://a.example.com/cb\\t' contains whitespace"),
        (["https://a.example.com/cb", ""], "item 2 is empty"),
    ],
    ids=["two URIs in one item", "a newline", "a tab", "an empty item"],
)
def test_uri_items_with_whitespace_or_empty_are_refused(option, items, problem):
    converge(**WEB)
    before = stored("web")
    error = refused(**web(**{option: items}))
    assert error.kind == "invalid" and list(error.fields) == [option]
    assert error.message.startswith("%s: %s" % (option, problem))
    after = stored("web")
    assert (getattr(after, option), after.updated) == (getattr(before, option), before.updated)
    refused(**web(client_id="new", **{option: items}))
    assert stored("new") is None


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(redirect_uris=["ftp://web.example.com/cb"]), "redirect_uris"),
        (dict(redirect_uris=[]), "redirect_uris"),
        (dict(client_type="public", algorithm="HS256", hash_client_secret=False, client_secret="k"), "algorithm"),
    ],
)
def test_dot_validation_names_the_field_and_changes_nothing(change, field):
    core = side()[0]
    converge(**WEB)
    before = stored("web")
    with pytest.raises(core.OperationError) as raised:
        converge(**web(**change))
    assert raised.value.kind == "invalid"
    assert field in raised.value.fields
    assert raised.value.message.startswith(field + ":") or (field + ":") in raised.value.message
    after = stored("web")
    assert (after.redirect_uris, after.client_type, after.algorithm, after.updated) == (
        before.redirect_uris, before.client_type, before.algorithm, before.updated,
    )


def test_check_mode_fires_no_model_signal():
    from django.db.models.signals import post_delete, post_save, pre_save
    from oauth2_provider.models import get_application_model

    fired = []

    def receiver(sender, **kwargs):
        fired.append(sender)

    converge(**WEB)
    model = get_application_model()
    for signal in (pre_save, post_save, post_delete):
        signal.connect(receiver, sender=model, weak=False)
    try:
        converge(check_mode=True, **web(name="Predicted"))
        converge(check_mode=True, client_id="other", client_type="public", authorization_grant_type="password")
        converge(check_mode=True, client_id="web", state="absent")
    finally:
        for signal in (pre_save, post_save, post_delete):
            signal.disconnect(receiver, sender=model)
    assert fired == []
    assert stored("web").name == "Web"


def test_a_failure_after_the_write_rolls_the_write_back():
    from django.db.models.signals import post_save
    from oauth2_provider.models import get_application_model

    def explode(sender, **kwargs):
        raise RuntimeError("project signal handler failed")

    converge(**WEB)
    post_save.connect(explode, sender=get_application_model(), weak=False)
    try:
        with pytest.raises(RuntimeError):
            converge(**web(name="Never stored"))
    finally:
        post_save.disconnect(explode, sender=get_application_model())
    assert stored("web").name == "Web"


def test_absent_deletes_and_is_idempotent():
    converge(**WEB)
    assert converge(client_id="web", state="absent")["action"] == "deleted"
    assert stored("web") is None
    assert converge(client_id="web", state="absent")["changed"] is False


def test_info_lists_applications_without_secrets():
    core, applications = side()
    converge(**web(client_secret="never-listed"))
    converge(client_id="api", client_type="public", authorization_grant_type="password")
    listed = applications.run_application_info({}, core.Context("default", False))["applications"]
    assert [app["client_id"] for app in listed] == ["api", "web"]
    assert "never-listed" not in repr(listed) and all("client_secret" not in app for app in listed)
