#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: oauth_token_revoke
short_description: Revoke every Django OAuth Toolkit token of some applications or of a user, set-based
version_added: 0.3.0
description:
  - Revokes what the selected applications (O(client_id)) or user (O(user)), or both, could still use, optionally
    only what was issued before a moment (O(issued_before)). Afterwards no selected token authenticates or refreshes.
    For the two runbooks DOT has no command for, a leaked client secret and a person who left.
  - The end state is exactly what Django OAuth Toolkit's own revocation of each selected row leaves, in this order.
    Each refresh token not revoked yet gets C(RefreshToken.revoke()), which deletes its access token and keeps the
    row, marked revoked, with its C(token_family), which is what DOT's reuse detection reads. Then each selected
    access token left gets C(AccessToken.revoke()) (a delete), each ID token C(IDToken.revoke()) (a delete, which
    takes along an access token that points at it), and each grant (authorization code) is deleted. Refresh tokens
    that are revoked already are left as they are, as DOT leaves them.
  - Relations of the project's own models to the token tables keep their C(on_delete) behaviour, as in
    M(oauthops.toolkit.oauth_token_cleanup).
  - Set-based and batched like M(oauthops.toolkit.oauth_token_cleanup), on the same engine. Each kind of token is
    walked once in primary-key order, a batch of O(batch_size) rows per short transaction, a few SQL statements
    per batch, not one query per token. It takes the cleanup's lock, and O(max_runtime) stops it between batches.
  - The module knows DOT's C(revoke()) methods by a fingerprint of their code and uses its set-based passes only
    for the implementations its tests proved (those of every DOT release from 1.5.0 to 3.4.1). Any other
    C(revoke()) (a swapped model's own, a fork's) is called per object, and so is C(RefreshToken.revoke()) when
    save signal receivers are connected to the refresh token model; RV(strategy) and a warning say so.
author:
  - oauthops.toolkit maintainers (@oauthops)
