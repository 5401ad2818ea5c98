"""A sample of the unit properties (tests/unit/test_application_properties.py) through real ansible-playbook
runs: random sets, each converged by oauth_applications in check mode, for real and again. Check mode
must predict the real run item by item, and the second run must change nothing.

The sets come from a seeded random generator: the seed is printed and named in every assertion, and
--property-seed replays it. The sets share five client_ids, so each meets the rows the earlier
ones left (creates, updates, deletions, exclusive mode narrowed to this test's prefix).
"""

import random

import pytest

from provisioning import application_spec

SETS = 6
GRANTS = tuple(application_spec().GRANT_TYPES)
REDIRECT_GRANTS = ("authorization-code", "implicit", "openid-hybrid")
HOSTS = ("app.example.com", "b.example.org", "localhost:8443")
PATHS = ("/cb", "/oauth/callback", "/return?to=home")
SECRETS = ("first-declared-secret", "second-declared-secret")


def uris(rng, fewest, most):
    return [
        "%s://%s%s" % (rng.choice(("http", "https")), rng.choice(HOSTS), rng.choice(PATHS))
        for _position in range(rng.randint(fewest, most))
    ]


def application(rng, client_id):
    """A valid declaration (DOT 3.4.1's rules); sometimes absent, sometimes with options left out."""
    if rng.random() < 0.1:
        return {"client_id": client_id, "state": "absent"}
    client_type = rng.choice(("confidential", "public"))
    grant = rng.choice(GRANTS)
    declared = {
        "client_id": client_id,
        "name": rng.choice(("", "Web", "Caf\u00e9")),
        "client_type": client_type,
        "authorization_grant_type": grant,
        "redirect_uris": uris(rng, 1 if grant in REDIRECT_GRANTS else 0, 2),
        "post_logout_redirect_uris": uris(rng, 0, 1),
        "allowed_origins": ["https://" + rng.choice(HOSTS)] if rng.random() < 0.5 else [],
        "skip_authorization": rng.random() < 0.5,
        "hash_client_secret": rng.random() < 0.5,
        "algorithm": rng.choice(("none", "RS256")),
        "extra_fields": {"registration_source": rng.choice(("manual", "manual", "dcr"))},
    }
    if rng.random() < 0.5:
        declared["client_secret"] = rng.choice(SECRETS)
        if client_type == "confidential" and grant not in ("implicit", "openid-hybrid") and rng.random() < 0.3:
            declared.update(algorithm="HS256", hash_client_secret=False)
    if rng.random() < 0.4:
        for option in ("name", "redirect_uris", "post_logout_redirect_uris", "allowed_origins", "skip_authorization",
                       "hash_client_secret", "algorithm", "extra_fields"):
            if rng.random() < 0.3:
                del declared[option]
    return declared


def random_sets(seed, prefix):
    rng = random.Random(seed)
    client_ids = ["%s-%s" % (prefix, letter) for letter in "abcde"]
    cases = []
    for number in range(SETS):
        chosen = rng.sample(client_ids, rng.randint(1, len(client_ids)))
        declared = [application(rng, client_id) for client_id in chosen]
        cases.append(
            {
                "label": "seed %s, set %d" % (seed, number),
                "applications": declared,
                # Exclusive mode refuses a set with no present item (tests/unit covers that refusal).
                "exclusive": rng.random() < 0.3 and any(item.get("state") != "absent" for item in declared),
            }
        )
    return cases


# One backend: a sample, through ansible-playbook, of the properties tests/unit/test_application_properties.py
# proves on every backend (200 random declarations each); what this adds is Ansible's side (check mode, the results).
@pytest.mark.one_backend
def test_random_sets_converge_once_and_check_mode_predicts(playbook, pytestconfig):
    seed = pytestconfig.getoption("property_seed")
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    print("random sets from seed %d (--property-seed %d replays them)" % (seed, seed))
    output = playbook.run("application_properties.yml", {"cases": random_sets(seed, playbook.prefix)})
    assert "Traceback" not in output
    assert output.count("TASK [Check mode predicted the real run; the second run changed nothing]") == SETS
