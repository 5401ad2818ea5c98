"""A project that swaps DOT's application model (OAUTH2_PROVIDER_APPLICATION_MODEL), as DOT
documents for adding fields; the modules must work through get_application_model().
Installed only when OAUTHOPS_TEST_SWAPPED_APPLICATION is set (see testproject.settings)."""
from django.db import models
from oauth2_provider.models import AbstractApplication


class PartnerApplication(AbstractApplication):
    partner_code = models.CharField(max_length=20, blank=True)
