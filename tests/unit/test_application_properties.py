"""Properties of the reconcile rule, over random declared sets (hypothesis), in-process against a real database.

Every example starts from a random stored state (a random set converged first), then checks that
  a. converging a random set twice leaves the second run unchanged and the database identical;
  b. check mode predicts the real run exactly (per item, counts, diff) and changes nothing;
  c. the bulk module (run_applications) and a loop of single-module calls (run_application) leave the
     same database and report the same per-item changed/action;
  d. a set with one invalid item changes nothing and names that item.

The specs are valid by construction (DOT 3.4.1's Application.clean(): a redirect URI for the
authorization-code, implicit and openid-hybrid grants; http/https redirect URIs; https origins without a
path; HS256 only for a confidential, non-implicit/hybrid client with a declared secret stored unhashed),
but options are sometimes omitted (None: not managed), so an item can still be refused for what the
stored row lacks (a new application without a client type, HS256 on a row whose secret is hashed ...).
Refusal is part of each property, not filtered out: every path refuses with the same message and
nothing changes.

Secrets are hashed with Django's MD5 hasher here (PBKDF2 takes a second per hash); the rule only asks
whether a value is a hash (identify_hasher) and whether a secret opens it (check_password), whichever
hasher made it.

A failure prints the falsifying example and a @reproduce_failure blob; `--hypothesis-seed=N` replays a
run. Hypothesis keeps no example database (database=None) and its other files go to a temporary
directory, so nothing is written into the checkout.
"""

import fnmatch

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from provisioning import application_spec

# Also on a user model that logs in by email and a swapped application model (--models custom-user).
pytestmark = pytest.mark.models("stock", "custom-user")

