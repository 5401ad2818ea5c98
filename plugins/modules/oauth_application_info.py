#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: oauth_application_info
short_description: Read Django OAuth Toolkit applications
version_added: 0.1.0
description:
  - Lists the OAuth applications of a Django project that uses Django OAuth Toolkit, in the vocabulary of
    M(oauthops.toolkit.oauth_application). Client secrets are never returned.
author:
  - oauthops.toolkit maintainers (@oauthops)
extends_documentation_fragment:
  - oauthops.toolkit.django
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The module only reads.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  client_id:
    description: Only these applications. All of them when not given.
    type: list
    elements: str
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
"""

RETURN = r"""
applications:
  description:
    - The applications, ordered by client ID, with the keys of RV(oauthops.toolkit.oauth_application#module:application).
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
      created: "2026-11-27T10:00:00.000000+00:00"
      updated: "2026-11-27T10:00:00.000000+00:00"
"""

from ansible_collections.oauthops.toolkit.plugins.module_utils.django_bridge import (
    DJANGO_MUTUALLY_EXCLUSIVE,
    DjangoBridge,
    DjangoModule,
    django_argument_spec,
)


def main():
    argument_spec = django_argument_spec()
    argument_spec.update(client_id=dict(type="list", elements="str"))
    module = DjangoModule(
        argument_spec=argument_spec,
        mutually_exclusive=DJANGO_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    result = DjangoBridge(module).call("application_info", {"client_id": module.params["client_id"]})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
