"""Settings of the Django + DOT project that the tests and the demo run against.

One project serves every backend and variant; the tests' fixtures choose them through the environment
(the project is a child process of the tests, so this is the one place variables remain; a developer
chooses with pytest options, see tests/conftest.py). Every variable the project reads:

    OAUTHOPS_TEST_DB                 sqlite (default), postgresql or mysql
    OAUTHOPS_TEST_DB_NAME            the SQLite file or the database name
    OAUTHOPS_TEST_DB_HOST, _PORT, _USER, _PASSWORD   the server (postgresql, mysql)
    OAUTHOPS_TEST_DATABASE_URL       parsed as dj-database-url would (a password's '/' reaches the error)
    DATABASE_URL                     the database, as real projects read it, when no OAUTHOPS_TEST_DB is set
                                     (sqlite:////path, postgres://..., mysql://...: the README's examples)
    OAUTHOPS_TEST_OAUTH_DB_NAME      a second database, alias 'oauth' (same backend and server), and a router that
                                     sends DOT's models there (--models routed; testproject/routers.py)
    OAUTHOPS_TEST_BATCH_SIZE         DOT's CLEAR_EXPIRED_TOKENS_BATCH_SIZE (default 10000)
    OAUTHOPS_TEST_REDIRECT_SCHEMES   DOT's ALLOWED_REDIRECT_URI_SCHEMES, comma-separated (default http, https)
    OAUTHOPS_TEST_FAST_HASHER        MD5 hashes new client secrets (every default hasher still verifies)
    OAUTHOPS_TEST_CUSTOM_USER        a user model that logs in by email (--models custom-user)
    OAUTHOPS_TEST_SWAPPED_APPLICATION  an application model of the project's own (--models custom-user)
    OAUTHOPS_TEST_SWAPPED_TOKENS     access and refresh token models swapped (--models swapped-tokens)
    OAUTHOPS_TEST_NOISY_SETTINGS     settings that print, warn and log to stdout
    OAUTHOPS_TEST_HOLD_UNTIL         hold a job's cleanup (not a --check run) after its lock until this file exists

and, of the settings module testproject.failing_settings (these settings, failing to import as real ones do):

    OAUTHOPS_TEST_SETTINGS_FAILURE   how it fails (default missing-variable)
    OAUTHOPS_TEST_REQUIRED_SECRET_KEY  the variable it reads without a default

The model variants are fixed at a database's first migration: each session migrates a fresh database.

The project also serves (tests/integration/test_live_clients.py): DOT's URLs under /o/, a login page
and one protected view, see urls.py. Serving adds no app and so no migration: sessions live in signed
cookies, and nothing else needs a table.
"""
import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "oauth2_provider",
    "testapp",
]

# What serving needs: a login (the authorization-code flow) through a session in a signed cookie,
# so no sessions table; CSRF protection for the login form; templates for it and for DOT's pages.
ROOT_URLCONF = "testproject.urls"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "testproject" / "templates"],
        "APP_DIRS": True,
    }
]

_ENGINES = {
    "sqlite": "django.db.backends.sqlite3",
    "postgresql": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
}
_backend = os.environ.get("OAUTHOPS_TEST_DB", "sqlite")
_database = {
    "ENGINE": _ENGINES[_backend],
    "NAME": os.environ.get("OAUTHOPS_TEST_DB_NAME", str(BASE_DIR / "db.sqlite3")),
}
if _backend != "sqlite":
    _database.update(
        HOST=os.environ.get("OAUTHOPS_TEST_DB_HOST", "127.0.0.1"),
        PORT=os.environ.get("OAUTHOPS_TEST_DB_PORT", ""),
        USER=os.environ.get("OAUTHOPS_TEST_DB_USER", ""),
        PASSWORD=os.environ.get("OAUTHOPS_TEST_DB_PASSWORD", ""),
    )
if _backend == "mysql":
    _database["OPTIONS"] = {"charset": "utf8mb4"}
if "OAUTHOPS_TEST_DB" not in os.environ and os.environ.get("DATABASE_URL"):
    # What a real project does with DATABASE_URL (the README's examples pass one), in the small: the tests
    # always name their database with OAUTHOPS_TEST_DB*, and a DATABASE_URL counts only without them.
    import urllib.parse

    _url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
    _scheme = {"sqlite": "sqlite", "postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql"}[_url.scheme]
    _database = {"ENGINE": _ENGINES[_scheme], "NAME": _url.path if _scheme == "sqlite" else _url.path.lstrip("/")}
    if _scheme != "sqlite":
        _database.update(HOST=_url.hostname or "", PORT=str(_url.port or ""),
                         USER=urllib.parse.unquote(_url.username or ""),
                         PASSWORD=urllib.parse.unquote(_url.password or ""))
