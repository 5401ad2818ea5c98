"""oauth_applications (a whole set in one transaction) and extra_fields, in-process against a real database.

The suite runs this file a second time per backend (--models custom-user) on a project whose application model is
swapped (swappedapp.PartnerApplication, with a field of its own) and whose user model logs in by email.
"""

import pytest

# Also on a user model that logs in by email and a swapped application model (--models custom-user).
pytestmark = pytest.mark.models("stock", "custom-user")


def side():
    from oauthops_django_side import _django_application_set, _django_applications, _django_core

    return _django_core, _django_applications, _django_application_set


def item(client_id, **options):
    declared = dict(
        client_id=client_id,
        state="present",
        update_secret="always",
        client_type="confidential",
        authorization_grant_type="client-credentials",
    )
    declared.update(options)
    return declared


def converge_set(applications, check_mode=False, database="default", no_log=True, **params):
    """oauth_applications' Django side; by default as a no_log task calls it (it may return generated secrets)."""
    core, _single, application_set = side()
    context = core.Context(database, check_mode, no_log)
    params["applications"] = applications
    result = application_set.run_applications(params, context)
    result["warnings"] = context.warnings
    return result


def converge_one(params, check_mode=False, database="default"):
    core, single, _set = side()
    return single.run_application(dict(item(params["client_id"]), **params), core.Context(database, check_mode, no_log=True))


def refused_set(applications, **params):
    core = side()[0]
    with pytest.raises(core.OperationError) as raised:
        converge_set(applications, **params)
    assert "\n" not in raised.value.message
    return raised.value


def model():
    from oauth2_provider.models import get_application_model

    return get_application_model()


def snapshot():
    """Every stored application, every column: what "nothing changed" compares."""
    return sorted(
        (tuple(sorted((k, str(v)) for k, v in row.items())) for row in model().objects.values()), key=str
    )


def by_id(result):
    return dict((entry["client_id"], entry) for entry in result["results"])


@pytest.mark.real_hasher
def test_the_set_converges_once_and_then_is_unchanged():
    declared = [item("a", name="A"), item("b", client_secret="b-secret-1"), item("c", state="absent")]
    first = converge_set(declared)
    assert first["changed"] is True
    assert first["counts"] == {"created": 2, "updated": 0, "deleted": 0, "unchanged": 1}
    assert [entry["action"] for entry in first["results"]] == ["created", "created", "unchanged"]
    assert "client_secret" in by_id(first)["a"] and "client_secret" not in by_id(first)["b"]
    assert by_id(first)["a"]["application"]["name"] == "A"
    assert "client_secret" not in by_id(first)["a"]["application"]

    again = converge_set(declared)
    assert again["changed"] is False and again["diff"] == []
    assert again["counts"] == {"created": 0, "updated": 0, "deleted": 0, "unchanged": 3}
    assert all("client_secret" not in entry for entry in again["results"])

    changed = converge_set([item("a", name="A2"), item("b", client_secret="b-secret-1")])
    assert [entry["action"] for entry in changed["results"]] == ["updated", "unchanged"]
    assert [diff["before_header"] for diff in changed["diff"]] == ["a"]
    assert changed["diff"][0]["before"]["name"] == "A" and changed["diff"][0]["after"]["name"] == "A2"


def test_one_bad_item_names_every_failure_and_changes_nothing():
    converge_set([item("keep", name="Kept")])
    before = snapshot()
    error = refused_set(
        [
            item("new-1"),
            item("keep", name="Renamed"),
            item("bad-uri", authorization_grant_type="authorization-code", redirect_uris=["ftp://x.example/cb"]),
            item("bad-user", user="nobody-by-that-name"),
            item("new-2"),
        ]
    )
    assert error.message.startswith("2 of 5 applications failed, nothing changed: ")
    assert "applications[2] (client_id 'bad-uri'): redirect_uris: " in error.message
    assert "applications[3] (client_id 'bad-user'): user 'nobody-by-that-name' does not exist" in error.message
    assert set(error.fields) == {"bad-uri", "bad-user"}
    assert "redirect_uris" in error.fields["bad-uri"]
    assert snapshot() == before


