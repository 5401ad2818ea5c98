"""oauth_application and oauth_application_info through real ansible-playbook runs."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning import migrate
from secret_leaks import leaked, stored_client_secrets
from settings_failures import VARIABLE, expected_errors, not_found


def test_lifecycle(playbook):
    playbook.run("lifecycle.yml")


def test_every_option_round_trips(playbook):
    playbook.run("all_options.yml")


# One backend: what reaches Ansible's output is decided on the controller and in the module's
# answer, before and apart from the database; tests/unit hash, verify and rotate on every backend.
@pytest.mark.one_backend
def test_secrets_never_reach_the_output(playbook):
    declared = {
        "first_secret": playbook.prefix + "-Ff1rst-s3cret",
        "second_secret": playbook.prefix + "-S3cond-s3cret",
        "hs256_secret": playbook.prefix + "-Hs256-s1gning-key",
    }
    output = playbook.run("secrets.yml", declared, "-vvv", "--diff")
    generated = (playbook.workdir / "generated_secret").read_text()
    assert len(generated) >= 32
    stored = stored_client_secrets(playbook.django_env(), playbook.prefix)
    assert stored[playbook.prefix + "-hs256"] == declared["hs256_secret"], "the HS256 secret must be stored unhashed"
    hashes = [value for client_id, value in stored.items() if client_id != playbook.prefix + "-hs256"]
    assert len(hashes) == 3 and all(value.count("$") >= 2 for value in hashes), "secrets must be stored hashed"
    shown = json.loads((playbook.workdir / "shown_secrets.json").read_text())
    assert all(len(secret) >= 32 for secret in shown.values())
    assert leaked(output, list(declared.values()) + [generated] + list(shown.values()) + hashes) == []


# One backend: DOT's validation (full_clean) and the module's refusals come before any write; that
# a refused change writes nothing is proven on every backend by tests/unit/test_applications.py.
@pytest.mark.one_backend
def test_validation_failures_name_the_field(playbook):
    playbook.run("validation.yml")


# One backend: the module refuses these secrets before Django opens the database; the unit tests
# refuse them on every backend.
@pytest.mark.one_backend
def test_blank_or_padded_secrets_are_refused_and_change_nothing(playbook):
    playbook.run("blank_secrets.yml")
    stored = stored_client_secrets(playbook.django_env(), playbook.prefix)
    assert list(stored) == [playbook.prefix + "-web"], "a refused application was created"


def test_user_by_username_and_primary_key(playbook):
    playbook.run("users.yml", {"username_field": "username", "owner": playbook.prefix + "-bob"})


def test_user_on_a_user_model_that_logs_in_by_email(playbook, unmigrated_database):
    email_env = dict(unmigrated_database, OAUTHOPS_TEST_CUSTOM_USER="1")
    migrate(email_env)
    owner = playbook.prefix + "-bob@example.com"
    playbook.run("users.yml", {"db_env": email_env, "username_field": "email", "owner": owner})


def test_errors_are_one_readable_line(playbook, unmigrated_database):
    output = playbook.run("errors.yml", {"unmigrated_env": unmigrated_database}, "-vvv")
    assert "django_traceback" not in output


# Settings fail before the database is opened.
@pytest.mark.one_backend
def test_a_settings_module_that_fails_to_import_is_one_line_that_names_the_fix(playbook):
    env_file = playbook.workdir / "project.env"
    env_file.write_text("%s=from-env-file\n" % VARIABLE)
    not_the_project = playbook.workdir / "not-the-project"
    not_the_project.mkdir()
    variables = {"env_file": str(env_file), "not_the_project": str(not_the_project)}

    output = playbook.run("settings_errors.yml", variables)
    results = json.loads((playbook.workdir / "results.json").read_text())
    expected = expected_errors(playbook.project_python())
    assert {name: (results[name].get("error_kind"), results[name]["msg"]) for name in results if name != "fixed"} == {
        "missing_variable": expected["missing-variable"],
        "missing_package": expected["missing-package"],
        "wrong_project_path": ("settings", not_found("testproject.settings", not_the_project)),
    }
    assert results["fixed"]["failed"] is False and "applications" in results["fixed"]
    # At the default verbosity the traceback is nowhere: not in msg, not beside it.
    assert "Traceback" not in output and "django_traceback" not in output, output

    output = playbook.run("settings_errors.yml", variables, "-vvv", "--tags", "traceback")
    traceback = re.search(r'"django_traceback": "(Traceback \(most recent call last\):.*?)",$', output, re.MULTILINE)
    assert traceback and traceback.group(1).endswith("KeyError: '%s'\\n" % VARIABLE), output


# One backend: which interpreter the bridge starts (virtualenv, module_defaults through the action group) and
# that settings printing on stdout cannot spoil the response are settled before Django opens a connection.
@pytest.mark.one_backend
def test_bridge_through_virtualenv_and_noisy_settings(playbook):
    playbook.run("bridge.yml", {"project_virtualenv": str(Path(playbook.project_python()).parent.parent)})


def test_swapped_application_model(playbook, unmigrated_database):
    swapped_env = dict(unmigrated_database, OAUTHOPS_TEST_SWAPPED_APPLICATION="1")
    migrate(swapped_env)
    playbook.run("swapped.yml", {"swapped_env": swapped_env})


def test_info_filters_and_queries(playbook, unmigrated_database):
    """Exact answers need a database that holds only the playbook's applications. The filters run in the
    database, on every backend; the queries (JMESPath) on the controller over the module's answer, which no
    backend changes: on SQLite only, as one_backend tests."""
    migrate(unmigrated_database)
    queries = playbook.database["backend"] == "sqlite"
    output = playbook.run("info_query.yml", {"info_env": unmigrated_database, "queries": queries}, "-vvv")
    stored = stored_client_secrets(unmigrated_database, "")
    assert len(stored) == 6
    assert stored["portal"] == playbook.prefix + "-portal-Plain-s3cret", "portal's secret must be stored unhashed"
    listed = (playbook.workdir / "info_results.json").read_text()
    for client_id, value in stored.items():
        plain = "%s-%s-Plain-s3cret" % (playbook.prefix, client_id)
        for secret in (value, plain):
            assert secret not in output, "a secret of %s reached the output" % client_id
            assert secret not in listed, "a secret of %s is in the info result" % client_id


# One backend: what is missing is the controller's library.
@pytest.mark.one_backend
def test_info_query_without_jmespath_on_the_controller(playbook):
    """The controller's ansible-playbook with jmespath unimportable (as if not installed), not a mock:
    the real action plugin's import fails, and the query needs it while the plain listing does not."""
    command, env = playbook.command("info_without_jmespath.yml", None, ())
    hide_jmespath = (
        "import sys; sys.modules['jmespath'] = None; sys.argv = ['ansible-playbook'] + sys.argv[1:]; "
        "from ansible.cli.playbook import main; sys.exit(main())"
    )
    command = [sys.executable, "-c", hide_jmespath] + command[1:]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Traceback" not in output
