"""Tells the tests whether a secret (read from stdin, never argv) opens an application.

Input: {"client_id": "...", "secret": "..."}; output: {"matches": bool, "hashed": bool}.
This is how a client would be authenticated, so it proves a stored secret works.
"""
import json
import sys

from django.contrib.auth.hashers import check_password, identify_hasher
from django.core.management.base import BaseCommand
from oauth2_provider.models import get_application_model


class Command(BaseCommand):
    help = "Check a client secret given on stdin against the stored one"

    def handle(self, *args, **options):
        request = json.load(sys.stdin)
        stored = get_application_model().objects.get(client_id=request["client_id"]).client_secret
        try:
            identify_hasher(stored)
            hashed = True
        except ValueError:
            hashed = False
        matches = check_password(request["secret"], stored) if hashed else stored == request["secret"]
        self.stdout.write(json.dumps({"matches": matches, "hashed": hashed}))
