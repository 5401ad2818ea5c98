"""The test project with a swapped application model (see swappedapp.models)."""
from .settings import *  # noqa: F401,F403  (the same project, one setting more)
from .settings import INSTALLED_APPS

INSTALLED_APPS = INSTALLED_APPS + ["swappedapp"]
OAUTH2_PROVIDER_APPLICATION_MODEL = "swappedapp.PartnerApplication"
