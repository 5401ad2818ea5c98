"""oauth_applications (the whole set in one task) and extra_fields through real ansible-playbook runs."""

from provisioning import migrate


def test_application_set(playbook):
    web_secret = playbook.prefix + "-W3b-s3cret-value"
    output = playbook.run("application_set.yml", {"web_secret": web_secret}, "-vvv", "--diff")
    assert web_secret not in output, "a declared secret reached the output"
    assert "Traceback" not in output


def test_exclusive_refuses_what_the_operator_cannot_have_meant(playbook):
    """An empty exclusive_filter list and a set of only absent items: refused, nothing changed (issue 14)."""
    output = playbook.run("application_set_refusals.yml")
    assert "Traceback" not in output


def test_extra_fields_on_a_swapped_application_model(playbook, unmigrated_database):
    swapped_env = dict(unmigrated_database, OAUTHOPS_TEST_SWAPPED_APPLICATION="1")
    migrate(swapped_env)
    playbook.run("swapped_extra_fields.yml", {"swapped_env": swapped_env})