CLIENT_IDS = ("app-a", "app-b", "app-c", "app-d", "app-e")
SECRETS = ("first-declared-secret", "second-declared-secret", "third-declared-secret")
USERS = ("alice@example.com", "bob@example.com", "carol@example.com")
GRANTS = tuple(application_spec().GRANT_TYPES)
REDIRECT_GRANTS = ("authorization-code", "implicit", "openid-hybrid")
HS256_FORBIDDEN_GRANTS = ("implicit", "openid-hybrid")
HOSTS = ("app.example.com", "b.example.org", "localhost:8443")
PATHS = ("/cb", "/oauth/callback", "/return?to=home")
NAMES = ("", "Web", "Shop backend", "Caf\u00e9 \u2615")
SOURCES = ("manual", "dcr", "cimd")
# Options a declaration may leave out (None: the stored value is kept).
OMITTABLE = (
    "name",
    "client_type",
    "authorization_grant_type",
    "redirect_uris",
    "post_logout_redirect_uris",
    "allowed_origins",
    "user",
    "skip_authorization",
    "algorithm",
    "client_secret",
    "hash_client_secret",
    "extra_fields",
)
PROPERTY_SETTINGS = dict(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# The modules' own argument spec, so a declaration here is the dict AnsibleModule hands over.
ARGUMENT_SPEC = application_spec().application_argument_spec()


def side():
    from oauthops_django_side import _django_application_set, _django_applications, _django_core

    return _django_core, _django_applications, _django_application_set


def model():
    from oauth2_provider.models import get_application_model

    return get_application_model()


def has_field(name):
    return any(field.name == name for field in model()._meta.concrete_fields)


@pytest.fixture(scope="module", autouse=True)
def fast_storage(tmp_path_factory):
    """A fast hasher, and on SQLite no fsync per commit (each example commits a dozen times); hypothesis'
    own files (its cache of constants) in a temporary directory, not in the checkout."""
    from django.db import connection
    from django.test import override_settings
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous = OFF")
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous = FULL")


# ---------------------------------------------------------------------------------------------------
# Strategies. A declaration holds user references as ("name"|"pk", user, lookup, as_int), resolved to the
# user's USERNAME_FIELD or primary key once the example's users exist.

uris = st.builds("{}://{}{}".format, st.sampled_from(("http", "https")), st.sampled_from(HOSTS), st.sampled_from(PATHS))
origins = st.builds("https://{}".format, st.sampled_from(HOSTS))
user_references = st.one_of(
    st.just(""),
    st.tuples(st.just("name"), st.sampled_from(USERS), st.sampled_from(("auto", "username")), st.just(False)),
    st.tuples(st.just("pk"), st.sampled_from(USERS), st.sampled_from(("auto", "pk")), st.booleans()),
)


@st.composite
def applications(draw, client_id, partial=True, regenerate=True):
    """One declaration: coherent as a whole; with `partial`, options are sometimes left out or absent."""
    if partial and draw(st.integers(0, 9)) == 0:
        return {"client_id": client_id, "state": "absent"}
    client_type = draw(st.sampled_from(("confidential", "public")))
    grant = draw(st.sampled_from(GRANTS))
    secret_kind = draw(st.sampled_from(("declared", "generated", "regenerate") if regenerate else ("declared", "generated")))
    client_secret = draw(st.sampled_from(SECRETS)) if secret_kind == "declared" else None
    hash_client_secret = draw(st.booleans())
    algorithms = ["none", "RS256"]
    if client_type == "confidential" and grant not in HS256_FORBIDDEN_GRANTS and client_secret is not None:
        algorithms.append("HS256")
    algorithm = draw(st.sampled_from(algorithms))
    if algorithm == "HS256":
        hash_client_secret = False
    declared = {
        "client_id": client_id,
        "name": draw(st.sampled_from(NAMES)),
        "client_type": client_type,
        "authorization_grant_type": grant,
        "redirect_uris": draw(st.lists(uris, min_size=1 if grant in REDIRECT_GRANTS else 0, max_size=2)),
        "post_logout_redirect_uris": draw(st.lists(uris, max_size=2)),
        "allowed_origins": draw(st.lists(origins, max_size=2)),
        "user": draw(user_references),
        "skip_authorization": draw(st.booleans()),
        "algorithm": algorithm,
        "client_secret": client_secret,
        "hash_client_secret": hash_client_secret,
        "update_secret": draw(st.sampled_from(("always", "always", "always", "on_create"))),
        "regenerate_secret": secret_kind == "regenerate",
        "extra_fields": draw(
            st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {"registration_source": st.sampled_from(SOURCES)},
                    optional={"partner_code": st.sampled_from(("", "P-1", "P-2"))},
                ),
            )
        ),
    }
    if partial and draw(st.booleans()):
        # Leave some options out; the client type and grant more rarely (a new application needs them).
        for option in OMITTABLE:
            rare = option in ("client_type", "authorization_grant_type")
            if draw(st.integers(0, 9)) < (1 if rare else 3):
                declared[option] = None
    return declared


@st.composite
def declared_sets(draw, partial=True, regenerate=True, max_size=5):
    """A set of declarations with distinct client_ids from a small pool, so that they meet stored rows."""
    client_ids = draw(st.lists(st.sampled_from(CLIENT_IDS), unique=True, max_size=max_size))
    return [draw(applications(client_id, partial, regenerate)) for client_id in client_ids]


exclusive_options = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {
            "exclusive": st.just(True),
            "exclusive_filter": st.fixed_dictionaries(
                {
                    "registration_source": st.sampled_from((["manual"], ["manual", "dcr"], ["manual", "dcr", "cimd"])),
                    "client_id": st.sampled_from((None, ["app-[abc]"], ["app-d", "app-e*"])),
                }
            ),
        }
    ),
)
# The start state: a set converged without omissions (always valid), so rows of every kind exist.
start_sets = declared_sets(partial=False, regenerate=False)


# ---------------------------------------------------------------------------------------------------
# Running the module's Django side.


