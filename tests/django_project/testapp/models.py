"""A project model that points at DOT's tables, as real projects do (audit trails,
sessions bound to a token). Token cleanup must honour these relations' on_delete."""
from django.db import models
from oauth2_provider.settings import oauth2_settings


class TokenAudit(models.Model):
    access_token = models.ForeignKey(
        oauth2_settings.ACCESS_TOKEN_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    note = models.CharField(max_length=100, blank=True)


class TokenSession(models.Model):
    access_token = models.ForeignKey(
        oauth2_settings.ACCESS_TOKEN_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
