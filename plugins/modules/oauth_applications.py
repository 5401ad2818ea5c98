#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: oauth_applications
short_description: Converge a whole set of Django OAuth Toolkit applications in one task
version_added: 0.2.0
description:
  - Declares many OAuth applications (clients) of a Django project that uses Django OAuth Toolkit at once. Each
    item of O(applications) takes exactly the options of M(oauthops.toolkit.oauth_application) and is reconciled
    by the same rules, with the same validation (the application model's own C(full_clean())).
  - The whole set costs one Django start-up and one database transaction. Every item is planned and validated
    before anything is written, so one invalid item fails the task, naming every item that failed (by position
    and O(applications[].client_id)) and the field, and nothing changes. Every change applies, or none does.
  - Declared client secrets are verified, and secrets to store are hashed, several at once, one per core of the
    managed host (O(hash_threads)); see the notes for what that costs.
  - With O(exclusive=true), stored applications that are not declared are deleted, as far as
    O(exclusive_filter) makes them eligible. By default only applications an operator registered
    (C(registration_source) V(manual)) are eligible; clients that registered themselves (dynamic client
    registration, Client ID Metadata Documents) are never deleted unless the filter names their source.
  - On MySQL and MariaDB, a set is refused before anything is written when a table it would write cannot
    roll back (see O(applications)).
author:
  - oauthops.toolkit maintainers (@oauthops)
extends_documentation_fragment:
  - oauthops.toolkit.django
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Validates every item and predicts each change, deletions included, but never saves.
      - Refuses what the real run refuses, except tables that cannot roll back, which only a write needs; check
        mode warns about them instead.
  diff_mode:
    support: full
    details:
      - One diff per changed application, headed by its client ID; the deletions of O(exclusive) come first.
      - Client secrets are never shown; the diff says only whether one changes.
  platform:
    platforms: posix
options:
  applications:
    description:
      - The applications to converge. Each item takes the options of M(oauthops.toolkit.oauth_application), with
        the same meaning and defaults; the descriptions there are the reference.
      - A O(applications[].client_id) may appear only once.
      - On MySQL and MariaDB the set is refused before anything is written when a table it would write uses a
        storage engine without transactions (MyISAM, Aria, MEMORY, as the server's C(information_schema.ENGINES)
        says), since a failure midway could not be rolled back. The tables are the application table for a create or
        update, and for a deletion also every table it cascades into or sets null in (DOT's tokens and grants,
        the project's models pointing at them). The message names each table and its engine; convert them with
        C(ALTER TABLE <table> ENGINE=InnoDB). Check mode writes nothing and only warns.
    type: list
    elements: dict
    required: true
    suboptions:
      client_id:
        description: The application's client ID, its identity (O(oauthops.toolkit.oauth_application#module:client_id)).
        type: str
        required: true
      state:
        description: V(present) creates or updates the application, V(absent) deletes it.
        type: str
        choices: [present, absent]
        default: present
      name:
        description: Human-readable name.
        type: str
      client_type:
        description: Client type; required when the application is created.
        type: str
        choices: [confidential, public]
      authorization_grant_type:
        description: Grant type; required when the application is created.
        type: str
        choices:
          - authorization-code
          - implicit
          - password
          - client-credentials
          - openid-hybrid
          - urn:ietf:params:oauth:grant-type:device_code
      redirect_uris:
        description: Allowed redirect URIs, one per item. V([]) clears them.
        type: list
        elements: str
      post_logout_redirect_uris:
        description: URIs allowed after an RP-initiated logout. V([]) clears them. DOT 2.3 and later.
        type: list
        elements: str
      allowed_origins:
        description: Origins allowed for CORS requests to the token endpoint. V([]) clears them. DOT 2.4 and later.
        type: list
        elements: str
      user:
        description: Owner, as a username or a primary key (O(applications[].user_lookup)); V("") removes it.
        type: raw
      user_lookup:
        description: How O(applications[].user) names the owner (O(oauthops.toolkit.oauth_application#module:user_lookup)).
        type: str
        choices: [auto, username, pk]
        default: auto
      skip_authorization:
        description: Skip the user's consent screen.
        type: bool
      algorithm:
        description: OpenID Connect signing algorithm; V(none) disables OIDC for the application.
        type: str
        choices: [none, RS256, HS256]
      client_secret:
        description:
          - The client secret to store, verified against a stored hash rather than compared. An empty or blank
            string, and one with leading or trailing whitespace, are refused. Without it, a new application gets a
            secret generated by DOT, returned once in its item of RV(results), and only to a task with C(no_log)
            (see the notes).
        type: str
      hash_client_secret:
        description:
          - Whether DOT stores the secret hashed.
          - DOT before 2.4 hashes every secret; there V(true) changes nothing and V(false) fails the task (nothing
            changes), naming the installed DOT release.
        type: bool
      update_secret:
        description: V(always) makes the stored secret match; V(on_create) uses it only on creation.
        type: str
        choices: [always, on_create]
        default: always
      regenerate_secret:
        description:
          - Rotate the secret; the new one is returned once in the item's RV(results[].client_secret), only to a
            task with C(no_log). Every run with V(true) rotates again.
          - A secret that nobody stored is recovered by rotating again with V(true) for that application.
          - Mutually exclusive with O(applications[].client_secret).
        type: bool
        default: false
      revoke_tokens:
        description:
          - V(on_secret_change) revokes every token of this application when the task changes its stored secret, in
            the set's transaction (O(oauthops.toolkit.oauth_application#module:revoke_tokens)).
        type: str
        choices: [never, on_secret_change]
        default: never
        version_added: 0.3.0
      extra_fields:
        description: Further model fields (O(oauthops.toolkit.oauth_application#module:extra_fields)).
        type: dict
  hash_threads:
    description:
      - How many client secrets the Django side verifies or hashes at once, each in a thread of its own.
      - A declared O(applications[].client_secret) is verified against its stored hash on every run, and a
        secret to store is hashed (a create or change with O(applications[].client_secret), a rotation with
        O(applications[].regenerate_secret), a renewed hash). Each costs one run of the project's hasher (see the
        notes). Django's stock hashers release Python's global lock while they hash, so the threads use as many
        cores.
      - Defaults to the number of CPUs the Django side may use on the managed host. A lower number leaves cores to
        the applications the host serves; V(1) verifies one secret at a time.
      - Only the hashing runs in these threads. Every query and write runs on the Django side's main thread, in
        the task's one transaction.
    type: int
    version_added: 0.3.0
  exclusive:
    description:
      - Delete the stored applications that O(applications) does not declare and O(exclusive_filter) makes
        eligible, in the same transaction. Their tokens and grants go with them.
      - Check mode and diff mode list these deletions before anything else. Preview them with C(--check --diff)
        on a task whose C(no_log) is false in check mode (see the notes).
      - An empty O(applications) list is refused with O(exclusive=true) (it is most often a variable that did
        not load, and would delete every eligible application); delete applications by name with
        O(applications[].state=absent).
      - So is a set with no item in O(applications[].state=present), which would delete every eligible
        application as well; leave O(exclusive) out to delete just the absent ones.
    type: bool
    default: false
  exclusive_filter:
    description:
      - Which stored applications O(exclusive) may delete; both conditions must hold.
      - With O(exclusive=true), a key given an empty list is refused (it is most often a variable that did not
        load); leave the key out for its default.
    type: dict
    default: {}
    suboptions:
      registration_source:
        description:
          - Only applications registered this way (DOT's C(registration_source)). V(manual) is an operator's
            registration (the admin, C(createapplication), this collection); V(dcr) and V(cimd) are clients that
            registered themselves.
          - A DOT release without C(registration_source) has no self-registration, so there every application
            counts as V(manual).
          - An empty list is refused with O(exclusive=true).
        type: list
        elements: str
        default: [manual]
      client_id:
        description:
          - Only applications whose client ID matches one of these shell-style patterns (C(fnmatch), case
            sensitive), for example V(shop-*). All client IDs when not given.
          - An empty list is refused with O(exclusive=true), rather than read as not given, since an empty pattern
            list from a variable that did not load must not make every client ID eligible.
        type: list
        elements: str
notes:
  - A secret DOT generates (an item created without O(applications[].client_secret), or one with
    O(applications[].regenerate_secret=true)) is returned once, in RV(results[].client_secret), and only to a task
    with C(no_log). A real run that would generate one in a task without C(no_log) fails before writing anything,
    naming those applications, since Ansible would show the secret (at C(-v), in its log, in AWX's job events).
  - Check mode never generates or returns a secret, so set such a task's C(no_log) to
    C("{{ not ansible_check_mode }}"). C(ansible-playbook --check --diff) then shows every change, the
    deletions of O(exclusive) first, and the real run keeps the secrets out of the output (and its diff too).
    C(ansible_check_mode) follows C(--check); a task's own C(check_mode=true) leaves it false, so that task stays
    hidden.
  - A set whose items all declare O(applications[].client_secret) (from Ansible Vault, or generated on the
    controller with the P(ansible.builtin.password#lookup) lookup) needs no C(no_log) at all. Ansible masks every
    O(applications[].client_secret), and neither RV(results[].application) nor the diff ever holds a secret, so
    its diff shows in check mode and real runs alike.
  - The module learns C(no_log) from Ansible, which also sets it when C(no_target_syslog) is on; with that setting
    a task without C(no_log) is not refused, and a generated secret shows.
  - Performance. Converge any set of more than a few applications with this module rather than a loop of
    M(oauthops.toolkit.oauth_application). A loop starts Django once per item and verifies its secrets one after
    another; this module starts Django once and verifies the declared secrets O(hash_threads) at once.
  - What a declared secret costs. Stored secrets are salted hashes, so a declared O(applications[].client_secret)
    is verified with the project's hasher on every run, changed or not; the module never keeps a faster digest
    of a secret. With Django's default hasher, PBKDF2 (1,500,000 iterations in Django 6.1), a verification takes
    about half a second of one core, so a run over N declared secrets costs about one Django start-up plus
    N verifications divided by O(hash_threads) (the host's CPUs). A secret declared with
    O(applications[].update_secret=on_create) is not verified after the create, and costs nothing.
  - Renewed hashes. When the stored hash of a declared secret that matches was made by another hasher, or with
    other iterations, than the project would use now (after a Django upgrade raised PBKDF2's iterations, or a
    change of C(PASSWORD_HASHERS) or DOT's C(CLIENT_SECRET_HASHER)), the run stores the secret again, hashed as
    the project hashes it now, as Django renews a user's password hash at login. That item reports V(updated),
    its diff says the secret changed, check mode says the same, and the next run reports it unchanged. The
    run costs one more hash per renewed secret. A secret that is not declared cannot be renewed; rotate it with
    O(applications[].regenerate_secret).
  - Unlike a loop of M(oauthops.toolkit.oauth_application), a failing set stores nothing, so no generated secret
    is stored without being returned. Once returned, a secret is in the registered result only, and a play that
    fails before a later task keeps it loses it; rotate it then (O(applications[].regenerate_secret=true)).
seealso:
  - module: oauthops.toolkit.oauth_application
    description: One application per task, the same options.
  - module: oauthops.toolkit.oauth_application_info
    description: Read the applications, and query them with JMESPath.
  - name: oauthops.toolkit.applications role
    description: Applications declared in inventory variables, converged by this module.
    link: https://github.com/oauthops/toolkit/tree/main/roles/applications
"""

EXAMPLES = r"""
- name: Converge the shop's clients; nothing else is touched
  oauthops.toolkit.oauth_applications:
    project_path: /srv/shop
    virtualenv: /srv/shop/venv
    settings: shop.settings.production
    applications:
      - client_id: shop-web
        name: Shop web front end
        client_type: confidential
        authorization_grant_type: authorization-code
        redirect_uris: [https://shop.example.com/oauth/callback]
        client_secret: "{{ vault_shop_web_client_secret }}"
      # Needs a project setting: OAUTH2_PROVIDER["ALLOWED_REDIRECT_URI_SCHEMES"] = ["https", "com.example.shop"]
      # (DOT allows only http and https redirects by default; a native app's own scheme must be listed)
      - client_id: shop-mobile
        client_type: public
        authorization_grant_type: authorization-code
        redirect_uris: [com.example.shop:/oauth/callback]
      - client_id: legacy-app
        state: absent
  register: shop_clients
  no_log: "{{ not ansible_check_mode }}"  # DOT generates shop-mobile's secret; --check --diff shows the diff

- name: Say what each client needed (no_log hid it above in a real run)
  ansible.builtin.debug:
    msg: "{{ shop_clients.results | items2dict(key_name='client_id', value_name='action') }}"

- name: The declared set is the whole set of operator-registered shop-* clients; delete the rest
  oauthops.toolkit.oauth_applications:
    project_path: /srv/shop
    virtualenv: /srv/shop/venv
    settings: shop.settings.production
    applications: "{{ shop_oauth_clients }}"
    exclusive: true
    exclusive_filter:
      client_id: ["shop-*"]
  no_log: "{{ not ansible_check_mode }}"  # for generated secrets; --check --diff still previews the deletions

# Needs a project setting: OAUTH2_PROVIDER_APPLICATION_MODEL, a model of the project's own with a partner_code field
# (DOT's own model has none: there, extra_fields takes only the fields DOT added, such as registration_source)
- name: A field of a swapped application model, and one DOT added
  oauthops.toolkit.oauth_applications:
    project_path: /srv/shop
    virtualenv: /srv/shop/venv
    settings: shop.settings.production
    applications:
      - client_id: partner-42
        client_type: confidential
        authorization_grant_type: client-credentials
        extra_fields:
          partner_code: P-42
          registration_source: manual
  no_log: "{{ not ansible_check_mode }}"
"""

RETURN = r"""
results:
  description:
    - One entry per declared application, in the order of O(applications), then one per application that
      O(exclusive) deletes.
  returned: always
  type: list
  elements: dict
  contains:
    client_id:
      description: The application's client ID.
      type: str
    changed:
      description: Whether this application changed (would change, in check mode).
      type: bool
    action:
      description: What happened to this application.
      type: str
      choices: [created, updated, deleted, unchanged]
    declared:
      description: V(false) for an application that O(exclusive) deletes.
      type: bool
    application:
      description:
        - The application as stored after the task, as RV(oauthops.toolkit.oauth_application#module:application)
          returns it; never holds the secret. V(null) when deleted or absent.
      type: dict
    client_secret:
      description:
        - The secret DOT generated for this application; only in the run that stored it, never in check mode.
        - Only a task with C(no_log) gets it; without, such a run is refused (see the notes).
      type: str
      returned: when the module generated a secret for this application
    revoked:
      description:
        - The tokens of this application that O(applications[].revoke_tokens=on_secret_change) revoked (would
          revoke, in check mode) per kind, as RV(oauthops.toolkit.oauth_token_revoke#module:revoked) counts them.
      type: dict
      returned: when O(applications[].revoke_tokens=on_secret_change) and this application's secret changed
      version_added: 0.3.0
  sample:
    - client_id: shop-web
      changed: true
      action: created
      declared: true
      application:
        id: 3
        client_id: shop-web
        name: Shop web front end
        client_type: confidential
        authorization_grant_type: authorization-code
        redirect_uris: [https://shop.example.com/oauth/callback]
        post_logout_redirect_uris: []
        allowed_origins: []
        user: null
        skip_authorization: false
        algorithm: none
        hash_client_secret: true
        extra_fields: {registration_source: manual, cimd_expires_at: null}
        created: "2026-11-29T10:00:00.000000+00:00"
        updated: "2026-11-29T10:00:00.000000+00:00"
counts:
  description: How many applications were created, updated, deleted and left unchanged.
  returned: always
  type: dict
  sample: {created: 1, updated: 0, deleted: 2, unchanged: 197}
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
    argument_spec.update(
        applications=dict(
            type="list",
            elements="dict",
            required=True,
            options=application_argument_spec(),
            mutually_exclusive=APPLICATION_MUTUALLY_EXCLUSIVE,
        ),
        exclusive=dict(type="bool", default=False),
        hash_threads=dict(type="int"),
        exclusive_filter=dict(
            type="dict",
            default={},
            options=dict(
                registration_source=dict(type="list", elements="str", default=["manual"]),
                client_id=dict(type="list", elements="str"),
            ),
        ),
    )
    module = DjangoModule(
        argument_spec=argument_spec,
        mutually_exclusive=DJANGO_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    params = dict(
        (name, module.params[name]) for name in ("applications", "exclusive", "exclusive_filter", "hash_threads")
    )
    result = DjangoBridge(module).call("applications", params)
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