def reset_tables():
    """Examples share the test's fixtures: each starts from empty tables and fresh users."""
    from django.contrib.auth import get_user_model

    model().objects.all().delete()
    users = get_user_model()
    users.objects.all().delete()
    return dict((name, users.objects.create_user(name)) for name in USERS)


def materialize(declared, users):
    """The dict AnsibleModule makes of a declaration: every option, its default or None when not given."""
    params = dict((name, option.get("default")) for name, option in ARGUMENT_SPEC.items())
    for name, value in declared.items():
        if value is not None:
            params[name] = value
    reference = params["user"]
    if isinstance(reference, tuple):
        kind, name, lookup, as_int = reference
        user = users[name]
        params["user"] = user.get_username() if kind == "name" else (user.pk if as_int else str(user.pk))
        params["user_lookup"] = lookup
    extra = params["extra_fields"]
    if extra and "partner_code" in extra and not has_field("partner_code"):
        params["extra_fields"] = dict((key, value) for key, value in extra.items() if key != "partner_code")
    return params


def run_set(items, users, check_mode=False, **options):
    """run_applications() as the bulk module calls it: its result, or the OperationError it raised."""
    core, _single, application_set = side()
    params = {
        "applications": [materialize(item, users) for item in items],
        "exclusive": options.get("exclusive", False),
        "exclusive_filter": options.get("exclusive_filter", {"registration_source": ["manual"], "client_id": None}),
    }
    try:
        return application_set.run_applications(params, core.Context("default", check_mode, no_log=True))
    except core.OperationError as exc:
        assert "\n" not in exc.message
        return exc


def run_one(item, users, check_mode=False):
    core, single, _set = side()
    try:
        return single.run_application(materialize(item, users), core.Context("default", check_mode, no_log=True))
    except core.OperationError as exc:
        return exc


def refused(result):
    return not isinstance(result, dict)


def start_from(start, users):
    """Converge the start set; it is valid by construction, so a refusal is itself a failure."""
    result = run_set(start, users)
    assert not refused(result), "the start set was refused: %s" % result.message
    return result


def snapshot():
    """Every column of every stored application: what "nothing changed" and "identical" compare."""
    return [dict(row) for row in model().objects.order_by("client_id").values()]


def without_identity(application):
    if application is None:
        return None
    return dict((key, value) for key, value in application.items() if key not in ("id", "created", "updated"))


def comparable(result):
    """A bulk result without what differs by nature between two runs (timestamps, primary keys, secrets)."""
    return {
        "changed": result["changed"],
        "counts": result["counts"],
        "results": [
            dict(
                (key, without_identity(value) if key == "application" else value)
                for key, value in entry.items()
                if key != "client_secret"
            )
            for entry in result["results"]
        ],
        "diff": result["diff"],
    }


def secret_fingerprint(stored, known, generated):
    """How a stored secret behaves: hashed or plain, and which of the secrets known opens it."""
    from django.contrib.auth.hashers import check_password

    hashed = side()[1]._is_hashed(stored)
    if generated is not None:
        return ("generated", hashed, check_password(generated, stored) if hashed else stored == generated)
    if hashed:
        return ("hashed", tuple(secret for secret in known if check_password(secret, stored)))
    return ("plain", stored if stored in known else "<other>")


def outcome(known, generated):
    """The stored applications as both paths must leave them: every column but the primary key and the
    timestamps, and the secret by how it verifies rather than by its (salted or generated) value."""
    rows = []
    for row in snapshot():
        row = dict(row)
        for column in ("id", "created", "updated"):
            row.pop(column)
        row["client_secret"] = secret_fingerprint(row["client_secret"], known, generated.get(row["client_id"]))
        rows.append(row)
    return rows


def generated_secrets(results):
    return dict((entry["client_id"], entry["client_secret"]) for entry in results if "client_secret" in entry)


# ---------------------------------------------------------------------------------------------------
# Properties.


