"""oauth_applications (the whole set in one task) and extra_fields through real ansible-playbook runs."""

import pytest

from provisioning import migrate
from secret_leaks import leaked, stored_client_secrets


def test_application_set(playbook):
    web_secret = playbook.prefix + "-W3b-s3cret-value"
    output = playbook.run("application_set.yml", {"web_secret": web_secret}, "-vvv", "--diff")
    assert web_secret not in output, "a declared secret reached the output"
    assert "Traceback" not in output


# One backend: these refusals are decided from the task's arguments before the set's transaction opens;
# tests/unit/test_application_set.py refuses each one on every backend, in check mode and for real, and
# proves that nothing changed.
@pytest.mark.one_backend
def test_exclusive_refuses_what_the_operator_cannot_have_meant(playbook):
    """An empty exclusive_filter list and a set of only absent items: refused, nothing changed (issue 14)."""
    output = playbook.run("application_set_refusals.yml")
    assert "Traceback" not in output


def test_extra_fields_on_a_swapped_application_model(playbook, unmigrated_database):
    swapped_env = dict(unmigrated_database, OAUTHOPS_TEST_SWAPPED_APPLICATION="1")
    migrate(swapped_env)
    playbook.run("swapped_extra_fields.yml", {"swapped_env": swapped_env})


# One backend: what Ansible prints is decided on the controller and by the module's answer; the deletions
# themselves are proven on every backend by application_set.yml and tests/unit.
@pytest.mark.one_backend
def test_the_documented_preview_shows_the_deletions_and_no_secret(playbook):
    """no_log: "{{ not ansible_check_mode }}" on an exclusive set: --check --diff shows the deletions, the rename
    and the creation, and never a secret; the real run (--diff -v) never prints the secret DOT generated."""
    declared = dict((name, "%s-%s-s3cret-value" % (playbook.prefix, name)) for name in ("web", "legacy", "retired"))
    variables = {name + "_secret": value for name, value in declared.items()}
    setup = playbook.run("previews.yml", dict(variables, stage="setup"))
    stored_before = stored_client_secrets(playbook.django_env(), playbook.prefix)
    assert sorted(stored_before) == [playbook.prefix + "-" + name for name in ("legacy", "retired", "web")]

    preview = playbook.run("previews.yml", dict(variables, stage="preview"), "--check", "--diff")
    assert stored_client_secrets(playbook.django_env(), playbook.prefix) == stored_before, "check mode wrote"
    for client_id in ("legacy", "retired", "web", "worker"):
        assert "--- before: %s-%s\n" % (playbook.prefix, client_id) in preview, client_id
    deletion = preview.split("--- before: %s-legacy\n" % playbook.prefix, 1)[1].split("--- before:", 1)[0]
    assert '-    "client_id": "%s-legacy",' % playbook.prefix in deletion and "\n+{}\n" in deletion
    assert '-    "name": "Old web",\n+    "name": "Web",' in preview
    assert "hidden" in preview and "censored" not in preview

    applied = playbook.run("previews.yml", dict(variables, stage="apply"), "--diff", "-v")
    generated = (playbook.workdir / "generated_secret").read_text()
    assert len(generated) >= 32
    stored_after = stored_client_secrets(playbook.django_env(), playbook.prefix)
    assert sorted(stored_after) == [playbook.prefix + "-web", playbook.prefix + "-worker"]
    secrets = list(declared.values()) + [generated] + list(stored_before.values()) + list(stored_after.values())
    for stage, output in (("setup", setup), ("preview", preview), ("apply", applied)):
        assert leaked(output, secrets) == [], "a secret in the %s output" % stage
