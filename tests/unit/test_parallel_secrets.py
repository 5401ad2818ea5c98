"""Client secrets verified and hashed in parallel (oauth_applications' hash_threads), in-process against a real
database: concurrency, results identical to one secret at a time, writes on the main thread, renewed hashes.

Concurrency is shown with a hasher of this file (registered through PASSWORD_HASHERS) whose every hash sleeps:
sleeping releases the GIL as PBKDF2's C code does, but costs no CPU, so N hashes with T threads take about
ceil(N / T) sleeps on a busy shared machine too, against N sleeps one at a time. The tests name hash_threads (or
ask the host's CPU count), so the expectation does not depend on the machine.
"""

import hashlib
import json
import os
import threading
import time

import pytest

from test_application_set import by_id, converge_set, item, model, refused_set, snapshot

DELAY = 0.4  # seconds per hash of the sleeping hasher


class Record:
    """What the sleeping hasher did: each call (what, thread name), and the most calls that ran at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []
        self.running = 0
        self.most_at_once = 0

    def reset(self):
        with self.lock:
            self.calls, self.running, self.most_at_once = [], 0, 0

    def enter(self, what):
        with self.lock:
            self.calls.append((what, threading.current_thread().name))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)

    def leave(self):
        with self.lock:
            self.running -= 1

    def count(self, what):
        return sum(1 for done, _thread in self.calls if done == what)

    def threads(self):
        return set(thread for _done, thread in self.calls)


RECORD = Record()


def digest(secret, salt):
    return hashlib.sha256((salt + "$" + secret).encode()).hexdigest()


def sleeping_hash(secret, salt="fixedsalt"):
    """What SleepingHasher stores for `secret`, made without sleeping (to seed rows)."""
    return "sleeping$%s$%s" % (salt, digest(secret, salt))


class SleepingHasher:
    """A password hasher whose every hash sleeps DELAY seconds. A secret starting "raise:" makes it fail."""

    algorithm = "sleeping"

    def __init__(self):
        from django.contrib.auth.hashers import BasePasswordHasher

        self._base = BasePasswordHasher()

    def salt(self):
        return self._base.salt()

    def _hash(self, what, secret, salt):
        RECORD.enter(what)
        try:
            time.sleep(DELAY)
            if secret.startswith("raise:"):
                raise ValueError("the sleeping hasher refuses %s" % secret)
            return digest(secret, salt)
        finally:
            RECORD.leave()

    def encode(self, password, salt):
        return "sleeping$%s$%s" % (salt, self._hash("hash", password, salt))

    def decode(self, encoded):
        algorithm, salt, hashed = encoded.split("$", 2)
        return {"algorithm": algorithm, "salt": salt, "hash": hashed}

    def verify(self, password, encoded):
        decoded = self.decode(encoded)
        return self._hash("verify", password, decoded["salt"]) == decoded["hash"]

    def safe_summary(self, encoded):
        return {"algorithm": self.algorithm}

    def must_update(self, encoded):
        return False

    def harden_runtime(self, password, encoded):
        pass


@pytest.fixture
def sleeping_hasher():
    """The sleeping hasher first in PASSWORD_HASHERS (so DOT hashes new secrets with it), the session's after it."""
    from django.conf import settings
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=[__name__ + ".SleepingHasher"] + list(settings.PASSWORD_HASHERS)):
        RECORD.reset()
        yield RECORD


def seed(client_ids, secret_of, **fields):
    """Rows saved directly, their secrets already hashed (DOT keeps a hash as it is)."""
    for client_id in client_ids:
        application = model()(
            client_id=client_id,
            client_type="confidential",
            authorization_grant_type="client-credentials",
            client_secret=secret_of(client_id),
            **fields
        )
        application.save()


def timed_set(applications, **params):
    start = time.monotonic()
    result = converge_set(applications, **params)
    return result, time.monotonic() - start


def declared(count, prefix="app"):
    return ["%s-%d" % (prefix, number) for number in range(count)]