@settings(max_examples=60, **PROPERTY_SETTINGS)
@given(start=start_sets, declared=declared_sets(regenerate=False), options=exclusive_options)
def test_converging_twice_leaves_the_second_run_unchanged(start, declared, options):
    users = reset_tables()
    start_from(start, users)
    before = snapshot()
    first = run_set(declared, users, **options)
    if refused(first):
        event("refused")
        assert snapshot() == before, "a refused set changed the database"
        again = run_set(declared, users, **options)
        assert refused(again) and again.message == first.message
        return
    event("converged")
    stored = snapshot()
    second = run_set(declared, users, **options)
    assert not refused(second), second.message
    note("second run: %r" % (second,))
    assert second["changed"] is False
    assert [(entry["client_id"], entry["changed"], entry["action"]) for entry in second["results"]] == [
        (item["client_id"], False, "unchanged") for item in declared
    ]
    assert second["counts"] == {"created": 0, "updated": 0, "deleted": 0, "unchanged": len(declared)}
    assert second["diff"] == []
    assert snapshot() == stored, "an unchanged run wrote to the database"


@settings(max_examples=60, **PROPERTY_SETTINGS)
@given(start=start_sets, declared=declared_sets(), options=exclusive_options)
def test_check_mode_predicts_the_real_run_exactly(start, declared, options):
    users = reset_tables()
    start_from(start, users)
    before = snapshot()
    predicted = run_set(declared, users, check_mode=True, **options)
    assert snapshot() == before, "check mode changed the database"
    real = run_set(declared, users, **options)
    if refused(predicted) or refused(real):
        event("refused")
        assert refused(predicted) and refused(real), "only one of check mode and the real run refused: %r, %r" % (
            predicted,
            real,
        )
        assert (predicted.kind, predicted.message) == (real.kind, real.message)
        assert snapshot() == before, "a refused set changed the database"
        return
    event("converged, %s" % ("changed" if real["changed"] else "unchanged"))
    assert "client_secret" not in str([sorted(entry) for entry in predicted["results"]])
    assert comparable(predicted) == comparable(real)


def loop_of_single_calls(declared, users, options, start_rows):
    """What a loop of oauth_application tasks does: each declared item in order, the play stopping at the
    first failure; exclusive mode's deletions as state=absent for each undeclared, eligible application."""
    results = []
    items = list(declared)
    if options.get("exclusive"):
        chosen = options["exclusive_filter"]
        names = set(item["client_id"] for item in declared)
        for row in start_rows:
            if row["client_id"] in names or row["registration_source"] not in chosen["registration_source"]:
                continue
            patterns = chosen["client_id"]
            if patterns and not any(fnmatch.fnmatchcase(row["client_id"], pattern) for pattern in patterns):
                continue
            items.append({"client_id": row["client_id"], "state": "absent"})
    for position, item in enumerate(items):
        result = run_one(item, users)
        if refused(result):
            return results, (position, result)
        results.append(
            dict(client_id=item["client_id"], changed=result["changed"], action=result["action"], raw=result)
        )
    return results, None


class Rollback(Exception):
    """Leaves a transaction.atomic() block undoing everything done in it."""


