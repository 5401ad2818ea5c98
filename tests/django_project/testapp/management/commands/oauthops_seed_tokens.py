"""Writes a small, known token backlog for the oauth_token_cleanup integration tests.

With the test project's settings (no REFRESH_TOKEN_EXPIRE_SECONDS, no grace period) and DOT
3.4.1, a cleanup deletes: 5 revoked refresh tokens, 1 orphaned refresh token, 0 expired
refresh tokens, 7 access tokens (5 that never had a refresh token, 2 freed when their revoked
refresh token goes), 2 ID tokens and 3 grants; 5 TokenAudit rows go with their access tokens
(CASCADE). Everything else it writes is live and stays. Timestamps are a day or more away
from now, so the counts do not depend on when the cleanup runs.
"""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import router
from django.utils import timezone
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

from testapp.models import TokenAudit, TokenSession


class Command(BaseCommand):
    help = "Write a known backlog of expired, revoked and live tokens"

    def add_arguments(self, parser):
        parser.add_argument("prefix", help="makes the tokens of this run unique")

    def handle(self, *args, prefix, **options):
        now = timezone.now()
        past, future = now - timedelta(days=1), now + timedelta(days=1)
        # The owner lives where DOT's tables do (the routed variant keeps them on a second database).
        users = get_user_model()._default_manager.db_manager(router.db_for_write(get_application_model()))
        user = users.get_or_create(username=prefix + "-tokens")[0]
        application = get_application_model().objects.get_or_create(
            client_id=prefix + "-tokens",
            defaults=dict(user=user, client_type="confidential", authorization_grant_type="password"),
        )[0]
        owner = dict(user=user, application=application)
        serial = iter(range(10**6))
        access_model, refresh_model = get_access_token_model(), get_refresh_token_model()

        def access(expires, **fields):
            return access_model.objects.create(
                token="%s-a%d" % (prefix, next(serial)), expires=expires, **owner, **fields
            )

        def refresh(access_token, revoked=None):
            token = "%s-r%d" % (prefix, next(serial))
            return refresh_model.objects.create(token=token, access_token=access_token, revoked=revoked, **owner)

        expired = [access(past) for unused in range(5)]
        for token in expired:
            TokenAudit.objects.create(access_token=token, note="expired, no refresh token")
        TokenSession.objects.create(access_token=expired[0])  # SET_NULL: the session stays
        for unused in range(2):
            refresh(access(past), revoked=past)  # revoked yet still bound: both go
        for unused in range(3):
            refresh(None, revoked=past)
        refresh(None)  # orphan

        id_model = get_id_token_model()
        live_id_token = id_model.objects.create(expires=past, **owner)
        for index in range(4):
            refresh(access(future, id_token=live_id_token if index == 0 else None))
        refresh(access(past))  # expired, but its live refresh token keeps it
        for unused in range(2):
            id_model.objects.create(expires=past, **owner)

        grant_model = get_grant_model()
        for expires in (past, past, past, future):
            grant_model.objects.create(
                code="%s-g%d" % (prefix, next(serial)),
                expires=expires,
                redirect_uri="https://app.example.com/cb",
                **owner
            )
