"""The declared applications really work: a real OAuth client (requests-oauthlib, built on oauthlib) against
tests/django_project served over HTTP (the live_server fixture), on the database the playbooks write.

Every application is declared once per backend by one ansible-playbook task from one list (the `clients`
fixture); the rotation test re-declares its two. Every refusal is checked for its reason (invalid_client,
invalid_grant, a bearer token refused), so a request failing for another reason (a wrong URL, a server error)
fails the test instead of passing it. Secrets and tokens are made here, handed to ansible-playbook in its vars
file, and checked to be absent from its output.
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
from test_oauth_application import stored_client_secrets

# DOT's own token endpoint verifies the secrets the module stored: with the project's default hasher
# (PBKDF2), as in production (on SQLite; see provisioning.uses_real_hasher).
pytestmark = pytest.mark.real_hasher

TIMEOUT = 10  # seconds for one HTTP request to the loopback server
REFUSED = (401, 403)  # DOT's ProtectedResourceView answers 403; its RFC 6750 variant 401
REDIRECT_URI = "https://spa.example.com/callback"  # never served: the test reads the code from the redirect

SERVICE = "live-service"  # confidential, client credentials, secret hashed (DOT's default)
HASHED = "live-hashed"  # the rotation test's two: the secret stored hashed ...
UNHASHED = "live-unhashed"  # ... and unhashed
SPA = "live-spa"  # public, authorization code with PKCE, no consent screen


@pytest.fixture(autouse=True)
def plain_http(monkeypatch):
    """oauthlib's clients refuse http:// unless told; the server is on loopback only."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def new_secret():
    return secrets.token_urlsafe(24)


def declare(runner, applications, hidden=(), **extra_vars):
    """Declare `applications` (items of oauth_application options) with ansible-playbook; client_id -> result.

    Neither a declared secret, a generated one nor anything in `hidden` may appear in the output."""
    output = runner.run("live_declare.yml", dict(extra_vars, live_applications=applications))
    results = json.loads((runner.workdir / "declared.json").read_text())
    by_client_id = {}
    for result in results:
        client_id = result["client_id"]
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


class Clients:
    """What the `clients` fixture declared: the runner that did it, and the secrets it declared."""

    def __init__(self, runner, declared_secrets, results):
        self.runner = runner
        self.secrets = declared_secrets
        self.results = results


@pytest.fixture(scope="module")
def clients(module_playbook):
    declared_secrets = {client_id: new_secret() for client_id in (SERVICE, HASHED, UNHASHED)}
    applications = [
        confidential_service(SERVICE, declared_secrets[SERVICE]),
        confidential_service(HASHED, declared_secrets[HASHED], hash_client_secret=True),
        confidential_service(UNHASHED, declared_secrets[UNHASHED], hash_client_secret=False),
        dict(
            client_id=SPA,
            name="Live test single-page app",
            client_type="public",
            authorization_grant_type="authorization-code",
            redirect_uris=[REDIRECT_URI],
            skip_authorization=True,
        ),
    ]
    # live_clear_expired: the cleanup test counts the expired tokens it makes, so none may be left over.
    results = declare(module_playbook, applications, live_clear_expired=True)
    for client_id, result in results.items():
        assert result["changed"], "%s was not created" % client_id
        if client_id in declared_secrets:
            assert "client_secret" not in result, "a declared secret is never returned"
    return Clients(module_playbook, declared_secrets, results)


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


def test_client_credentials(clients, live_server):
    secret = clients.secrets[SERVICE]
    # What the token endpoint verifies below is a hash made with the project's default hasher on SQLite
    # (real_hasher), with MD5 on the other backends.
    stored = stored_client_secrets(clients.runner.django_env(), SERVICE)
    expected = "pbkdf2_sha256$" if clients.runner.real_hasher else "md5$"
    assert stored[SERVICE].startswith(expected), "not hashed as %s: %s" % (expected, stored[SERVICE][:16])
    token = client_credentials_token(live_server, SERVICE, secret)
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    assert_accepted(live_server, token["access_token"], user=None, client_id=SERVICE, scopes=["read"])

    assert_refused(live_server, None, "no token")
    assert_refused(live_server, token["access_token"][:-4] + "xxxx", "a wrong token")
    assert_invalid_client(live_server, SERVICE, secret + "x", "a wrong secret")
    assert_invalid_client(live_server, SERVICE + "-unknown", secret, "an unknown client_id")


def test_rotated_secrets(clients, live_server):
    """Each of a hashed and an unhashed application has its declared secret replaced by another (update_secret
    always) and rotated with regenerate_secret, in turn: each time the old secret is refused (invalid_client)
    and the new one works."""
    hashed = {HASHED: True, UNHASHED: False}
    current = dict((client_id, clients.secrets[client_id]) for client_id in hashed)
    for client_id in hashed:
        client_credentials_token(live_server, client_id, current[client_id])

    # First the hashed one's secret is replaced and the unhashed one's regenerated, then the other way round.
    for regenerated in (UNHASHED, HASHED):
        replacements = dict((client_id, new_secret()) for client_id in hashed if client_id != regenerated)
        applications = [
            dict(client_id=regenerated, hash_client_secret=hashed[regenerated], regenerate_secret=True)
        ] + [
            confidential_service(client_id, secret, hash_client_secret=hashed[client_id], update_secret="always")
            for client_id, secret in replacements.items()
        ]
        declared = declare(clients.runner, applications, hidden=current.values())
        new = dict(replacements, **{regenerated: declared[regenerated]["client_secret"]})
        assert len(new[regenerated]) >= 32
        for client_id in hashed:
            assert declared[client_id]["changed"], "%s: the new secret was not stored" % client_id
            assert declared[client_id]["application"]["hash_client_secret"] is hashed[client_id]
            assert_invalid_client(live_server, client_id, current[client_id], "the old secret of %s" % client_id)
            token = client_credentials_token(live_server, client_id, new[client_id])
            assert_accepted(live_server, token["access_token"], client_id=client_id)
        current = new


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


