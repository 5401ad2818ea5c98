"""oauth_application_info's filters on the Django side, in-process against a real database.

The integration test (playbooks/info_query.yml) asserts each filter's answer through ansible-playbook; these
prove what a playbook cannot see: the filters are the database's WHERE clause, and the rule for a model that
has no registration_source field.
"""

import pytest


def side():
    from oauthops_django_side import _django_applications, _django_core

    return _django_core, _django_applications


def info(**params):
    core, applications = side()
    return applications.run_application_info(params, core.Context("default", True))["applications"]


def create(client_id, **fields):
    from oauth2_provider.models import get_application_model

    fields.setdefault("client_type", "confidential")
    fields.setdefault("authorization_grant_type", "client-credentials")
    return get_application_model().objects.create(client_id=client_id, **fields)


def test_every_filter_is_part_of_the_one_select():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from oauth2_provider.models import get_application_model

    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create_user("alice")
    create("a", name="A", user=owner)
    create("b", name="B", user=owner, client_type="public", authorization_grant_type="implicit")
    table = get_application_model()._meta.db_table
    with CaptureQueriesContext(connection) as queries:
        listed = info(
            client_id=["a", "b"],
            name="B",
            user="alice",
            authorization_grant_type=["implicit"],
            client_type=["public"],
            registration_source=["manual"],
        )
    assert [app["client_id"] for app in listed] == ["b"]
    sql = [query["sql"].replace("`", '"') for query in queries.captured_queries]
    selects = [statement for statement in sql if ('FROM "%s"' % table) in statement]
    assert len(selects) == 1, selects
    where = selects[0].split("WHERE", 1)[1]
    for column in ("client_id", "name", "user_id", "authorization_grant_type", "client_type", "registration_source"):
        assert '"%s"."%s"' % (table, column) in where, "%s is not filtered by the database: %s" % (column, selects[0])


def test_an_unknown_owner_owns_nothing_and_an_empty_owner_means_none():
    from django.contrib.auth import get_user_model

    create("owned", user=get_user_model().objects.create_user("bob"))
    create("ownerless")
    assert info(user="nobody") == []
    assert [app["client_id"] for app in info(user="")] == ["ownerless"]


def test_an_ambiguous_owner_is_refused_as_oauth_application_refuses_it():
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    first = users.create_user("first")
    users.create_user(str(first.pk))  # its username is the primary key of `first`
    core = side()[0]
    with pytest.raises(core.OperationError, match="ambiguous"):
        info(user=str(first.pk))
    assert info(user=str(first.pk), user_lookup="username") == []


@pytest.mark.parametrize("sources, matches", [(["manual"], True), (["manual", "dcr"], True), (["dcr", "cimd"], False)])
def test_a_model_without_registration_source_counts_every_application_as_manual(sources, matches):
    """DOT before 3.4 has no such field; Django's Group model stands in for its application model here."""
    from django.contrib.auth.models import Group

    applications = side()[1]
    Group.objects.get_or_create(name="operators")
    condition = applications.registration_source_filter(Group, sources)
    assert Group.objects.filter(**condition).exists() is matches


def test_registration_source_filters_and_is_returned_in_extra_fields():
    from oauth2_provider.models import get_application_model

    create("dynamic")
    get_application_model().objects.filter(client_id="dynamic").update(registration_source="dcr")
    (listed,) = info(registration_source=["dcr"])
    assert listed["extra_fields"]["registration_source"] == "dcr"
    assert info(registration_source=["manual"]) == []