def test_a_client_id_declared_twice_is_refused():
    error = refused_set([item("twice"), item("once"), item("twice", name="Other")])
    assert error.message == "client_id 'twice' is declared 2 times (applications 0, 2)"
    assert not model().objects.exists()


def test_a_write_that_fails_midway_undoes_the_whole_set():
    """A project's signal handler that fails on the third save: the first two saves are undone too."""
    from django.db import IntegrityError
    from django.db.models.signals import pre_save

    converge_set([item("old", name="Old")])
    before = snapshot()

    def refuse_third(sender, instance, **kwargs):
        if instance.client_id == "third":
            raise IntegrityError("a project's constraint refused 'third'")

    pre_save.connect(refuse_third, sender=model())
    try:
        error = refused_set(
            [item("first"), item("old", name="Renamed"), item("third"), item("fourth")],
            exclusive=True,
        )
    finally:
        pre_save.disconnect(refuse_third, sender=model())
    assert error.kind == "database"
    assert error.message.startswith("applications[2] (client_id 'third'): database error (IntegrityError): ")
    assert error.message.endswith("; nothing changed")
    assert snapshot() == before


def token_models():
    """DOT's token and grant models, and the test project's models pointing at access tokens."""
    from oauth2_provider import models
    from testapp.models import TokenAudit, TokenSession

    dot = [models.get_access_token_model(), models.get_refresh_token_model(), models.get_id_token_model()]
    return dot + [models.get_grant_model(), TokenAudit, TokenSession]


