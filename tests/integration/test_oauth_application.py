"""oauth_application and oauth_application_info through real ansible-playbook runs."""

import sys

from provisioning import migrate


def test_lifecycle(playbook):
    playbook.run("lifecycle.yml")


def test_every_option_round_trips(playbook):
    playbook.run("all_options.yml")


def test_secrets_never_reach_the_output(playbook):
    secrets = {"first_secret": playbook.prefix + "-Ff1rst-s3cret", "second_secret": playbook.prefix + "-S3cond-s3cret"}
    output = playbook.run("secrets.yml", secrets, "-vvv", "--diff")
    generated = (playbook.workdir / "generated_secret").read_text()
    assert len(generated) >= 32
    for secret in list(secrets.values()) + [generated]:
        assert secret not in output


def test_validation_failures_name_the_field(playbook):
    playbook.run("validation.yml")


def test_user_by_username_and_primary_key(playbook):
    playbook.run("users.yml")


def test_errors_are_one_readable_line(playbook, unmigrated_database):
    output = playbook.run("errors.yml", {"unmigrated_env": unmigrated_database}, "-vvv")
    assert "django_traceback" not in output


def test_bridge_through_virtualenv_and_noisy_settings(playbook):
    playbook.run("bridge.yml", {"project_virtualenv": sys.prefix})


def test_swapped_application_model(playbook, unmigrated_database):
    swapped_env = dict(unmigrated_database, OAUTHOPS_TEST_SWAPPED_APPLICATION="1")
    migrate(swapped_env)
    playbook.run("swapped.yml", {"swapped_env": swapped_env})
