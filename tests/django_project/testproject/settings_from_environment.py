"""The test project's settings with the secret key taken from the environment, as production settings take it:
without DJANGO_SECRET_KEY they fail at import (KeyError: 'DJANGO_SECRET_KEY'), the way a cron job that lacks a
variable of the application's environment fails. The token_cleanup role's proof must catch that at install time."""
import os

from .settings import *  # noqa: F401,F403  pylint: disable=wildcard-import,unused-wildcard-import

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