@settings(max_examples=50, **PROPERTY_SETTINGS)
@given(start=start_sets, declared=declared_sets(), options=exclusive_options)
def test_the_bulk_module_and_a_loop_of_single_calls_agree(start, declared, options):
    from django.db import transaction

    users = reset_tables()
    started = start_from(start, users)
    known = SECRETS + tuple(generated_secrets(started["results"]).values())
    start_rows = snapshot()

    # The bulk run, undone afterwards, so the loop starts from the very same rows (and secrets).
    try:
        with transaction.atomic():
            bulk = run_set(declared, users, **options)
            if refused(bulk):
                assert snapshot() == start_rows, "a refused set changed the database"
            else:
                bulk_rows = outcome(known, generated_secrets(bulk["results"]))
            raise Rollback
    except Rollback:
        pass
    assert snapshot() == start_rows

    if options.get("exclusive") and not any(item.get("state") != "absent" for item in declared):
        # A refusal of the set as a whole, which a loop of single calls has no counterpart for.
        event("refused: exclusive with nothing declared present")
        assert refused(bulk)
        assert bulk.message.startswith(
            "exclusive with an empty applications list " if not declared else "exclusive with no item in state present "
        )
        return
    loop, failure = loop_of_single_calls(declared, users, options, start_rows)
    if refused(bulk):
        event("refused")
        assert failure is not None, "the bulk module refused (%s) and the loop did not" % bulk.message
        position, error = failure
        # The loop stops at the first bad item; the bulk module names every bad item, that one first.
        first_named = "failed, nothing changed: applications[%d] (client_id %r): %s" % (
            position,
            declared[position]["client_id"],
            error.message,
        )
        assert first_named in bulk.message, "%r vs %r" % (error.message, bulk.message)
        return
    assert failure is None, "the loop failed at item %d (%s) and the bulk module did not" % (
        failure[0],
        failure[1].message,
    )
    event("converged")
    assert [(entry["client_id"], entry["changed"], entry["action"]) for entry in bulk["results"]] == [
        (entry["client_id"], entry["changed"], entry["action"]) for entry in loop
    ]
    assert [without_identity(entry["application"]) for entry in bulk["results"]] == [
        without_identity(entry["raw"]["application"]) for entry in loop
    ]
    loop_generated = dict(
        (entry["client_id"], entry["raw"]["client_secret"]) for entry in loop if "client_secret" in entry["raw"]
    )
    assert sorted(loop_generated) == sorted(generated_secrets(bulk["results"]))
    assert outcome(known, loop_generated) == bulk_rows


INVALID_ITEMS = (
    ("redirect_uris", {"authorization_grant_type": "authorization-code", "redirect_uris": ["ftp://app.example.com/cb"]}),
    ("redirect_uris", {"authorization_grant_type": "implicit", "redirect_uris": []}),
    ("redirect_uris", {"redirect_uris": ["https://a.example.com/cb https://b.example.com/cb"]}),
    ("allowed_origins", {"allowed_origins": ["https://app.example.com/path"]}),
    ("algorithm", {"client_type": "public", "algorithm": "HS256", "client_secret": SECRETS[0], "hash_client_secret": False}),
    ("client_secret", {"client_secret": ""}),
    ("extra_fields.colour", {"extra_fields": {"colour": "blue"}}),
    ("registration_source", {"extra_fields": {"registration_source": "bogus"}}),
    ("user", {"user": "nobody@example.com"}),
)


@settings(max_examples=30, **PROPERTY_SETTINGS)
@given(
    start=start_sets,
    declared=declared_sets(partial=False, regenerate=False, max_size=4),
    invalid=st.sampled_from(INVALID_ITEMS),
    where=st.integers(0, 4),
    check_mode=st.booleans(),
    options=exclusive_options,
)
def test_a_set_with_one_invalid_item_changes_nothing(start, declared, invalid, where, check_mode, options):
    users = reset_tables()
    start_from(start, users)
    before = snapshot()
    field, change = invalid
    # The invalid item: a valid declaration of an unused client_id, with one thing wrong.
    client_id = "bad-item"
    base = {
        "client_id": client_id,
        "client_type": "confidential",
        "authorization_grant_type": "client-credentials",
    }
    base.update(change)
    position = min(where, len(declared))
    declared = declared[:position] + [base] + declared[position:]
    result = run_set(declared, users, check_mode=check_mode, **options)
    assert refused(result), "a set with an invalid item was not refused"
    assert "applications[%d] (client_id %r): " % (position, client_id) in result.message
    assert field in result.message or field in str(result.fields), result.message
    assert snapshot() == before, "a refused set changed the database"