@pytest.mark.parametrize("check_mode", [False, True], ids=["real", "check"])
def test_declared_secrets_are_verified_hash_threads_at_once(sleeping_hasher, check_mode):
    """Eight unchanged applications declaring their secrets (all the same secret and hash, so nothing but the
    pool could make it faster), four threads: two sleeps, not eight; in check mode too, which says the same."""
    ids = declared(8)
    seed(ids, lambda client_id: sleeping_hash("one secret for all"))
    applications = [item(client_id, client_secret="one secret for all") for client_id in ids]

    result, seconds = timed_set(applications, hash_threads=4, check_mode=check_mode)

    assert result["counts"] == {"created": 0, "updated": 0, "deleted": 0, "unchanged": 8}
    assert sleeping_hasher.count("verify") == 8, "one verification per declared secret, none skipped or cached"
    assert sleeping_hasher.most_at_once == 4
    assert threading.current_thread().name not in sleeping_hasher.threads()
    assert 2 * DELAY <= seconds < 4 * DELAY, "8 verifications by 4 threads took %.2f s" % seconds


def test_one_thread_verifies_one_secret_at_a_time(sleeping_hasher):
    ids = declared(4)
    seed(ids, lambda client_id: sleeping_hash("s-" + client_id))

    result, seconds = timed_set([item(client_id, client_secret="s-" + client_id) for client_id in ids], hash_threads=1)

    assert result["changed"] is False
    assert (sleeping_hasher.count("verify"), sleeping_hasher.most_at_once) == (4, 1)
    assert seconds >= 4 * DELAY


def test_the_pool_defaults_to_the_cpus_the_django_side_may_use(sleeping_hasher):
    from oauthops_django_side import _django_secrets

    cpus = _django_secrets.available_cpus()
    ids = declared(2 * cpus)
    seed(ids, lambda client_id: sleeping_hash("s-" + client_id))

    result, seconds = timed_set([item(client_id, client_secret="s-" + client_id) for client_id in ids])

    assert result["changed"] is False
    assert sleeping_hasher.most_at_once == cpus
    assert 2 * DELAY <= seconds < (2 + min(cpus, 2)) * DELAY
    # The count the Linux scheduler lets this process use (taskset, cpusets), not the host's.
    assert cpus == len(os.sched_getaffinity(0))


def test_secrets_to_store_are_hashed_hash_threads_at_once_and_written_on_the_main_thread(sleeping_hasher):
    """Creates with declared secrets, changed secrets and rotations: every hash in the pool, before the first
    write; every save on the thread that holds the transaction."""
    from django.db import connection
    from django.db.models.signals import pre_save

    seed(["changed-0", "changed-1", "rotated-0", "rotated-1"], lambda client_id: sleeping_hash("old " + client_id))
    applications = [item("new-%d" % number, client_secret="new secret %d" % number) for number in range(4)]
    applications += [item("changed-%d" % number, client_secret="changed secret %d" % number) for number in range(2)]
    applications += [item("rotated-%d" % number, regenerate_secret=True) for number in range(2)]
    saves = []

    def record_save(sender, instance, **kwargs):
        saves.append((instance.client_id, threading.current_thread().name, connection.in_atomic_block))

    pre_save.connect(record_save, sender=model())
    try:
        result, seconds = timed_set(applications, hash_threads=4)
    finally:
        pre_save.disconnect(record_save, sender=model())

    assert result["counts"] == {"created": 4, "updated": 4, "deleted": 0, "unchanged": 0}
    # 2 verifications (the changed secrets), then 8 hashes to store (4 new, 2 changed, 2 generated).
    assert (sleeping_hasher.count("verify"), sleeping_hasher.count("hash")) == (2, 8)
    assert sleeping_hasher.most_at_once == 4
    assert 3 * DELAY <= seconds < 6 * DELAY, "2 verifications and 8 hashes by 4 threads took %.2f s" % seconds
    main = threading.current_thread().name
    assert main not in sleeping_hasher.threads()
    assert sorted(saves) == sorted((entry["client_id"], main, True) for entry in result["results"])
    secrets = dict(("new-%d" % number, "new secret %d" % number) for number in range(4))
    secrets.update(("changed-%d" % number, "changed secret %d" % number) for number in range(2))
    secrets.update((client_id, by_id(result)[client_id]["client_secret"]) for client_id in ("rotated-0", "rotated-1"))
    for client_id, secret in secrets.items():
        algorithm, salt, hashed = model().objects.get(client_id=client_id).client_secret.split("$")
        assert (algorithm, hashed) == ("sleeping", digest(secret, salt)), client_id


