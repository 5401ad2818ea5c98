"""The declared applications really work: a real OAuth client (requests-oauthlib, built on oauthlib) against
tests/django_project served over HTTP (the live_server fixture), on the database the playbooks write.

Every refusal is checked for its reason (invalid_client, a refused bearer token), so a request failing for
another reason (a wrong URL, a server error) fails the test instead of passing it. Secrets and tokens are made
here, handed to ansible-playbook in its vars file, and checked to be absent from its output.
"""

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.parse

import pytest
import requests
from oauthlib.oauth2 import BackendApplicationClient, InvalidClientError, OAuth2Error, WebApplicationClient
from requests_oauthlib import OAuth2Session

from provisioning import DJANGO_PROJECT

TIMEOUT = 10  # seconds for one HTTP request to the loopback server
REFUSED = (401, 403)  # DOT's ProtectedResourceView answers 403; its RFC 6750 variant 401
REDIRECT_URI = "https://spa.example.com/callback"  # never served: the test reads the code from the redirect


@pytest.fixture(autouse=True)
def plain_http(monkeypatch):
    """oauthlib's clients refuse http:// unless told; the server is on loopback only."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def new_secret():
    return secrets.token_urlsafe(24)


def declare(playbook, applications, hidden=()):
    """Declare `applications` (items of oauth_application options) with ansible-playbook; client_id -> result.

    Neither a declared secret, a generated one nor anything in `hidden` may appear in the output."""
    output = playbook.run("live_declare.yml", {"live_applications": applications})
    results = json.loads((playbook.workdir / "declared.json").read_text())
    by_client_id = {}
    for result in results:
        # oauth_applications names the client_id in each item; a loop of oauth_application in item.client_id.
        client_id = result["client_id"] if "client_id" in result else result["item"]["client_id"]
        by_client_id[client_id] = result
    assert sorted(by_client_id) == sorted(app["client_id"] for app in applications)
    leaked = [
        value
        for value in [app.get("client_secret") for app in applications]
        + [result.get("client_secret") for result in results]
        + list(hidden)
        if value and value in output
    ]
    assert not leaked, "%d secret(s) or token(s) appeared in the output of ansible-playbook" % len(leaked)
    return by_client_id


def confidential_service(client_id, secret, **options):
    return dict(
        client_id=client_id,
        name="Live test service",
        client_type="confidential",
        authorization_grant_type="client-credentials",
        client_secret=secret,
        **options
    )


def client_credentials_token(server, client_id, secret, scope="read"):
    """A token from /o/token/ for a confidential client (RFC 6749 4.4), its secret in HTTP Basic auth."""
    # The scope goes on the oauthlib client: requests-oauthlib sends a session's scope only to /o/authorize/.
    session = OAuth2Session(client=BackendApplicationClient(client_id=client_id, scope=[scope]))
    return session.fetch_token(server.url("/o/token/"), client_id=client_id, client_secret=secret, timeout=TIMEOUT)


def assert_invalid_client(server, client_id, secret, why):
    with pytest.raises(InvalidClientError) as refused:
        client_credentials_token(server, client_id, secret)
    assert refused.value.error == "invalid_client", "%s: %s\n%s" % (why, refused.value, server.log_tail())


def hello(server, access_token=None):
    """The protected view, with the token as a bearer token (or none)."""
    headers = {} if access_token is None else {"Authorization": "Bearer " + access_token}
    return requests.get(server.url("/api/hello/"), headers=headers, timeout=TIMEOUT)


def assert_accepted(server, access_token, **expected):
    answer = hello(server, access_token)
    assert answer.status_code == 200, "the protected view refused a valid token: %s\n%s" % (
        answer.status_code,
        server.log_tail(),
    )
    body = answer.json()
    for key, value in expected.items():
        assert body[key] == value, "the protected view answered %s" % body


def assert_refused(server, access_token, why):
    answer = hello(server, access_token)
    assert answer.status_code in REFUSED, "%s: the protected view answered %s\n%s" % (
        why,
        answer.status_code,
        server.log_tail(),
    )


def test_client_credentials(playbook, live_server):
    client_id, secret = playbook.prefix + "-service", new_secret()
    declare(playbook, [confidential_service(client_id, secret)])

    token = client_credentials_token(live_server, client_id, secret)
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    assert_accepted(live_server, token["access_token"], user=None, client_id=client_id, scopes=["read"])

    assert_refused(live_server, None, "no token")
    assert_refused(live_server, token["access_token"][:-4] + "xxxx", "a wrong token")
    assert_invalid_client(live_server, client_id, secret + "x", "a wrong secret")
    assert_invalid_client(live_server, client_id + "-unknown", secret, "an unknown client_id")


def test_rotated_secrets(playbook, live_server):
    """A declared secret replaced by another, then rotated with regenerate_secret: each time the old secret
    is refused (invalid_client) and the new one works, whether DOT stores the secret hashed or not."""
    client_ids = {hashed: "%s-%s" % (playbook.prefix, "hashed" if hashed else "unhashed") for hashed in (True, False)}

    first = {hashed: new_secret() for hashed in client_ids}
    declared = declare(
        playbook,
        [confidential_service(client_id, first[hashed], hash_client_secret=hashed) for hashed, client_id in client_ids.items()],
    )
    for hashed, client_id in client_ids.items():
        assert declared[client_id]["changed"]
        assert "client_secret" not in declared[client_id], "a declared secret is never returned"
        client_credentials_token(live_server, client_id, first[hashed])

    second = {hashed: new_secret() for hashed in client_ids}
    declared = declare(
        playbook,
        [
            confidential_service(client_id, second[hashed], hash_client_secret=hashed, update_secret="always")
            for hashed, client_id in client_ids.items()
        ],
        hidden=first.values(),
    )
    for hashed, client_id in client_ids.items():
        assert declared[client_id]["changed"]
        assert_invalid_client(live_server, client_id, first[hashed], "the replaced secret of %s" % client_id)
        token = client_credentials_token(live_server, client_id, second[hashed])
        assert_accepted(live_server, token["access_token"], client_id=client_id)

    declared = declare(
        playbook,
        [
            {"client_id": client_id, "hash_client_secret": hashed, "regenerate_secret": True}
            for hashed, client_id in client_ids.items()
        ],
        hidden=list(first.values()) + list(second.values()),
    )
    for hashed, client_id in client_ids.items():
        generated = declared[client_id]["client_secret"]
        assert declared[client_id]["changed"] and len(generated) >= 32
        assert_invalid_client(live_server, client_id, second[hashed], "the rotated-out secret of %s" % client_id)
        token = client_credentials_token(live_server, client_id, generated)
        assert_accepted(live_server, token["access_token"], client_id=client_id)


def create_user(env, username, password):
    """A user who can log in, made by Django's own create_user() (password on stdin, not argv)."""
    script = (
        "import sys; from django.contrib.auth import get_user_model; "
        "get_user_model().objects.create_user(%r, password=sys.stdin.read())" % username
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=DJANGO_PROJECT,
        env=dict(os.environ, **env),
        input=password,
        capture_output=True,
        text=True,
        check=True,
    )


