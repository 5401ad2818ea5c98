# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options that declare one application.

oauth_application takes them as its own options; oauth_applications takes a list of them
(`options=application_argument_spec()` with the same `mutually_exclusive`), so every application
is declared in the same words and reaches the same reconcile function
(`_django_applications.plan_application`), which refuses unsafe values itself.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

GRANT_TYPES = [
    "authorization-code",
    "implicit",
    "password",
    "client-credentials",
    "openid-hybrid",
    "urn:ietf:params:oauth:grant-type:device_code",
]

APPLICATION_MUTUALLY_EXCLUSIVE = [("client_secret", "regenerate_secret")]


def application_argument_spec():
    return dict(
        client_id=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        name=dict(type="str"),
        client_type=dict(type="str", choices=["confidential", "public"]),
        authorization_grant_type=dict(type="str", choices=GRANT_TYPES),
        redirect_uris=dict(type="list", elements="str"),
        post_logout_redirect_uris=dict(type="list", elements="str"),
        allowed_origins=dict(type="list", elements="str"),
        user=dict(type="raw"),
        user_lookup=dict(type="str", choices=["auto", "username", "pk"], default="auto"),
        skip_authorization=dict(type="bool"),
        algorithm=dict(type="str", choices=["none", "RS256", "HS256"]),
        client_secret=dict(type="str", no_log=True),
        hash_client_secret=dict(type="bool"),
        update_secret=dict(type="str", choices=["always", "on_create"], default="always", no_log=False),
        regenerate_secret=dict(type="bool", default=False, no_log=False),
        revoke_tokens=dict(type="str", choices=["never", "on_secret_change"], default="never", no_log=False),
        extra_fields=dict(type="dict"),
    )
