"""A project whose DATABASE_ROUTERS keep DOT on a database of its own (--models routed: the 'oauth' alias,
testproject/routers.py; the suite runs it on SQLite and PostgreSQL).

Without `database`, every operation works where the routers send the models it touches, as DOT's own code
does; the owner of an application is looked up where Django reads application.user; a `database` given wins,
with a warning; the pre-flight check looks for the tables themselves, which `migrate` on 'default' does not
create although it records DOT's migrations there.
"""

import pytest

pytestmark = pytest.mark.models("routed")


def side():
    from oauthops_django_side import (
        _django_application_set,
        _django_applications,
        _django_cleanup,
        _django_cleanup_job,
        _django_core,
    )

    return _django_core, _django_applications, _django_application_set, _django_cleanup, _django_cleanup_job


def context(database=None, check_mode=False):
    return side()[0].Context(database, check_mode, no_log=True)


def web(**params):
    spec = dict(
        client_id="web",
        name="Web",
        client_type="confidential",
        authorization_grant_type="authorization-code",
        redirect_uris=["https://web.example.com/cb"],
        client_secret="web-secret-0123456789",
        state="present",
        update_secret="always",
    )
    spec.update(params)
    return spec


def user_on(alias, username):
    from django.contrib.auth import get_user_model

    return get_user_model()._default_manager.db_manager(alias).create(username=username)


def tables(alias):
    from django.db import connections

    return set(connections[alias].introspection.table_names())


def test_the_variant_is_what_the_tests_below_assume():
    """DOT's tables exist on 'oauth' only, while its migrations are recorded on both databases."""
    from django.db.migrations.recorder import MigrationRecorder
    from django.db import connections

    assert "oauth2_provider_application" in tables("oauth")
    assert "oauth2_provider_application" not in tables("default")
    for alias in ("default", "oauth"):
        recorded = MigrationRecorder(connections[alias]).migration_qs.filter(app="oauth2_provider")
        assert recorded.exists(), alias


def test_without_database_the_application_goes_where_the_routers_send_it():
    from oauth2_provider.models import get_application_model

    _core, applications = side()[:2]
    alice = user_on("oauth", "alice")
    run = context()
    result = applications.run_application(web(user="alice"), run)
    assert (result["changed"], run.database, run.warnings) == (True, "oauth", [])
    stored = get_application_model().objects.using("oauth").get(client_id="web")
    assert stored.user_id == alice.pk
    again = context()
    assert applications.run_application(web(user="alice"), again)["changed"] is False
    listed = applications.run_application_info({"user": "alice"}, context(check_mode=True))["applications"]
    assert [row["client_id"] for row in listed] == ["web"]
    gone = applications.run_application(web(state="absent"), context())
    assert gone["changed"] is True
    assert not get_application_model().objects.using("oauth").filter(client_id="web").exists()


def test_the_owner_is_looked_up_where_django_reads_it_and_the_error_names_that_database():
    """Users exist on both databases here; the router has no opinion on them, so Django reads an application's
    owner where the application lives. A user only on 'default' is not one an 'oauth' application can have."""
    core, applications = side()[:2]
    user_on("default", "bob")
    with pytest.raises(core.OperationError) as raised:
        applications.run_application(web(user="bob"), context())
    assert raised.value.message == (
        "user 'bob' does not exist in database 'oauth' (looked up by username and by primary key)"
    )
    assert not tables("default") & {"oauth2_provider_application"}
    listed = applications.run_application_info({"user": "bob"}, context(check_mode=True))["applications"]
    assert listed == []


def test_a_set_goes_where_the_routers_send_it():
    from oauth2_provider.models import get_application_model

    application_set = side()[2]
    user_on("oauth", "alice")
    items = [web(), web(client_id="api", name="API", user="alice")]
    for item in items:
        item.pop("state"), item.pop("update_secret")
    run = context()
    result = application_set.run_applications({"applications": items}, run)
    assert (result["changed"], run.database) == (True, "oauth")
    assert sorted(get_application_model().objects.using("oauth").values_list("client_id", flat=True)) == ["api", "web"]
    assert application_set.run_applications({"applications": items}, context())["changed"] is False