def give_tokens(client_id, database="default"):
    """An access token with its refresh token and a project row pointing at it: what a delete cascades into."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from oauth2_provider.models import get_access_token_model, get_refresh_token_model
    from testapp.models import TokenAudit

    application = model()._default_manager.using(database).get(client_id=client_id)
    user = get_user_model()._default_manager.db_manager(database).create_user("owner-of-%s@example.com" % client_id)
    access = get_access_token_model()(
        user=user, application=application, token="at-" + client_id, expires=timezone.now(), scope="read"
    )
    access.save(using=database)
    get_refresh_token_model()(user=user, application=application, token="rt-" + client_id, access_token=access).save(
        using=database
    )
    TokenAudit(access_token=access, note=client_id).save(using=database)


def stored(database):
    """Every row of the application table and of the token tables a delete reaches, on `database`."""
    tables = {}
    for stored_model in [model()] + token_models():
        rows = stored_model._default_manager.using(database).values()
        tables[stored_model._meta.db_table] = sorted((tuple(sorted((k, str(v)) for k, v in row.items())) for row in rows))
    return tables


def test_the_tables_a_delete_writes_come_from_the_model_metadata():
    """DOT's token and grant tables, and the project's tables pointing at tokens (CASCADE and SET_NULL)."""
    from django.contrib.auth import get_user_model

    tables = side()[1].tables_a_delete_writes(model())
    assert tables == sorted([model()._meta.db_table] + [each._meta.db_table for each in token_models()])
    assert get_user_model()._meta.db_table not in tables


@pytest.fixture(scope="module")
def myisam_database():
    """A second database on the MariaDB server, migrated with MyISAM as the default storage engine (the
    settings' init_command, as a project migrated that way has it), under the alias "myisam"."""
    from django.core.management import call_command
    from django.db import connection, connections

    if connection.vendor != "mysql":
        pytest.skip("MyISAM is a MySQL/MariaDB storage engine; the backend is %s" % connection.vendor)
    import dbservers

    server = dbservers.discover("mysql")
    name = server.create_database("myisam")
    options = dict(connection.settings_dict["OPTIONS"], init_command="SET default_storage_engine=MyISAM")
    connections.settings["myisam"] = dict(connection.settings_dict, NAME=name, OPTIONS=options)
    try:
        call_command("migrate", database="myisam", verbosity=0)
        yield "myisam"
    finally:
        connections["myisam"].close()
        del connections["myisam"]
        del connections.settings["myisam"]
        server.drop_database(name)


@pytest.fixture
def myisam(myisam_database):
    from django.contrib.auth import get_user_model

    yield myisam_database
    model()._default_manager.using(myisam_database).all().delete()
    get_user_model()._default_manager.using(myisam_database).all().delete()


def engine_of(table, database):
    from django.db import connections

    with connections[database].cursor() as cursor:
        cursor.execute(
            "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s", [table]
        )
        return cursor.fetchone()[0]


@pytest.mark.parametrize("tables", ["transactional", "MyISAM"])
def test_a_set_that_fails_midway_is_undone_or_refused_before_any_write(tables, request):
    """On tables that roll back, a failure midway undoes the set; on MyISAM nothing could undo it (the audit saw
    three applications gone under "nothing changed"), so the set is refused before its first write."""
    from django.db import IntegrityError, connection
    from django.db.models.signals import pre_save

    database = request.getfixturevalue("myisam") if tables == "MyISAM" else "default"
    if connection.vendor == "mysql":
        assert engine_of(model()._meta.db_table, database) == ("MyISAM" if tables == "MyISAM" else "InnoDB")
    for client_id in ("old", "gone"):
        # Saved directly: on MyISAM the modules refuse to write at all.
        application = model()(client_id=client_id, client_type="confidential", authorization_grant_type="password")
        application.save(using=database)
    give_tokens("gone", database)
    before = stored(database)
    assert before[token_models()[0]._meta.db_table], "no token to cascade into"

    def refuse_third(sender, instance, **kwargs):
        if instance.client_id == "third":
            raise IntegrityError("a project's constraint refused 'third'")

    pre_save.connect(refuse_third, sender=model())
    try:
        error = refused_set(
            [item("first"), item("old", name="Renamed"), item("third")], exclusive=True, database=database
        )
    finally:
        pre_save.disconnect(refuse_third, sender=model())
    assert stored(database) == before
    if tables == "MyISAM":
        listed = ", ".join("%s (MyISAM)" % table for table in side()[1].tables_a_delete_writes(model()))
        assert (error.kind, error.message) == (
            "unsupported",
            "refusing to write: tables %s cannot roll back a failed set; convert them (ALTER TABLE <table> "
            "ENGINE=InnoDB)" % listed,
        )
    else:
        assert error.kind == "database"
        assert error.message.startswith("applications[2] (client_id 'third'): database error (IntegrityError): ")


def test_only_the_tables_a_write_touches_must_roll_back(myisam):
    """The application table converted to InnoDB, the token tables still MyISAM: creates and updates write only
    the application table and go ahead; a deletion cascades into the token tables and is refused, in either
    module, naming those tables. Check mode writes nothing: it predicts, and warns of the refusal."""
    from django.db import connections

    application_table = model()._meta.db_table
    token_tables = [table for table in side()[1].tables_a_delete_writes(model()) if table != application_table]
    with connections[myisam].cursor() as cursor:
        cursor.execute("ALTER TABLE %s ENGINE=InnoDB" % application_table)
    try:
        assert engine_of(application_table, myisam) == "InnoDB"
        created = converge_set([item("kept"), item("gone", name="Gone")], database=myisam)
        assert created["counts"]["created"] == 2
        give_tokens("gone", myisam)
        before = stored(myisam)

        listed = ", ".join("%s (MyISAM)" % table for table in token_tables)
        reason = "tables %s cannot roll back a failed %%s; convert them (ALTER TABLE <table> ENGINE=InnoDB)" % listed
        error = refused_set([item("kept", name="Kept")], exclusive=True, database=myisam)
        assert error.message == "refusing to write: " + reason % "set"
        predicted = converge_set([item("kept", name="Kept")], exclusive=True, database=myisam, check_mode=True)
        assert predicted["counts"] == {"created": 0, "updated": 1, "deleted": 1, "unchanged": 0}
        assert predicted["warnings"] == ["check mode: a real run would refuse to write: " + reason % "set"]

        core = side()[0]
        with pytest.raises(core.OperationError) as single:
            converge_one(dict(client_id="gone", state="absent"), database=myisam)
        assert single.value.message == "refusing to write: " + reason % "write"
        assert stored(myisam) == before

        assert converge_one(dict(client_id="kept", name="Kept"), database=myisam)["action"] == "updated"
    finally:
        with connections[myisam].cursor() as cursor:
            cursor.execute("ALTER TABLE %s ENGINE=MyISAM" % application_table)


def test_a_single_write_to_a_myisam_application_table_is_refused(myisam):
    application_table = model()._meta.db_table
    core = side()[0]
    with pytest.raises(core.OperationError) as raised:
        converge_one(dict(client_id="new"), database=myisam)
    assert raised.value.message == (
        "refusing to write: table %s uses MyISAM, which cannot roll back a failed write; convert it "
        "(ALTER TABLE %s ENGINE=InnoDB)" % (application_table, application_table)
    )
    assert not model()._default_manager.using(myisam).exists()


def register(client_id, source):
    """An application registered another way than by an operator (dynamic registration, CIMD)."""
    instance = model()(
        client_id=client_id, client_type="public", authorization_grant_type="client-credentials", name=client_id
    )
    instance.registration_source = source
    instance.save()


def test_exclusive_deletes_only_undeclared_operator_registered_applications():
    converge_set([item("shop-web"), item("shop-old"), item("billing")])
    register("dcr-client", "dcr")
    register("cimd-client", "cimd")

    planned = converge_set([item("shop-web")], check_mode=True, exclusive=True)
    assert sorted(entry["client_id"] for entry in planned["results"] if entry["action"] == "deleted") == [
        "billing",
        "shop-old",
    ]
    assert [diff["before_header"] for diff in planned["diff"]] == ["billing", "shop-old"]
    assert all(diff["after"] == {} for diff in planned["diff"])
    assert planned["results"][0] == dict(planned["results"][0], client_id="shop-web", declared=True)
    assert [entry["declared"] for entry in planned["results"]] == [True, False, False]
    assert model().objects.count() == 5, "check mode deleted something"

    narrowed = converge_set([item("shop-web")], exclusive=True, exclusive_filter={"client_id": ["shop-*"]})
    assert narrowed["counts"]["deleted"] == 1
    assert sorted(model().objects.values_list("client_id", flat=True)) == [
        "billing",
        "cimd-client",
        "dcr-client",
        "shop-web",
    ]

    everything = converge_set(
        [item("shop-web")], exclusive=True, exclusive_filter={"registration_source": ["manual", "dcr"]}
    )
    assert sorted(entry["client_id"] for entry in everything["results"] if not entry["declared"]) == [
        "billing",
        "dcr-client",
    ]
    assert sorted(model().objects.values_list("client_id", flat=True)) == ["cimd-client", "shop-web"]


def test_exclusive_refuses_an_empty_list():
    """An empty list is most often a variable that did not load: it must not delete every application."""
    converge_set([item("a"), item("b")])
    before = snapshot()
    for check_mode in (True, False):
        error = refused_set([], exclusive=True, check_mode=check_mode)
        assert error.message.startswith("exclusive with an empty applications list would delete every eligible")
    assert snapshot() == before


@pytest.mark.parametrize("key", ["client_id", "registration_source"])
def test_exclusive_refuses_an_empty_list_in_its_filter(key):
    """`client_id: "{{ patterns }}"` with patterns [] once deleted every manual application: an empty filter list
    is far more often a variable that did not load than a wish, in any key of the filter."""
    converge_set([item("shop-web"), item("shop-old"), item("billing")])
    before = snapshot()
    for check_mode in (True, False):
        error = refused_set([item("shop-web")], exclusive=True, exclusive_filter={key: []}, check_mode=check_mode)
        assert error.message == (
            "exclusive_filter.%s is an empty list, most often a variable that did not load; list what exclusive may "
            "delete, or leave the key out for its default" % key
        )
    assert snapshot() == before
    # Without exclusive the filter is not used, so it is not read either.
    assert converge_set([item("shop-web")], exclusive_filter={key: []})["changed"] is False


def test_exclusive_refuses_a_set_with_only_absent_items():
    """Nothing declared present: exclusive mode would delete every eligible application besides the absent ones."""
    converge_set([item("a"), item("b"), item("c")])
    before = snapshot()
    for check_mode in (True, False):
        error = refused_set([item("a", state="absent")], exclusive=True, check_mode=check_mode)
        assert error.message == (
            "exclusive with no item in state present would delete every eligible application; declare the "
            "applications to keep, or leave exclusive out to delete only the absent ones"
        )
    assert snapshot() == before
    deleted = converge_set([item("a", state="absent")])
    assert deleted["counts"]["deleted"] == 1 and model().objects.count() == 2


def test_exclusive_is_off_by_default():
    converge_set([item("a"), item("b")])
    result = converge_set([item("a")])
    assert result["counts"]["deleted"] == 0 and model().objects.count() == 2


def test_check_mode_predicts_and_generates_no_secret(drawn_secrets):
    converge_set([item("rotated", client_secret="rotated-secret"), item("old", client_secret="old-secret")])
    before = snapshot()
    planned = converge_set(
        [item("new"), item("rotated", regenerate_secret=True)], check_mode=True, no_log=False, exclusive=True
    )
    assert planned["counts"] == {"created": 1, "updated": 1, "deleted": 1, "unchanged": 0}
    assert all("client_secret" not in entry for entry in planned["results"])
    assert drawn_secrets == []
    assert snapshot() == before


def test_a_set_without_no_log_is_refused_when_dot_would_generate_a_secret(drawn_secrets):
    """Refused before anything is written, naming every application whose secret DOT would generate; a set
    whose items declare their secrets needs no no_log, exclusive deletions included."""
    converge_set([item("keep", client_secret="keep-secret"), item("old", client_secret="old-secret")])
    before = snapshot()
    error = refused_set(
        [item("keep", client_secret="keep-secret"), item("new-1"), item("new-2", client_secret="new-2-secret"),
         item("old", regenerate_secret=True)],
        exclusive=True,
        no_log=False,
    )
    assert error.kind == "secret_in_sight"
    assert error.message.startswith(
        "refusing to write: DOT would generate the client secret of 'new-1', 'old', and this task is not no_log, "
    )
    assert snapshot() == before and drawn_secrets == []
    declared = converge_set(
        [item("keep", client_secret="keep-secret"), item("new-2", client_secret="new-2-secret")],
        exclusive=True,
        no_log=False,
    )
    assert declared["counts"] == {"created": 1, "updated": 0, "deleted": 1, "unchanged": 1}
    assert all("client_secret" not in entry for entry in declared["results"])


def test_extra_fields_set_a_field_dot_added_idempotently_with_a_diff():
    created = converge_one(dict(client_id="x", extra_fields={"registration_source": "dcr"}))
    assert created["application"]["extra_fields"]["registration_source"] == "dcr"
    assert model().objects.get(client_id="x").registration_source == "dcr"
    assert converge_one(dict(client_id="x", extra_fields={"registration_source": "dcr"}))["changed"] is False

    changed = converge_one(dict(client_id="x", extra_fields={"registration_source": "manual"}))
    assert changed["action"] == "updated"
    assert changed["diff"]["before"]["extra_fields"]["registration_source"] == "dcr"
    assert changed["diff"]["after"]["extra_fields"]["registration_source"] == "manual"


def test_extra_fields_convert_values_as_the_field_does():
    moment = "2026-11-29T10:00:00+00:00"
    created = converge_one(dict(client_id="x", extra_fields={"cimd_expires_at": moment}))
    assert created["application"]["extra_fields"]["cimd_expires_at"] == moment
    assert converge_one(dict(client_id="x", extra_fields={"cimd_expires_at": "2026-11-29 10:00:00Z"}))["changed"] is False
    assert converge_one(dict(client_id="x", extra_fields={"cimd_expires_at": None}))["changed"] is True


@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("colour", "blue", "extra_fields.colour: is not a field of "),
        ("name", "N", "extra_fields.name: is managed by the name option"),
        ("client_secret", "s3cret-value", "extra_fields.client_secret: is managed by the client_secret or regenerate_secret option"),
        ("user", 1, "extra_fields.user: is managed by the user option"),
        ("id", 5, "extra_fields.id: is set by Django itself"),
        ("created", "2026-01-01T00:00:00Z", "extra_fields.created: is set by Django itself"),
        ("cimd_expires_at", "yesterday", "extra_fields.cimd_expires_at: "),
        ("registration_source", "bogus", "registration_source: Value 'bogus' is not a valid choice."),
    ],
)
def test_extra_fields_refuse_what_they_may_not_set(name, value, reason):
    core = side()[0]
    converge_one(dict(client_id="x", name="Before"))
    before = snapshot()
    with pytest.raises(core.OperationError) as raised:
        converge_one(dict(client_id="x", extra_fields={name: value}))
    assert reason in raised.value.message
    assert "\n" not in raised.value.message and "s3cret-value" not in raised.value.message
    assert snapshot() == before