def test_a_failing_hash_fails_the_set_as_one_at_a_time_does_and_changes_nothing(sleeping_hasher):
    seed(declared(4), lambda client_id: sleeping_hash("s-" + client_id))
    applications = [item(client_id, client_secret="s-" + client_id) for client_id in declared(4)]
    applications[2]["client_secret"] = "raise: applications[2]"
    applications.append(item("new", client_secret="raise: new"))
    before = snapshot()
    failures = []
    for threads in (1, 4):
        with pytest.raises(ValueError) as raised:
            converge_set(applications, hash_threads=threads)
        failures.append(str(raised.value))
    assert failures == ["the sleeping hasher refuses raise: applications[2]"] * 2
    assert snapshot() == before


def test_hash_threads_below_one_is_refused():
    converge_set([item("kept", client_secret="kept secret")])
    before = snapshot()
    error = refused_set([item("kept", client_secret="other secret")], hash_threads=0)
    assert (error.kind, error.message) == (
        "invalid",
        "hash_threads must be 1 or more, not 0 (1 verifies one secret at a time; leave it out to use every CPU of "
        "the host)",
    )
    assert snapshot() == before


def outdated_hash(secret):
    """`secret` hashed as an older Django would have: PBKDF2 with fewer iterations than any current default."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    return PBKDF2PasswordHasher().encode(secret, "oldsalt1234567890abcde", iterations=1000)


def converge_single(check_mode=False, **params):
    from oauthops_django_side import _django_applications, _django_core

    return _django_applications.run_application(
        dict(item(params["client_id"]), **params), _django_core.Context("default", check_mode, True)
    )


@pytest.mark.parametrize("through", ["oauth_applications", "oauth_application"])
def test_a_matching_secret_whose_hash_is_outdated_is_stored_again_once(through):
    """After a Django upgrade raised PBKDF2's iterations (or the hasher changed), a declared secret that matches
    is stored again, hashed as the project hashes now: updated once, in check mode too, then unchanged."""
    from django.contrib.auth.hashers import check_password, get_hasher, identify_hasher
    from oauthops_django_side import _django_secrets

    def converge(check_mode=False):
        if through == "oauth_application":
            result = converge_single(check_mode, client_id="old", client_secret="same secret")
            return result["action"], result["diff"]["after"]["client_secret"] if result["changed"] else None
        result = converge_set([item("old", client_secret="same secret")], check_mode=check_mode)
        return result["results"][0]["action"], result["diff"][0]["after"]["client_secret"] if result["diff"] else None

    seed(["old"], lambda client_id: outdated_hash("same secret"))
    before = snapshot()
    assert converge(check_mode=True) == ("updated", "<hidden, changed>")
    assert snapshot() == before
    assert converge() == ("updated", "<hidden, changed>")
    renewed = model().objects.get(client_id="old").client_secret
    current = get_hasher(_django_secrets.client_secret_hasher())
    assert identify_hasher(renewed).algorithm == current.algorithm
    assert not current.must_update(renewed)
    assert check_password("same secret", renewed)
    assert converge() == ("unchanged", None)


def test_a_secret_declared_on_create_only_is_neither_verified_nor_renewed(sleeping_hasher):
    seed(["kept"], lambda client_id: outdated_hash("first secret"))
    seed(["sleepy"], lambda client_id: sleeping_hash("first secret"))
    before = snapshot()
    result = converge_set(
        [item(client_id, client_secret="another", update_secret="on_create") for client_id in ("kept", "sleepy")]
    )
    assert result["changed"] is False and sleeping_hasher.calls == []
    assert snapshot() == before


# The secret each row of mixed_set() must open with after the run (generated ones come from the result).
EXPECTED_SECRETS = {
    "same": "same secret",
    "same-2": "same secret 2",
    "other": "declared secret",
    "outdated": "outdated secret",
    "plain": "plain stored secret",
    "unhashed": "hmac key",
    "on-create": "on create secret",
    "new-declared": "new secret",
    "renamed": "renamed secret",
}


def mixed_set(prefix):
    """Seed and declare a set with every way a secret is planned, its client IDs starting with `prefix`-. Secrets
    that match and that do not alternate irregularly, so a verdict given to the wrong item changes an action."""
    from django.contrib.auth.hashers import make_password

    def name(what):
        return "%s-%s" % (prefix, what)

    stored = {
        "same": make_password("same secret"),
        "same-2": make_password("same secret 2"),
        "other": make_password("stored secret"),
        "outdated": outdated_hash("outdated secret"),
        "unhashed": "hmac key",
        "rotated": make_password("rotated secret"),
        "on-create": make_password("on create secret"),
        "renamed": make_password("renamed secret"),
        "gone": make_password("gone secret"),
        "undeclared": make_password("undeclared secret"),
        "plain": "plain stored secret",
    }
    for what, secret in stored.items():
        model()(
            client_id=name(what),
            name=what,
            client_type="confidential",
            authorization_grant_type="client-credentials",
            client_secret=secret,
            hash_client_secret=what != "unhashed",
        ).save()
    # Stored in plain text although hashing is on, as DOT before 2.0 stored every secret: saving would hash it.
    model().objects.filter(client_id=name("plain")).update(client_secret=stored["plain"])
    return [
        item(name("same"), client_secret="same secret"),
        item(name("same-2"), client_secret="same secret 2"),
        item(name("other"), client_secret="declared secret"),
        item(name("outdated"), client_secret="outdated secret"),
        item(name("plain"), client_secret="plain stored secret"),
        item(name("unhashed"), client_secret="hmac key", hash_client_secret=False),
        item(name("rotated"), regenerate_secret=True),
        item(name("on-create"), client_secret="not this one", update_secret="on_create"),
        item(name("gone"), state="absent"),
        item(name("never-was"), state="absent"),
        item(name("new-declared"), client_secret="new secret"),
        item(name("new-generated")),
        item(name("renamed"), client_secret="renamed secret", name="Renamed"),
    ]


def normalized(result, prefix):
    """A result without what differs between two equal runs: the prefix, row identity, times, generated secrets."""
    result = json.loads(json.dumps(result).replace('"%s-' % prefix, '"'))
    for entry in result["results"]:
        if entry.get("client_secret"):
            entry["client_secret"] = "<generated>"
        for key in ("id", "created", "updated"):
            (entry["application"] or {}).pop(key, None)
    return result


def stored_state(prefix, secrets):
    """Each stored row of `prefix` without identity and times, with its secret as (the hasher it is hashed with,
    whether it opens with its expected secret)."""
    from django.contrib.auth.hashers import check_password, identify_hasher

    rows = {}
    for row in model().objects.filter(client_id__startswith=prefix + "-").values():
        what = row["client_id"][len(prefix) + 1:]
        secret = row.pop("client_secret")
        for key in ("id", "client_id", "created", "updated"):
            row.pop(key)
        try:
            hashed_with = identify_hasher(secret).algorithm
        except ValueError:
            hashed_with, opens = None, secret == secrets[what]
        else:
            opens = check_password(secrets[what], secret)
        rows[what] = (sorted((key, str(value)) for key, value in row.items()), hashed_with, opens)
    return rows


def test_parallel_results_equal_one_at_a_time_results():
    """The same set converged with one thread and with four, on the backend of the session: the same result
    (actions, applications, diffs, counts, warnings) in check mode, for real and on a rerun, and the same stored
    rows, each secret hashed by the same hasher and opening with the same secret."""
    runs = {}
    for threads, prefix in ((1, "one"), (4, "four")):
        applications = mixed_set(prefix)
        options = dict(exclusive=True, exclusive_filter={"client_id": [prefix + "-*"]}, hash_threads=threads)
        predicted = converge_set(applications, check_mode=True, **options)
        done = converge_set(applications, **options)
        again = converge_set([dict(entry, regenerate_secret=False) for entry in applications], **options)
        secrets = dict(EXPECTED_SECRETS)
        secrets.update((what, by_id(done)["%s-%s" % (prefix, what)]["client_secret"]) for what in ("rotated", "new-generated"))
        runs[threads] = (
            normalized(predicted, prefix),
            normalized(done, prefix),
            normalized(again, prefix),
            stored_state(prefix, secrets),
        )
    assert runs[1] == runs[4]
    predicted, done, again, state = runs[4]
    assert dict((entry["client_id"], entry["action"]) for entry in done["results"]) == {
        "same": "unchanged", "same-2": "unchanged", "other": "updated", "outdated": "updated", "plain": "updated", "unhashed": "unchanged",
        "rotated": "updated", "on-create": "unchanged", "gone": "deleted", "never-was": "unchanged",
        "new-declared": "created", "new-generated": "created", "renamed": "updated", "undeclared": "deleted",
    }
    assert done["counts"] == {"created": 2, "updated": 5, "deleted": 2, "unchanged": 5}
    assert [entry["action"] for entry in predicted["results"]] == [entry["action"] for entry in done["results"]]
    assert again["changed"] is False
    assert sorted(state) == sorted(set(EXPECTED_SECRETS) | {"rotated", "new-generated"})
    assert all(opens for _row, _hashed_with, opens in state.values())