def authorize(server, username, password):
    """Authorization code with PKCE (S256) for the public client: the user logs in through the login form, DOT
    redirects to the (unserved) redirect URI with a code. (code, verifier, the client's session)."""
    oauth = WebApplicationClient(SPA)
    verifier = oauth.create_code_verifier(64)
    challenge = oauth.create_code_challenge(verifier, "S256")
    session = OAuth2Session(client=oauth, redirect_uri=REDIRECT_URI, scope=["read"])
    authorize_url, state = session.authorization_url(
        server.url("/o/authorize/"), code_challenge=challenge, code_challenge_method="S256"
    )

    browser = requests.Session()
    to_login = browser.get(authorize_url, allow_redirects=False, timeout=TIMEOUT)
    assert to_login.status_code == 302 and "/accounts/login/" in to_login.headers["Location"], server.log_tail()
    parts = urllib.parse.urlsplit(authorize_url)
    back_to_authorize = log_in(server, browser, username, password, parts.path + "?" + parts.query)
    assert back_to_authorize == parts.path + "?" + parts.query
    to_client = browser.get(server.url(back_to_authorize), allow_redirects=False, timeout=TIMEOUT)
    assert to_client.status_code == 302, "the authorization was not granted\n%s" % server.log_tail()
    callback = to_client.headers["Location"]
    assert callback.startswith(REDIRECT_URI + "?"), "DOT redirected to %s" % callback.split("?")[0]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query)
    assert query["state"] == [state]
    return query["code"][0], verifier, session


def test_public_client_with_pkce(clients, live_server):
    """Authorization code with PKCE for a public client: the client exchanges the code without a secret, and
    only with the right verifier."""
    username, password = "live-alice", new_secret()
    create_user(clients.runner.django_env(), username, password)
    code, verifier, session = authorize(live_server, username, password)

    token_url = live_server.url("/o/token/")
    for verifier_sent, error in ((None, "invalid_request"), (verifier[::-1], "invalid_grant")):
        # Without the verifier, or with another one, the code is refused: PKCE is really enforced.
        with pytest.raises(OAuth2Error) as refused:
            OAuth2Session(client=WebApplicationClient(SPA), redirect_uri=REDIRECT_URI).fetch_token(
                token_url, code=code, code_verifier=verifier_sent, include_client_id=True, timeout=TIMEOUT
            )
        assert refused.value.error == error, "%s\n%s" % (refused.value, live_server.log_tail())

    token = session.fetch_token(token_url, code=code, code_verifier=verifier, include_client_id=True, timeout=TIMEOUT)
    assert token["token_type"] == "Bearer" and token.get("refresh_token")
    assert_accepted(live_server, token["access_token"], user=username, client_id=SPA, scopes=["read"])


def test_token_removed_by_cleanup_is_refused(clients, live_server):
    """A token expires (its `expires` moves into the past, in the database), oauth_token_cleanup deletes it and
    reports exactly that one; the protected view refuses it, and a live token of the same client still works."""
    secret = clients.secrets[SERVICE]
    doomed = client_credentials_token(live_server, SERVICE, secret)["access_token"]
    fresh = client_credentials_token(live_server, SERVICE, secret)["access_token"]
    for token in (doomed, fresh):
        assert_accepted(live_server, token, client_id=SERVICE)

    output = clients.runner.run("live_cleanup.yml", {"expired_token": doomed})
    assert doomed not in output and fresh not in output

    assert_refused(live_server, doomed, "a token the cleanup deleted")
    assert_accepted(live_server, fresh, client_id=SERVICE)


def refresh(server, refresh_token):
    """The public client's refresh grant at /o/token/: the answer's status and JSON."""
    answer = requests.post(
        server.url("/o/token/"),
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": SPA},
        timeout=TIMEOUT,
    )
    return answer.status_code, answer.json()


def test_revoked_tokens_are_refused_and_others_still_work(clients, live_server):
    """oauth_token_revoke of one user: before, the user's access token works and its refresh token refreshes;
    after, the access token is refused, the refresh gets invalid_grant, and a token of an application and user
    that were not selected (the service's, which has no user) still works."""
    username, password = "live-leaver", new_secret()
    create_user(clients.runner.django_env(), username, password)
    code, verifier, session = authorize(live_server, username, password)
    first = session.fetch_token(
        live_server.url("/o/token/"), code=code, code_verifier=verifier, include_client_id=True, timeout=TIMEOUT
    )
    assert_accepted(live_server, first["access_token"], user=username, client_id=SPA)
    status, token = refresh(live_server, first["refresh_token"])
    assert status == 200 and token.get("refresh_token"), "the refresh failed: %s %s" % (status, token)
    assert_accepted(live_server, token["access_token"], user=username, client_id=SPA)
    other = client_credentials_token(live_server, SERVICE, clients.secrets[SERVICE])["access_token"]

    output = clients.runner.run("live_revoke.yml", {"revoked_user": username})
    assert not [value for value in (token["access_token"], token["refresh_token"], other) if value in output]

    assert_refused(live_server, token["access_token"], "an access token of the revoked user")
    status, refused = refresh(live_server, token["refresh_token"])
    assert (status, refused.get("error")) == (400, "invalid_grant"), "%s %s\n%s" % (status, refused, live_server.log_tail())
    assert_accepted(live_server, other, client_id=SERVICE)