def log_in(server, browser, username, password, next_url):
    """Through the login form, as a person would: the CSRF token from the page, then the POST."""
    page = browser.get(server.url("/accounts/login/"), params={"next": next_url}, timeout=TIMEOUT)
    assert page.status_code == 200, server.log_tail()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = browser.post(
        page.url,
        data={"csrfmiddlewaretoken": csrf, "username": username, "password": password, "next": next_url},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert answer.status_code == 302, "the login failed (%s)\n%s" % (answer.status_code, server.log_tail())
    return answer.headers["Location"]


def test_public_client_with_pkce(playbook, live_server):
    client_id = playbook.prefix + "-spa"
    username, password = playbook.prefix + "-alice", new_secret()
    create_user(playbook.django_env(), username, password)
    declare(
        playbook,
        [
            dict(
                client_id=client_id,
                name="Live test single-page app",
                client_type="public",
                authorization_grant_type="authorization-code",
                redirect_uris=[REDIRECT_URI],
                skip_authorization=True,
            )
        ],
    )

    oauth = WebApplicationClient(client_id)
    verifier = oauth.create_code_verifier(64)
    challenge = oauth.create_code_challenge(verifier, "S256")
    session = OAuth2Session(client=oauth, redirect_uri=REDIRECT_URI, scope=["read"])
    authorize_url, state = session.authorization_url(
        live_server.url("/o/authorize/"), code_challenge=challenge, code_challenge_method="S256"
    )

    browser = requests.Session()
    to_login = browser.get(authorize_url, allow_redirects=False, timeout=TIMEOUT)
    assert to_login.status_code == 302 and "/accounts/login/" in to_login.headers["Location"], live_server.log_tail()
    parts = urllib.parse.urlsplit(authorize_url)
    back_to_authorize = log_in(live_server, browser, username, password, parts.path + "?" + parts.query)
    assert back_to_authorize == parts.path + "?" + parts.query
    to_client = browser.get(live_server.url(back_to_authorize), allow_redirects=False, timeout=TIMEOUT)
    assert to_client.status_code == 302, "the authorization was not granted\n%s" % live_server.log_tail()
    callback = to_client.headers["Location"]
    assert callback.startswith(REDIRECT_URI + "?"), "DOT redirected to %s" % callback.split("?")[0]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query)
    assert query["state"] == [state]
    code = query["code"][0]

    token_url = live_server.url("/o/token/")
    for verifier_sent, error in ((None, "invalid_request"), (verifier[::-1], "invalid_grant")):
        # Without the verifier, or with another one, the code is refused: PKCE is really enforced.
        with pytest.raises(OAuth2Error) as refused:
            OAuth2Session(client=WebApplicationClient(client_id), redirect_uri=REDIRECT_URI).fetch_token(
                token_url, code=code, code_verifier=verifier_sent, include_client_id=True, timeout=TIMEOUT
            )
        assert refused.value.error == error, "%s\n%s" % (refused.value, live_server.log_tail())

    token = session.fetch_token(token_url, code=code, code_verifier=verifier, include_client_id=True, timeout=TIMEOUT)
    assert token["token_type"] == "Bearer" and token.get("refresh_token")
    assert_accepted(live_server, token["access_token"], user=username, client_id=client_id, scopes=["read"])


def test_token_removed_by_cleanup_is_refused(playbook, live_server):
    client_id, secret = playbook.prefix + "-service", new_secret()
    declare(playbook, [confidential_service(client_id, secret)])
    doomed = client_credentials_token(live_server, client_id, secret)["access_token"]
    fresh = client_credentials_token(live_server, client_id, secret)["access_token"]
    for token in (doomed, fresh):
        assert_accepted(live_server, token, client_id=client_id)

    output = playbook.run("live_cleanup.yml", {"expired_token": doomed})
    assert doomed not in output and fresh not in output

    assert_refused(live_server, doomed, "a token the cleanup deleted")
    assert_accepted(live_server, fresh, client_id=client_id)