def test_a_database_given_wins_with_a_warning_and_the_check_finds_the_missing_tables():
    """'default' has DOT's migrations recorded (migrate records them where the router says no) but no table."""
    core, applications = side()[:2]
    run = context("default")
    with pytest.raises(core.OperationError) as raised:
        applications.run_application(web(), run)
    assert raised.value.kind == "not_migrated"
    assert raised.value.message == (
        "the table oauth2_provider_application is not on database 'default', although the migrations that create it "
        "are recorded there: the project's DATABASE_ROUTERS do not migrate oauth2_provider.Application on 'default' "
        "(allow_migrate); work on the database they are migrated on (leave database unset to follow the routers)"
    )
    assert run.warnings == [
        "database 'default' was given, but the project's DATABASE_ROUTERS send oauth2_provider.Application to "
        "'oauth' (for writes); working on 'default' as told: leave database unset to follow the routers"
    ]
    told = context("oauth")
    assert applications.run_application(web(), told)["changed"] is True
    assert (told.database, told.warnings) == ("oauth", [])


def test_the_cleanup_goes_where_the_routers_send_the_tokens():
    from datetime import timedelta

    from django.utils import timezone
    from oauth2_provider.models import get_access_token_model, get_application_model

    cleanup = side()[3]
    application = get_application_model().objects.create(
        client_id="tokens", client_type="confidential", authorization_grant_type="client-credentials"
    )
    access = get_access_token_model().objects
    access.create(token="old", expires=timezone.now() - timedelta(days=1), application=application, scope="read")
    access.create(token="new", expires=timezone.now() + timedelta(days=1), application=application, scope="read")
    predicted = context(check_mode=True)
    assert cleanup.run_token_cleanup({}, predicted)["deleted"]["access_tokens"] == 1
    run = context()
    assert cleanup.run_token_cleanup({}, run)["deleted"]["access_tokens"] == 1
    assert (predicted.database, run.database) == ("oauth", "oauth")
    assert list(access.using("oauth").values_list("token", flat=True)) == ["new"]


class SplitRouter:
    """DOT's access tokens on 'default', the rest of DOT on 'oauth'."""

    def db_for_write(self, model, **hints):
        if model._meta.app_label == "oauth2_provider":
            return "default" if model._meta.model_name == "accesstoken" else "oauth"
        return None

    db_for_read = db_for_write


def test_a_cleanup_whose_models_the_routers_spread_over_two_databases_is_refused():
    from django.test import override_settings

    core, _applications, _set, cleanup = side()[:4]
    with override_settings(DATABASE_ROUTERS=[SplitRouter()]):
        with pytest.raises(core.OperationError) as raised:
            cleanup.run_token_cleanup({}, context(check_mode=True))
    assert raised.value.message == (
        "the project's DATABASE_ROUTERS send oauth2_provider.AccessToken to 'default', oauth2_provider.RefreshToken "
        "and oauth2_provider.IDToken and oauth2_provider.Grant to 'oauth' (for writes): this operation works on one "
        "database, in one transaction; set database to the alias that holds them all"
    )


def test_the_cron_job_without_database_cleans_where_cleartokens_does(capsys):
    """The job's own entry point in-process, both engines, no --database: the line names the alias."""
    from datetime import timedelta

    from django.utils import timezone
    from oauth2_provider.models import get_access_token_model, get_application_model

    job = side()[4]
    application = get_application_model().objects.create(
        client_id="tokens", client_type="confidential", authorization_grant_type="client-credentials"
    )
    access = get_access_token_model().objects
    for engine in ("oauthops", "cleartokens"):
        access.create(token=engine, expires=timezone.now() - timedelta(days=1), application=application, scope="r")
        assert job.main(["--engine", engine]) == 0
        fields = dict(pair.split("=", 1) for pair in capsys.readouterr().out.split()[1:])
        assert (fields["engine"], fields["database"], fields["access_tokens"]) == (engine, "oauth", "1")
    assert not access.using("oauth").exists()