DATABASES = {"default": _database}

if os.environ.get("OAUTHOPS_TEST_OAUTH_DB_NAME"):
    # A project that keeps OAuth data on a database of its own, with Django's documented router pattern.
    DATABASES["oauth"] = dict(_database, NAME=os.environ["OAUTHOPS_TEST_OAUTH_DB_NAME"])
    DATABASE_ROUTERS = ["testproject.routers.OAuthRouter"]

if os.environ.get("OAUTHOPS_TEST_DATABASE_URL"):
    # What dj-database-url and its kin do with a DATABASE_URL: with an unencoded '/' in the password,
    # urllib reads a piece of the password as the port, and its error quotes that piece.
    import urllib.parse

    urllib.parse.urlsplit(os.environ["OAUTHOPS_TEST_DATABASE_URL"]).port

# Named explicitly so migrations of testapp can depend on them as swappable models.
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"

OAUTH2_PROVIDER = {
    # A throwaway key committed for tests only, so RS256 applications validate.
    "OIDC_ENABLED": True,
    "OIDC_RSA_PRIVATE_KEY": (BASE_DIR / "testproject" / "oidc_test_key.pem").read_text(),
    "CLEAR_EXPIRED_TOKENS_BATCH_SIZE": int(os.environ.get("OAUTHOPS_TEST_BATCH_SIZE", "10000")),
}
if os.environ.get("OAUTHOPS_TEST_REDIRECT_SCHEMES"):
    # A project that lets native apps redirect to their own scheme (com.example.shop:/oauth/callback).
    OAUTH2_PROVIDER["ALLOWED_REDIRECT_URI_SCHEMES"] = os.environ["OAUTHOPS_TEST_REDIRECT_SCHEMES"].split(",")

if os.environ.get("OAUTHOPS_TEST_FAST_HASHER"):
    # PBKDF2 takes ~0.4 s per client secret hashed or checked; tests that do not test hashing itself
    # hash with MD5 (as DOT's own suite does). The default hashers follow, so a PBKDF2 hash still verifies.
    from django.conf.global_settings import PASSWORD_HASHERS as _DEFAULT_HASHERS

    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *_DEFAULT_HASHERS]

if os.environ.get("OAUTHOPS_TEST_CUSTOM_USER"):
    # A user model that logs in by email (USERNAME_FIELD "email"). AUTH_USER_MODEL must be set
    # before a database's first migration: each test session migrates a fresh database.
    INSTALLED_APPS.append("customuser")
    AUTH_USER_MODEL = "customuser.EmailUser"

if os.environ.get("OAUTHOPS_TEST_SWAPPED_APPLICATION"):
    # DOT's documented way to add fields to applications: a model of the project's own.
    INSTALLED_APPS.append("swappedapp")
    OAUTH2_PROVIDER_APPLICATION_MODEL = "swappedapp.PartnerApplication"

if os.environ.get("OAUTHOPS_TEST_SWAPPED_TOKENS"):
    # DOT's documented way to extend the token models: access and refresh tokens swapped together,
    # into one app, before the first migration. Their keys are a UUID and a string.
    INSTALLED_APPS.append("swappedtokens")
    OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "swappedtokens.AccessToken"
    OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "swappedtokens.RefreshToken"

if os.environ.get("OAUTHOPS_TEST_NOISY_SETTINGS"):
    # Real settings files print (debug banners, deprecation notes), log to stdout and warn; the
    # bridge must keep its JSON channel clean regardless, and a healthy cron job must stay silent.
    import warnings

    print("settings loaded: this line must not break the bridge")
    print("settings loaded: and neither must this one on stderr", file=sys.stderr)
    warnings.warn("noisy settings: a DeprecationWarning at import", DeprecationWarning)
    warnings.warn("noisy settings: a UserWarning at import", UserWarning)
    LOGGING = {
        "version": 1,
        "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
        "root": {"handlers": ["stdout"], "level": "INFO"},
    }

if os.environ.get("OAUTHOPS_TEST_HOLD_UNTIL") and "--check" not in sys.argv:
    # A test that needs a run in progress (a cron job that holds its lock) holds it here, where the job has
    # taken its lock and not yet started, until the test creates this file; bounded, so it never hangs. The
    # token_cleanup role's proof of the job (its cron line with --check) passes through.
    import time

    _deadline = time.monotonic() + 300
    while not os.path.exists(os.environ["OAUTHOPS_TEST_HOLD_UNTIL"]):
        if time.monotonic() > _deadline:
            raise RuntimeError("OAUTHOPS_TEST_HOLD_UNTIL: nobody created %s" % os.environ["OAUTHOPS_TEST_HOLD_UNTIL"])
        time.sleep(0.05)
