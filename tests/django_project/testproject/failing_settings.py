"""The test project's settings, failing at import the ways real settings modules fail, for the tests of
the messages a user then reads. OAUTHOPS_TEST_SETTINGS_FAILURE chooses the way:

    missing-variable (default)  read a variable of the environment without a default, as production
                                settings read their secret key: a KeyError, unless
                                OAUTHOPS_TEST_REQUIRED_SECRET_KEY is set (then these settings work)
    environ-style               the same through the ImproperlyConfigured that django-environ's env()
                                raises from that KeyError
    improperly-configured       an ImproperlyConfigured of the settings' own
    missing-package             import a package that is not installed
    missing-module              import a module of the project's own that does not exist
"""
import os

from django.core.exceptions import ImproperlyConfigured

from testproject.settings import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import

FAILURE = os.environ.get("OAUTHOPS_TEST_SETTINGS_FAILURE", "missing-variable")

if FAILURE == "missing-variable":
    SECRET_KEY = os.environ["OAUTHOPS_TEST_REQUIRED_SECRET_KEY"]
elif FAILURE == "environ-style":
    try:
        SECRET_KEY = os.environ["OAUTHOPS_TEST_REQUIRED_SECRET_KEY"]
    except KeyError as exc:
        raise ImproperlyConfigured("Set the OAUTHOPS_TEST_REQUIRED_SECRET_KEY environment variable") from exc
elif FAILURE == "improperly-configured":
    raise ImproperlyConfigured("CACHES: the cache server is not configured")
elif FAILURE == "missing-package":
    import oauthops_test_not_installed  # noqa: F401  pylint: disable=import-error,unused-import
elif FAILURE == "missing-module":
    from .local_settings import *  # noqa: F401,F403  pylint: disable=import-error,wildcard-import