extends_documentation_fragment:
  - oauthops.toolkit.django
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Returns in RV(revoked) the exact number of rows of each kind a real run would revoke, and writes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  client_id:
    description:
      - The applications whose tokens are revoked, by client ID; one or a list.
      - Every client ID must exist, or the task fails naming the missing ones and revokes nothing. An empty list is
        refused (it is most often a variable that did not load).
    type: list
    elements: str
  user:
    description:
      - The user whose tokens are revoked, in every application (or only in those of O(client_id) when both are
        given), as a username (the user model's C(USERNAME_FIELD)) or a primary key (O(user_lookup)), as in
        M(oauthops.toolkit.oauth_application).
      - A user that does not exist fails the task, and nothing is revoked.
    type: raw
  user_lookup:
    description:
      - How O(user) names the user, as O(oauthops.toolkit.oauth_application#module:user_lookup) names an owner.
        V(auto) refuses a value that is the username of one user and the primary key of another.
    type: str
    choices: [auto, username, pk]
    default: auto
  issued_before:
    description:
      - Revoke only what was issued (C(created)) before this moment, an ISO 8601 date and time such as
        V(2026-12-07T03:00:00Z), for example the time of a secret rotation. Without a time zone it is read in the
        project's E(TIME_ZONE). Narrows O(client_id) and O(user); it is not a selector on its own.
    type: str
  batch_size:
    description:
      - Most rows per transaction. Defaults to the project's C(OAUTH2_PROVIDER["CLEAR_EXPIRED_TOKENS_BATCH_SIZE"]).
    type: int
  batch_interval:
    description:
      - Seconds to pause between batches. Defaults to the project's
        C(OAUTH2_PROVIDER["CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL"]).
    type: float
  max_runtime:
    description:
      - Stop after this many seconds, between two batches, and return RV(complete=false); run again to finish.
        What the stopped run revoked stays revoked.
    type: float
  lock:
    description:
      - Take the lock of M(oauthops.toolkit.oauth_token_cleanup) (O(oauthops.toolkit.oauth_token_cleanup#module:lock)),
        so that a revocation and a cleanup never run on one database at once.
    type: bool
    default: true
  lock_timeout:
    description:
      - Seconds to wait for the lock while a cleanup or another revocation holds it. When it is not released in
        time the task revokes nothing, returns RV(complete=false) and warns.
      - Longer by default than the cleanup's V(0), since a revocation is usually urgent.
    type: float
    default: 300
notes:
  - At least one of O(client_id) and O(user) is required, so that a task never revokes every token by accident.
  - With E(REFRESH_TOKEN_GRACE_PERIOD_SECONDS), DOT before 3.4.1 still accepts a revoked refresh token for the grace
    period, whoever revoked it; DOT 3.4.1 honours the grace period only for a token that was rotated, not for one
    revoked.
  - To rotate a client secret and revoke its tokens in one transaction, use
    O(oauthops.toolkit.oauth_application#module:revoke_tokens=on_secret_change).
seealso:
  - module: oauthops.toolkit.oauth_application
    description: Rotate a secret, and revoke its tokens in the same task (revoke_tokens).
  - module: oauthops.toolkit.oauth_token_cleanup
    description: The engine this module shares, for expired and revoked tokens.
"""

EXAMPLES = r"""
- name: A client secret leaked - revoke everything issued to that application
  oauthops.toolkit.oauth_token_revoke:
    project_path: /srv/shop
    virtualenv: /srv/shop/venv
    settings: shop.settings.production
    client_id: shop-web
  register: revocation

- name: A person left - count what would be revoked, in every application
  oauthops.toolkit.oauth_token_revoke:
    project_path: /srv/shop
    virtualenv: /srv/shop/venv
    settings: shop.settings.production
    user: alice
  check_mode: true
  register: pending

- name: Show the counts
  ansible.builtin.debug:
    msg: "{{ pending.total }} rows would go: {{ pending.revoked }}"
"""

RETURN = r"""
revoked:
  description:
    - Rows revoked (in check mode, that would be) per kind, named as RV(oauthops.toolkit.oauth_token_cleanup#module:deleted)
      names them. Access tokens count every access token deleted, those of revoked refresh tokens and ID tokens
      included.
  returned: always
  type: dict
  contains:
    refresh_tokens:
      description: Refresh tokens marked revoked (their rows stay).
      type: int
    access_tokens:
      description: Access tokens deleted.
      type: int
    id_tokens:
      description: OpenID Connect ID tokens deleted.
      type: int
    grants:
      description: Authorization codes deleted.
      type: int
  sample: {refresh_tokens: 1200, access_tokens: 1312, id_tokens: 210, grants: 3}
total:
  description: Sum of RV(revoked).
  returned: always
  type: int
  sample: 2725
selection:
  description: The selection as resolved. Never a token or a secret.
  returned: always
  type: dict
  contains:
    client_ids:
      description: The client IDs of O(client_id), or null for every application.
      type: list
      elements: str
    user:
      description: The primary key of the user of O(user), or null for every user.
      type: raw
    username:
      description: That user's username (C(USERNAME_FIELD)), or null.
      type: str
    issued_before:
      description: O(issued_before) in ISO 8601 with its time zone, or null.
      type: str
  sample: {client_ids: [shop-web], user: null, username: null, issued_before: null}
revoked_at:
  description: The moment the run started revoking (the C(revoked) time of the refresh tokens it revoked), ISO 8601.
  returned: when not in check mode and the lock was acquired
  type: str
  sample: "2026-12-07T03:00:01.250000+00:00"
cascaded:
  description: Rows of other tables deleted because they pointed at a deleted token with C(on_delete=CASCADE), per model.
  returned: when not in check mode and the lock was acquired
  type: dict
  sample: {shop.TokenAuditEntry: 1312}
strategy:
  description:
    - How each kind was revoked; V(set-based SQL), V(Django collector (reason)) as in
      RV(oauthops.toolkit.oauth_token_cleanup#module:strategy), or V(DOT's revoke() per object (reason)).
  returned: when not in check mode and the lock was acquired
  type: dict
  sample: {refresh_tokens: set-based SQL, access_tokens: set-based SQL, id_tokens: set-based SQL, grants: set-based SQL}
batches:
  description: Number of transactions.
  returned: always
  type: int
  sample: 3
complete:
  description: Whether everything selected was revoked; V(false) when O(max_runtime) stopped the run or the lock was held.
  returned: always
  type: bool
  sample: true
lock:
  description: The lock the run took, as RV(oauthops.toolkit.oauth_token_cleanup#module:lock) describes it.
  returned: when not in check mode
  type: dict
  sample: {method: PostgreSQL advisory lock, acquired: true, waited: 0.0}
elapsed:
  description: Seconds the task spent on the Django side, waiting for the lock included.
  returned: always
  type: float
  sample: 1.204
batch_size:
  description: The batch size used.
  returned: always
  type: int
  sample: 10000
dot_version:
  description: The installed django-oauth-toolkit release.
  returned: always
  type: str
  sample: 3.4.1
msg:
  description: One line saying what happened.
  returned: always
  type: str
  sample: revoked 1200 refresh tokens, 1312 access tokens, 210 ID tokens and 3 grants of client_id shop-web in 3 batches
django_user:
  description: The user the Django side ran as (RV(oauthops.toolkit.oauth_token_cleanup#module:django_user)).
  returned: always
  type: str
  sample: shop
database:
  description: The alias in the project's C(DATABASES) that the module worked on.
  returned: always
  type: str
  sample: default
"""

from ansible_collections.oauthops.toolkit.plugins.module_utils.django_bridge import (
    DJANGO_MUTUALLY_EXCLUSIVE,
    DjangoBridge,
    DjangoModule,
    django_argument_spec,
)

REVOKE_OPTIONS = (
    "client_id",
    "user",
    "user_lookup",
    "issued_before",
    "batch_size",
    "batch_interval",
    "max_runtime",
    "lock",
    "lock_timeout",
)


def main():
    argument_spec = django_argument_spec()
    argument_spec.update(
        client_id=dict(type="list", elements="str"),
        user=dict(type="raw"),
        user_lookup=dict(type="str", choices=["auto", "username", "pk"], default="auto"),
        issued_before=dict(type="str"),
        batch_size=dict(type="int"),
        batch_interval=dict(type="float"),
        max_runtime=dict(type="float"),
        lock=dict(type="bool", default=True),
        lock_timeout=dict(type="float", default=300),
    )
    module = DjangoModule(
        argument_spec=argument_spec,
        mutually_exclusive=DJANGO_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    params = dict((name, module.params[name]) for name in REVOKE_OPTIONS)
    module.exit_json(**DjangoBridge(module).call("token_revoke", params))


if __name__ == "__main__":
    main()
