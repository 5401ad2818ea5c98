"""A project that swaps DOT's access and refresh token models, as DOT documents for extending
them (together, into one app), with primary keys that are not integers: a UUID and a string.
The cleanup engine walks tables in primary-key order and names rows by key, so this is where
it meets keys that do not count up. Installed only when OAUTHOPS_TEST_SWAPPED_TOKENS is set
(see testproject.settings)."""

import secrets
import uuid

from django.db import models
from oauth2_provider.models import AbstractAccessToken, AbstractRefreshToken


def refresh_token_key():
    # Mixed case, so that MariaDB's case-insensitive collation orders the keys its own way.
    return secrets.token_urlsafe(12)


class AccessToken(AbstractAccessToken):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)


class RefreshToken(AbstractRefreshToken):
    id = models.CharField(primary_key=True, max_length=20, default=refresh_token_key, editable=False)
