#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: oauth_application
short_description: Create, update or delete a Django OAuth Toolkit application
version_added: 0.1.0
description:
  - Declares one OAuth application (client) of a Django project that uses Django OAuth Toolkit (C(oauth2_provider)).
  - The application is identified by O(client_id). Only the options given in the task are managed; the others keep
    their stored value (or DOT's default when the application is created).
  - Validation is the application model's own C(full_clean()), so the rules of the installed DOT version apply exactly
    as in the Django admin. Swapped application models (E(OAUTH2_PROVIDER_APPLICATION_MODEL)) are supported.
  - Every write runs in one database transaction; a failed task leaves the database as it was.
  - On MySQL and MariaDB, a write is refused before anything is written when a table it would write cannot roll
    back (see O(state)).
author:
  - oauthops.toolkit maintainers (@oauthops)
extends_documentation_fragment:
  - oauthops.toolkit.django
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Validates and predicts the change and the diff, but never saves, so no model signal fires.
      - Tables that cannot roll back (see O(state)) only need to for a write; check mode warns about them instead
        of failing.
  diff_mode:
    support: full
    details: The client secret is never shown; the diff says only whether it changes.
  platform:
    platforms: posix
options:
  client_id:
    description:
      - The application's client ID, its identity.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the application, V(absent) deletes it.
      - Deleting an application also deletes its tokens and grants (DOT's foreign keys cascade).
      - On MySQL and MariaDB the task is refused before anything is written when a table the write would touch
        uses a storage engine without transactions (MyISAM, Aria, MEMORY, as the server's
        C(information_schema.ENGINES) says), since a failure midway could not be rolled back. These are the
        application table for a create or update, and for a deletion also every table it cascades into or sets
        null in (DOT's tokens and grants, the project's models pointing at them). The message names each table
        and its engine; convert them with C(ALTER TABLE <table> ENGINE=InnoDB). Check mode writes nothing and
        only warns.
    type: str
    choices: [present, absent]
    default: present
  name:
    description: Human-readable name.
    type: str
  client_type:
    description:
      - Client type per RFC 6749 section 2.1. Required when the application is created.
    type: str
    choices: [confidential, public]
  authorization_grant_type:
    description:
      - Grant type of the application. Required when the application is created.
      - The device-code grant (V(urn:ietf:params:oauth:grant-type:device_code)) needs a DOT version that has it;
        the installed DOT rejects a choice it does not know.
    type: str
    choices:
      - authorization-code
      - implicit
      - password
      - client-credentials
      - openid-hybrid
      - urn:ietf:params:oauth:grant-type:device_code
  redirect_uris:
    description:
      - Allowed redirect URIs; stored as DOT's space-separated text. V([]) clears them.
      - An item that is empty or holds whitespace is refused, since DOT would read it as several URIs (or none).
      - DOT requires at least one for the authorization-code, implicit and OpenID hybrid grants, and checks each
        scheme against E(ALLOWED_REDIRECT_URI_SCHEMES).
    type: list
    elements: str
  post_logout_redirect_uris:
    description:
      - URIs allowed after an RP-initiated logout. V([]) clears them.
      - An item that is empty or holds whitespace is refused, as for O(redirect_uris).
      - DOT 2.3 and later; on an earlier one the task fails, saying the installed application model does not
        support it.
    type: list
    elements: str
  allowed_origins:
    description:
      - Origins allowed for CORS requests to the token endpoint. V([]) clears them.
      - An item that is empty or holds whitespace is refused, as for O(redirect_uris).
      - DOT 2.4 and later; on an earlier one the task fails, saying the installed application model does not
        support it.
    type: list
    elements: str
  user:
    description:
      - Owner of the application, as a username (the user model's C(USERNAME_FIELD), for example an email
        address) or a primary key, as O(user_lookup) says. An empty string removes the owner.
    type: raw
  user_lookup:
    version_added: 0.2.0
    description:
      - How O(user) names the owner.
      - V(auto) accepts a username or a primary key. A value that is the username of one user and the primary key
        of another (V(12) when user 7 is called C(12)) fails the task, naming both users, rather than guessing;
        choose with V(username) or V(pk).
      - V(username) looks the value up in C(USERNAME_FIELD) only, V(pk) in the primary key only.
    type: str
    choices: [auto, username, pk]
    default: auto
  skip_authorization:
    description: Skip the user's consent screen for this application.
    type: bool
  algorithm:
    description:
      - OpenID Connect signing algorithm; V(none) disables OIDC for the application.
      - V(RS256) needs E(OIDC_RSA_PRIVATE_KEY) in the project's settings; V(HS256) needs a confidential client and
        an unhashed secret (O(hash_client_secret=false), DOT 2.4 and later).
    type: str
    choices: [none, RS256, HS256]
  client_secret:
    description:
      - The client secret to store. Without it, a new application gets a secret generated by DOT, returned once in
        RV(client_secret), and only to a task with C(no_log) (see the notes).
      - To have a secret generated and still need no C(no_log), generate it on the controller, where it is kept
        for the next run and for the client, with the P(ansible.builtin.password#lookup) lookup (see the examples).
      - DOT hashes the secret on save when O(hash_client_secret) is true (always, before DOT 2.4), with a random
        salt, so the module verifies the declared secret against the stored hash with Django's C(check_password())
        instead of comparing values.
      - A value that already is a Django password hash is stored as given.
      - An empty string, or one of whitespace only, is refused (it usually comes from a lookup or a C(default(''))
        that found nothing, and DOT would accept it as the secret). Leave the option out to keep the stored
        secret, or use O(regenerate_secret) for a new one.
      - A secret with leading or trailing whitespace is refused too (a templating slip, such as the line break a
        C(>) block adds, which every client would have to send too); remove it, for example with C(| trim).
      - Public clients have a secret too (DOT generates one as for confidential clients and checks it whenever a
        client presents one), and the module treats it the same way.
    type: str
  hash_client_secret:
    description:
      - Whether DOT stores the secret hashed (DOT's default for new applications is V(true)).
      - Turning hashing off needs O(client_secret), since a stored hash cannot be turned back into the secret.
      - DOT before 2.4 has no such setting and hashes every secret. There V(true) changes nothing, and V(false)
        fails the task, naming the installed DOT release, rather than being ignored.
    type: bool
  update_secret:
    description:
      - V(always) makes the stored secret match O(client_secret).
      - V(on_create) uses O(client_secret) only when the application is created.
    type: str
    choices: [always, on_create]
    default: always
  regenerate_secret:
    version_added: 0.2.0
    description:
      - Rotate the secret. DOT generates a new one, the module stores it (hashed when O(hash_client_secret) is on)
        and returns it once in RV(client_secret), only to a task with C(no_log) (see the notes); the old secret
        stops working at once.
      - Tokens issued before the rotation stay valid until they expire or are revoked (DOT does not tie them to
        the secret). If the old secret leaked, revoke them in the same task with O(revoke_tokens=on_secret_change),
        or with M(oauthops.toolkit.oauth_token_revoke).
      - Mutually exclusive with O(client_secret).
      - Every run with V(true) rotates again and reports a change, so run it on purpose (a separate play, a tag or
        a condition), not in the play that keeps the application declared.
      - In check mode the task reports the change, and generates and returns no secret.
      - A secret that nobody stored (the play failed before the task that stores it, see the notes) is recovered by
        rotating again with V(true) for that application.
    type: bool
    default: false
  revoke_tokens:
    version_added: 0.3.0
    description:
      - V(on_secret_change) revokes every token of the application when this task changes its stored secret (a
        changed O(client_secret), or O(regenerate_secret=true)), in the same transaction as the new secret, so
        nothing issued under the old secret outlives it. Access tokens, ID tokens and grants are deleted and
        refresh tokens are marked revoked, exactly as M(oauthops.toolkit.oauth_token_revoke) does it (see there).
      - RV(revoked) and the diff (C(revoked_tokens)) say how many of each kind went; check mode counts them and
        revokes nothing.
      - Creating an application, or a run that keeps the secret, revokes nothing. A secret that is stored again
        only to renew its hash (see the notes of M(oauthops.toolkit.oauth_applications)) counts as changed.
      - V(never) leaves tokens alone.
    type: str
    choices: [never, on_secret_change]
    default: never
  extra_fields:
    version_added: 0.2.0
    description:
      - Further fields of the application model, by field name, for fields no other option names, for example
        the fields of a swapped application model (E(OAUTH2_PROVIDER_APPLICATION_MODEL)) or fields a newer DOT
        adds (C(registration_source) since DOT 3.4.0).
      - Each value is converted by the field (V("3") for an integer field, an ISO 8601 string for a date and
        time) and validated with the rest of the application by the model's C(full_clean()); a field not given
        keeps its stored value.
      - Refused, in one line naming the field, are names that are not a field of the installed model, relations
        (foreign keys, many-to-many), the primary key, fields Django sets itself (C(created), C(updated)), the
        client secret, and fields that another option manages (use that option).
      - C(extra_fields) of RV(application) lists every field this option can set on the installed model.
    type: dict
notes:
  - A secret DOT generates (a create without O(client_secret), or O(regenerate_secret=true)) is returned once, in
    RV(client_secret), and only to a task with C(no_log). A real run that would generate one in a task without
    C(no_log) fails before writing anything, since Ansible would show the secret (at C(-v), in its log, in AWX's
    job events).
  - Check mode never generates or returns a secret, so set such a task's C(no_log) to
    C("{{ not ansible_check_mode }}"). C(ansible-playbook --check --diff) then shows the diff, and the real run
    keeps the secret out of the output (and its diff too). C(ansible_check_mode) follows C(--check); a task's own
    C(check_mode=true) leaves it false, so that task stays hidden.
  - A task that declares O(client_secret) (from Ansible Vault, or generated on the controller with
    the P(ansible.builtin.password#lookup) lookup) needs no C(no_log) at all. Ansible masks O(client_secret), and
    neither RV(application) nor the diff ever holds a secret, so its diff shows in check mode and real runs alike.
  - The module learns C(no_log) from Ansible, which also sets it when C(no_target_syslog) is on; with that setting
    a task without C(no_log) is not refused, and a generated secret shows.
  - A loop of this module writes each item on its own. When one item fails, the secrets DOT generated for the
    others are stored (hashed, so they cannot be read back) and only registered, and the play stops for the host
    before the task that would keep them, so they are lost. Recover by rotating them (O(regenerate_secret=true),
    under C(no_log)) for the applications whose secret nobody stored. To avoid the loss, converge the set with
    M(oauthops.toolkit.oauth_applications), which writes nothing unless every item succeeds, or declare the
    secrets, which then exist on the controller before the module runs.
  - Performance. Each task starts Django once, and a declared O(client_secret) is verified against the stored
    hash on every run with the project's hasher (PBKDF2 by default, about half a second of one core with
    Django 6.1's 1,500,000 iterations), since stored secrets are salted hashes. For more than a few
    applications use M(oauthops.toolkit.oauth_applications), which starts Django once for the whole set and
    verifies the declared secrets in parallel across the host's cores, where a loop of this module pays both
    per item, one after another.
  - A matching declared secret whose stored hash the project's hasher would renew (another hasher, other
    iterations, as after a Django upgrade) is stored again, hashed as the project hashes it now, once. RV(action)
    says V(updated) in that run, and in check mode too.
seealso:
  - name: Django OAuth Toolkit
    description: Documentation of the application model and its settings.
    link: https://django-oauth-toolkit.readthedocs.io/
"""

EXAMPLES = r"""
- name: Declare the shared Django options once for every module of the collection
  module_defaults:
    group/oauthops.toolkit.django:
      project_path: /srv/shop
      virtualenv: /srv/shop/venv
      settings: shop.settings.production
  block:
    - name: A confidential web client whose secret comes from the vault
      oauthops.toolkit.oauth_application:
        client_id: shop-web
        name: Shop web front end
        client_type: confidential
        authorization_grant_type: authorization-code
        redirect_uris:
          - https://shop.example.com/oauth/callback
        post_logout_redirect_uris:
          - https://shop.example.com/
        user: admin
        client_secret: "{{ vault_shop_web_client_secret }}"

    - name: A machine client; DOT generates the secret, returned once; --check --diff still shows the diff
      oauthops.toolkit.oauth_application:
        client_id: billing-worker
        name: Billing worker
        client_type: confidential
        authorization_grant_type: client-credentials
      register: billing
      no_log: "{{ not ansible_check_mode }}"

    - name: A generated secret kept on the controller; the task needs no no_log, its diff always shows
      oauthops.toolkit.oauth_application:
        client_id: reports-worker
        client_type: confidential
        authorization_grant_type: client-credentials
        client_secret: "{{ lookup('ansible.builtin.password', 'credentials/reports-worker', length=64, chars=['ascii_letters', 'digits']) }}"

    - name: An OIDC client that signs ID tokens with HS256 (needs the secret unhashed)
      oauthops.toolkit.oauth_application:
        client_id: reports
        client_type: confidential
        authorization_grant_type: authorization-code
        redirect_uris: [https://reports.example.com/callback]
        algorithm: HS256
        hash_client_secret: false
        client_secret: "{{ vault_reports_client_secret }}"
        update_secret: on_create

    - name: The owner by primary key, where a username could look like one
      oauthops.toolkit.oauth_application:
        client_id: reports
        user: 12
        user_lookup: pk

    - name: Rotate the secret of a machine client; the new one is returned once
      oauthops.toolkit.oauth_application:
        client_id: billing-worker
        regenerate_secret: true
      register: rotated
      no_log: "{{ not ansible_check_mode }}"

    - name: The old secret leaked - rotate it, and revoke every token issued under it in the same transaction
      oauthops.toolkit.oauth_application:
        client_id: billing-worker
        regenerate_secret: true
        revoke_tokens: on_secret_change
      register: rotated
      no_log: "{{ not ansible_check_mode }}"

    - name: Retire an application (its tokens and grants go with it)
      oauthops.toolkit.oauth_application:
        client_id: legacy-app
        state: absent

# Needs a project setting: OAUTH2_PROVIDER_APPLICATION_MODEL, a model of the project's own with a partner_code field
# (DOT's own model has none: there, extra_fields takes only the fields DOT added, such as registration_source)
- name: A field of the project's own (swapped) application model, and one that DOT 3.4.0 added
  oauthops.toolkit.oauth_application:
    project_path: /srv/shop
    virtualenv: /srv/shop/venv
    settings: shop.settings.production
    client_id: partner-42
    client_type: confidential
    authorization_grant_type: client-credentials
    extra_fields:
      partner_code: P-42
      registration_source: manual
  no_log: true
"""

RETURN = r"""
application:
  description:
    - The application as stored after the task (as it would be, in check mode). Never holds the secret.
    - Options the installed application model has no field for are left out (C(post_logout_redirect_uris) before
      DOT 2.3, C(allowed_origins) before 2.4).
    - C(hash_client_secret) is V(true) before DOT 2.4, which hashes every secret.
    - C(extra_fields) holds every field O(extra_fields) can set on the installed model, with its value.
  returned: when O(state=present)
  type: dict
  sample:
    id: 3
    client_id: shop-web
    name: Shop web front end
    client_type: confidential
    authorization_grant_type: authorization-code
    redirect_uris: [https://shop.example.com/oauth/callback]
    post_logout_redirect_uris: [https://shop.example.com/]
    allowed_origins: []
    user: admin
    skip_authorization: false
    algorithm: none
    hash_client_secret: true
    extra_fields: {registration_source: manual, cimd_expires_at: null}
    created: "2026-11-27T10:00:00.000000+00:00"
    updated: "2026-11-27T10:00:00.000000+00:00"
action:
  description:
    - What the task did (or would do, in check mode), in the words of
      RV(oauthops.toolkit.oauth_applications#module:results[].action).
    - Before 0.2.0 the words were V(create), V(update), V(delete) and V(none).
  returned: always
  type: str
  choices: [created, updated, deleted, unchanged]
  sample: updated
revoked:
  version_added: 0.3.0
  description:
    - With O(revoke_tokens=on_secret_change) and a changed secret, the application's tokens revoked (in check mode,
      that would be), per kind, as RV(oauthops.toolkit.oauth_token_revoke#module:revoked) counts them.
  returned: when O(revoke_tokens=on_secret_change) and the secret changed
  type: dict
  sample: {refresh_tokens: 120, access_tokens: 131, id_tokens: 0, grants: 2}
client_secret:
  description:
    - The secret DOT generated, for a new application created without O(client_secret) or for
      O(regenerate_secret=true). Returned only by the run that stored it; it cannot be read back later when the
      secret is hashed.
    - Only a task with C(no_log) gets it; without, such a run is refused (see the notes).
  returned: when the module generated a secret, never in check mode
  type: str
  sample: 8ZkA3o0c2Bu...
django_user:
  version_added: 0.2.0
  description:
    - The user the Django side ran as. Under root it is the one user besides root who can change what the
      Django side loads (the project, the virtualenv, O(pythonpath), O(env_file)), or V(root) when nobody else
      can; see the notes. Otherwise it is the user the module runs as.
  returned: always
  type: str
  sample: shop
database:
  version_added: 0.3.0
  description:
    - The alias in the project's C(DATABASES) that the module worked on, the O(database) given or the one the
      project's C(DATABASE_ROUTERS) chose.
  returned: always
  type: str
  sample: default
"""

from ansible_collections.oauthops.toolkit.plugins.module_utils._application_spec import (
    APPLICATION_MUTUALLY_EXCLUSIVE,
    application_argument_spec,
)
from ansible_collections.oauthops.toolkit.plugins.module_utils.django_bridge import (
    DJANGO_MUTUALLY_EXCLUSIVE,
    DjangoBridge,
    DjangoModule,
    django_argument_spec,
)


def main():
    argument_spec = django_argument_spec()
    argument_spec.update(application_argument_spec())
    module = DjangoModule(
        argument_spec=argument_spec,
        mutually_exclusive=DJANGO_MUTUALLY_EXCLUSIVE + APPLICATION_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    params = dict((name, module.params[name]) for name in application_argument_spec())
    result = DjangoBridge(module).call("application", params)
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
