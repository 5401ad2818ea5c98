"""A settings module that fails to import gives one line that names what is missing and the fix, in the
modules' answer and in the cron job's line alike (tests/django_project/testproject/failing_settings.py
fails the ways real settings fail). Nothing here touches a database: SQLite sessions only."""

import importlib
import json
import os
import subprocess
import sys

import pytest

from provisioning import DJANGO_PROJECT
from settings_failures import SETTINGS, SETTINGS_FILE, VARIABLE, expected_errors, not_found

pytestmark = pytest.mark.one_backend

FAILURES = expected_errors(sys.executable)


def side():
    return importlib.import_module("oauthops_django_side._django_side")


def django_env():
    return importlib.import_module("oauthops_django_side._django_env")


@pytest.fixture
def settings_module(monkeypatch):
    """Point DJANGO_SETTINGS_MODULE elsewhere for one test. Django is set up already, so its settings stay
    this session's; setup_django fails at the import, before django.setup(). A settings module that did
    import is forgotten afterwards, so that the next test imports it again."""
    monkeypatch.chdir(DJANGO_PROJECT)  # project_path is the Django side's working directory
    monkeypatch.delenv(VARIABLE, raising=False)
    yield lambda name: monkeypatch.setenv("DJANGO_SETTINGS_MODULE", name)
    if sys.modules.pop(SETTINGS, None):
        del sys.modules["testproject"].failing_settings


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failing_settings_module_is_one_line_that_names_what_is_missing(settings_module, monkeypatch, failure):
    settings_module(SETTINGS)
    monkeypatch.setenv("OAUTHOPS_TEST_SETTINGS_FAILURE", failure)
    with pytest.raises(side().OperationError) as raised:
        side().setup_django("default", str(DJANGO_PROJECT))
    assert (raised.value.kind, raised.value.message) == FAILURES[failure]
    # The original failure stays behind it, for django_traceback at -vvv.
    response = side().error_response(raised.value)
    assert response["message"] == FAILURES[failure][1]
    assert response["traceback"].startswith("Traceback (most recent call last):")
    assert str(SETTINGS_FILE) in response["traceback"]


@pytest.mark.parametrize("settings", ["nosuchproject.settings", "testproject.nosuchsettings"])
def test_a_settings_module_that_is_not_there_says_so_and_doubts_a_project_path_without_manage_py(
    settings_module, monkeypatch, tmp_path, settings
):
    settings_module(settings)
    with pytest.raises(side().OperationError) as raised:
        side().setup_django("default", str(DJANGO_PROJECT))
    assert (raised.value.kind, raised.value.message) == ("settings", not_found(settings))
    assert "traceback" not in side().error_response(raised.value)  # importlib's frames tell nothing more

    monkeypatch.chdir(tmp_path)
    with pytest.raises(side().OperationError) as raised:
        side().setup_django("default", str(tmp_path))
    assert raised.value.message == not_found(settings, tmp_path)
    with pytest.raises(side().OperationError) as raised:
        side().setup_django("default", None)  # no project_path: nothing to doubt
    assert raised.value.message == not_found(settings)


def test_a_missing_package_whose_name_begins_the_settings_module_s_is_not_the_settings_module(
    settings_module, monkeypatch, tmp_path
):
    settings = tmp_path / "oauthops_unit_shop_settings.py"
    settings.write_text("import oauthops_unit_shop  # noqa\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings_module(settings.stem)
    with pytest.raises(side().OperationError) as raised:
        side().setup_django("default", str(DJANGO_PROJECT))
    assert raised.value.message == (
        "settings module 'oauthops_unit_shop_settings' imports 'oauthops_unit_shop', which is not importable by %s "
        "(%s, line 1): install it in the project's virtualenv, or point virtualenv or python at the interpreter that "
        "has it" % (sys.executable, settings)
    )


def test_the_fix_works_the_variable_set_the_settings_import(settings_module, monkeypatch):
    settings_module(SETTINGS)
    monkeypatch.setenv(VARIABLE, "from-the-environment")
    side().setup_django("default", str(DJANGO_PROJECT))
    assert importlib.import_module(SETTINGS).SECRET_KEY == "from-the-environment"


def raised(function):
    try:
        function()
    except Exception as exc:  # pylint: disable=broad-except
        return exc
    raise AssertionError("%s raised nothing" % function)


def test_only_a_lookup_in_os_environ_is_a_missing_variable(monkeypatch):
    monkeypatch.delenv("OAUTHOPS_UNIT_UNSET", raising=False)
    missing_variable = django_env().missing_variable

    def wrapped_without_from():  # the pattern of many settings modules' get_env_variable()
        try:
            return os.environ["OAUTHOPS_UNIT_UNSET"]
        except KeyError:
            raise RuntimeError("Set the OAUTHOPS_UNIT_UNSET environment variable")

    def wrapped_from_none():
        try:
            return os.environ["OAUTHOPS_UNIT_UNSET"]
        except KeyError:
            raise RuntimeError("something else") from None

    assert missing_variable(raised(lambda: os.environ["OAUTHOPS_UNIT_UNSET"])) == "OAUTHOPS_UNIT_UNSET"
    assert missing_variable(raised(lambda: os.environ.pop("OAUTHOPS_UNIT_UNSET"))) == "OAUTHOPS_UNIT_UNSET"
    assert missing_variable(raised(wrapped_without_from)) == "OAUTHOPS_UNIT_UNSET"
    assert missing_variable(raised(wrapped_from_none)) is None
    assert missing_variable(raised(lambda: {}["OAUTHOPS_UNIT_UNSET"])) is None  # another mapping's KeyError
    assert missing_variable(raised(lambda: int("x"))) is None


def test_a_variable_missing_past_the_settings_is_named_too_and_anything_else_is_one_line(monkeypatch):
    monkeypatch.delenv("OAUTHOPS_UNIT_UNSET", raising=False)
    response = side().error_response(raised(lambda: os.environ["OAUTHOPS_UNIT_UNSET"]))
    assert (response["kind"], response["message"]) == (
        "environment", "the environment variable OAUTHOPS_UNIT_UNSET is not set: set it in environment or env_file"
    )
    assert "KeyError: 'OAUTHOPS_UNIT_UNSET'" in response["traceback"]
    response = side().error_response(ValueError("first line\nsecond line"))
    assert (response["kind"], response["message"]) == ("unexpected", "ValueError: first line")
    response = side().error_response(side().OperationError("database", "foreseen"))
    assert "traceback" not in response


def test_the_cron_job_says_the_same_in_its_one_line(tmp_path):
    """The job as cron starts it: its own process, the shipped package on its path, one line on stderr and in
    the log."""
    package = os.path.dirname(os.path.dirname(side().__file__))
    log_file = tmp_path / "cleanup.log"
    environment = dict(os.environ, PYTHONPATH=package)
    environment.pop(VARIABLE, None)
    environment.pop("OAUTHOPS_TEST_SETTINGS_FAILURE", None)
    completed = subprocess.run(
        [sys.executable, "-m", "oauthops_django_side._django_cleanup_job", "--project-path", str(DJANGO_PROJECT),
         "--settings", SETTINGS, "--log-file", str(log_file)],
        cwd="/", env=environment, capture_output=True, text=True, timeout=120, check=False,
    )
    reason = FAILURES["missing-variable"][1]
    assert (completed.returncode, completed.stdout) == (1, "")
    assert completed.stderr == "oauthops token cleanup failed: %s\n" % reason
    (line,) = log_file.read_text().splitlines()
    assert ' failed=true error=%s ' % json.dumps(reason) in line