def test_extra_fields_refuse_a_relation():
    core = side()[0]
    reverse = model()._meta.related_objects[0].name
    with pytest.raises(core.OperationError) as raised:
        converge_one(dict(client_id="x", extra_fields={reverse: []}))
    assert raised.value.message == "extra_fields.%s: is a relation, which extra_fields does not set" % reverse
    assert not model().objects.exists()


def test_extra_fields_reach_a_swapped_models_own_field():
    """On swappedapp.PartnerApplication, partner_code is settable; on DOT's own model it is unknown."""
    swapped = model()._meta.label == "swappedapp.PartnerApplication"
    declared = dict(client_id="p", extra_fields={"partner_code": "P-42"})
    if not swapped:
        core = side()[0]
        with pytest.raises(core.OperationError) as raised:
            converge_one(declared)
        assert raised.value.message.startswith("extra_fields.partner_code: is not a field of oauth2_provider.Application")
        assert "registration_source" in raised.value.message
        return
    created = converge_set([item("p", extra_fields={"partner_code": "P-42"})])
    assert by_id(created)["p"]["application"]["extra_fields"]["partner_code"] == "P-42"
    assert model().objects.get(client_id="p").partner_code == "P-42"
    assert converge_set([item("p", extra_fields={"partner_code": "P-42"})])["changed"] is False
    too_long = refused_set([item("p", extra_fields={"partner_code": "P" * 21})])
    assert "applications[0] (client_id 'p'): partner_code: Ensure this value has at most 20 characters" in too_long.message


@pytest.mark.models("stock")
@pytest.mark.one_backend
def test_both_modules_document_actions_in_the_one_vocabulary():
    """oauth_application's `action` and oauth_applications' `results[].action` and `counts` use the same words,
    the Django side's ACTIONS (before issue 16 the single module said create/update/delete/none)."""
    import ast

    import yaml

    from provisioning import REPO

    def returned(module):
        tree = ast.parse((REPO / "plugins" / "modules" / module).read_text())
        text = next(node.value.value for node in tree.body if isinstance(node, ast.Assign) and node.targets[0].id == "RETURN")
        return yaml.safe_load(text)

    actions = list(side()[1].ACTIONS)
    assert returned("oauth_application.py")["action"]["choices"] == actions
    bulk = returned("oauth_applications.py")
    assert bulk["results"]["contains"]["action"]["choices"] == actions
    assert list(bulk["counts"]["sample"]) == actions
