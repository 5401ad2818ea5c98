#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: oauth_application_info
short_description: Read and query Django OAuth Toolkit applications
version_added: 0.1.0
description:
  - Lists the OAuth applications of a Django project that uses Django OAuth Toolkit, in the vocabulary of
    M(oauthops.toolkit.oauth_application). Client secrets, hashed or not, are never returned.
  - The filters run in the database query and combine with AND; a filter that is not given (or an empty list)
    does not restrict the answer.
  - O(query) answers a question about the result with a JMESPath expression, evaluated on the controller.
author:
  - oauthops.toolkit maintainers (@oauthops)
extends_documentation_fragment:
  - oauthops.toolkit.django
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
    details: An action plugin runs the module, then evaluates O(query) on the controller.
  async:
    support: none
  bypass_host_loop:
    support: none
  check_mode:
    support: full
    details: The module only reads; it runs in check mode as it does otherwise.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - jmespath (Python library) on the controller, only when O(query) is used
options:
  client_id:
    description: Only the applications with one of these client IDs.
    type: list
    elements: str
  name:
    version_added: 0.2.0
    description: Only the applications with exactly this name.
    type: str
  user:
    version_added: 0.2.0
    description:
      - Only the applications owned by this user, named by username (the user model's C(USERNAME_FIELD)) or primary
        key, as O(user_lookup) says (the same rules as O(oauthops.toolkit.oauth_application#module:user)).
      - An empty string selects the applications without an owner.
      - A user that does not exist owns no application, so the answer is an empty list, not an error. A value that
        is the username of one user and the primary key of another fails the task with O(user_lookup=auto).
    type: raw
  user_lookup:
    version_added: 0.2.0
    description:
      - How O(user) names the owner. V(auto) accepts a username or a primary key, V(username) looks in
        C(USERNAME_FIELD) only, V(pk) in the primary key only.
    type: str
    choices: [auto, username, pk]
    default: auto
  authorization_grant_type:
    version_added: 0.2.0
    description: Only the applications with one of these grant types.
    type: list
    elements: str
    choices:
      - authorization-code
      - implicit
      - password
      - client-credentials
      - openid-hybrid
      - urn:ietf:params:oauth:grant-type:device_code
  client_type:
    version_added: 0.2.0
    description: Only the applications of these client types.
    type: list
    elements: str
    choices: [confidential, public]
  registration_source:
    version_added: 0.2.0
    description:
      - Only the applications registered in one of these ways, as DOT's C(registration_source) field records it
        (DOT 3.4 and later; V(manual) for applications an operator created, V(dcr) for dynamic client
        registration, V(cimd) for a client ID metadata document).
      - On an application model without that field (DOT before 3.4) every application counts as V(manual), since
        operators registered them all; so the same play works on every host of a fleet.
    type: list
    elements: str
  query:
    version_added: 0.2.0
    description:
      - A JMESPath expression, evaluated on the controller over the returned RV(applications) list; its result is
        returned in RV(query_result). For example V([?authorization_grant_type=='implicit'].client_id).
      - Needs the C(jmespath) Python library on the controller (not on the managed host). Without it, or with an
        expression that does not parse or fails on the data, the task fails with one line that names the
        expression.
      - The module itself ignores this option.
    type: str
notes:
  - JMESPath string literals are written in raw quotes (V('implicit')) or backquotes (V(`"implicit"`)); a bare
    word is a field name.
seealso:
  - module: oauthops.toolkit.oauth_application
  - name: JMESPath specification
    description: The expression language of O(query).
    link: https://jmespath.org/specification.html
"""

EXAMPLES = r"""
- name: Read every application of the project
  oauthops.toolkit.oauth_application_info:
    project_path: /srv/shop
    virtualenv: /srv/shop/venv
    settings: shop.settings.production
  register: oauth

- name: Show the redirect URIs of one client
  ansible.builtin.debug:
    msg: "{{ (oauth.applications | selectattr('client_id', 'equalto', 'shop-web') | first).redirect_uris }}"

- name: Questions answered by the filters (in the database) and by JMESPath (on the controller)
  module_defaults:
    group/oauthops.toolkit.django:
      project_path: /srv/shop
      virtualenv: /srv/shop/venv
      settings: shop.settings.production
  block:
    - name: Confidential clients of one owner that an operator registered
      oauthops.toolkit.oauth_application_info:
        client_type: [confidential]
        user: alice
        registration_source: [manual]
      register: alices_clients

    - name: Clients that still allow the implicit grant
      oauthops.toolkit.oauth_application_info:
        query: "[?authorization_grant_type=='implicit'].client_id"
      register: implicit
      # implicit.query_result: [legacy-spa, old-widget]

    - name: Confidential clients without an owner
      oauthops.toolkit.oauth_application_info:
        query: "[?client_type=='confidential' && user==null].client_id"
      register: ownerless

    - name: Clients that may redirect to https://shop.example.com/
      oauthops.toolkit.oauth_application_info:
        query: "[?redirect_uris[?starts_with(@, 'https://shop.example.com/')]].client_id"
      register: shop_clients

    - name: How many clients of each type
      oauthops.toolkit.oauth_application_info:
        query: "{confidential: length([?client_type=='confidential']), public: length([?client_type=='public'])}"
      register: counts
      # counts.query_result: {confidential: 4, public: 2}

    - name: Fail when a client still allows the implicit grant
      ansible.builtin.assert:
        that: implicit.query_result | length == 0
        fail_msg: "still on the implicit grant: {{ implicit.query_result | join(', ') }}"
"""

RETURN = r"""
applications:
  description:
    - The applications that match every filter, ordered by client ID, with the keys of
      RV(oauthops.toolkit.oauth_application#module:application).
    - Their C(extra_fields) hold every field O(oauthops.toolkit.oauth_application#module:extra_fields) can set, DOT's
      C(registration_source) among them (DOT 3.4 and later).
    - C(hash_client_secret) is V(true) before DOT 2.4, which has no such field and hashes every secret; the keys of
      fields the installed DOT does not have (C(post_logout_redirect_uris) before 2.3, C(allowed_origins) before
      2.4) are left out.
  returned: always
  type: list
  elements: dict
  sample:
    - id: 3
      client_id: shop-web
      name: Shop web front end
      client_type: confidential
      authorization_grant_type: authorization-code
      redirect_uris: [https://shop.example.com/oauth/callback]
      post_logout_redirect_uris: []
      allowed_origins: []
      user: admin
      skip_authorization: false
      algorithm: none
      hash_client_secret: true
      extra_fields:
        registration_source: manual
        cimd_expires_at: null
      created: "2026-11-27T10:00:00.000000+00:00"
      updated: "2026-11-27T10:00:00.000000+00:00"
query_result:
  description: What O(query) evaluates to over RV(applications); any JSON type, V(null) when nothing matches a path.
  returned: when O(query) is given
  type: raw
  sample: [legacy-spa, old-widget]
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

from ansible_collections.oauthops.toolkit.plugins.module_utils._application_spec import GRANT_TYPES
from ansible_collections.oauthops.toolkit.plugins.module_utils.django_bridge import (
    DJANGO_MUTUALLY_EXCLUSIVE,
    DjangoBridge,
    DjangoModule,
    django_argument_spec,
)

FILTERS = ("client_id", "name", "user", "user_lookup", "authorization_grant_type", "client_type", "registration_source")


def main():
    argument_spec = django_argument_spec()
    argument_spec.update(
        client_id=dict(type="list", elements="str"),
        name=dict(type="str"),
        user=dict(type="raw"),
        user_lookup=dict(type="str", choices=["auto", "username", "pk"], default="auto"),
        authorization_grant_type=dict(type="list", elements="str", choices=GRANT_TYPES),
        client_type=dict(type="list", elements="str", choices=["confidential", "public"]),
        registration_source=dict(type="list", elements="str"),
        # Evaluated by the action plugin on the controller; accepted here so that the task validates.
        query=dict(type="str"),
    )
    module = DjangoModule(
        argument_spec=argument_spec,
        mutually_exclusive=DJANGO_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    params = dict((name, module.params[name]) for name in FILTERS)
    result = DjangoBridge(module).call("application_info", params)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
