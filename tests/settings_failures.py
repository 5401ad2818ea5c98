"""The one line the Django side gives for each way tests/django_project/testproject/failing_settings.py fails
(its OAUTHOPS_TEST_SETTINGS_FAILURE), exactly: the unit tests check the Django side's answer, the
integration tests the modules' msg."""

from provisioning import DJANGO_PROJECT

SETTINGS = "testproject.failing_settings"
SETTINGS_FILE = DJANGO_PROJECT / "testproject" / "failing_settings.py"
VARIABLE = "OAUTHOPS_TEST_REQUIRED_SECRET_KEY"


def line_of(text):
    """'FILE, line N' of the first line of the settings file that holds `text`."""
    lines = SETTINGS_FILE.read_text().splitlines()
    return "%s, line %d" % (SETTINGS_FILE, next(number for number, line in enumerate(lines, 1) if text in line))


def expected_errors(python):
    """{failure: (error kind, message)} for a Django side that runs `python`."""
    missing_variable = (
        "settings module '%s' reads the environment variable %s, which is not set (%%s): set it in environment or "
        "env_file" % (SETTINGS, VARIABLE)
    )
    return {
        "missing-variable": ("environment", missing_variable % line_of('os.environ["%s"]' % VARIABLE)),
        "environ-style": ("environment", missing_variable % line_of('raise ImproperlyConfigured("Set the')),
        "improperly-configured": (
            "settings",
            "settings module '%s' is improperly configured: CACHES: the cache server is not configured (%s)"
            % (SETTINGS, line_of('raise ImproperlyConfigured("CACHES')),
        ),
        "missing-package": (
            "settings",
            "settings module '%s' imports 'oauthops_test_not_installed', which is not importable by %s (%s): install "
            "it in the project's virtualenv, or point virtualenv or python at the interpreter that has it"
            % (SETTINGS, python, line_of("import oauthops_test_not_installed")),
        ),
        "missing-module": (
            "settings",
            "settings module '%s' imports 'testproject.local_settings', which does not exist (%s)"
            % (SETTINGS, line_of("from .local_settings import")),
        ),
    }


def not_found(settings, project_path=None):
    """The message for a settings module that is not there; with the project_path that has no manage.py."""
    doubt = "; project_path %s has no manage.py: is it the project's directory?" % project_path if project_path else ""
    return "settings module '%s' not found (project_path and pythonpath are searched first%s)" % (settings, doubt)
