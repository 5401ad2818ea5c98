#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: oauth_token_cleanup
short_description: Delete expired and revoked Django OAuth Toolkit tokens, fast and with exact counts
version_added: 0.1.0
description:
  - Deletes the tokens and grants that Django OAuth Toolkit's C(clear_expired()) (the C(cleartokens) management
    command) would delete, leaving exactly the same rows behind, and reports how many of each kind it deleted.
  - The rules are those of the B(installed) C(clear_expired()), which DOT changed in 2.3 (ID tokens), 3.4.0 (grace
    period, reuse protection) and 3.4.1 (orphaned refresh tokens). E(REFRESH_TOKEN_EXPIRE_SECONDS),
    E(REFRESH_TOKEN_GRACE_PERIOD_SECONDS), E(REFRESH_TOKEN_REUSE_PROTECTION) and swapped token models are honoured.
  - It recognises C(clear_expired()) by a fingerprint of its code (RV(clear_expired_fingerprint)), not by DOT's
    version string, and uses its own rules only for the implementations its tests proved, those of DOT 2.0.0 to
    3.4.1 (1.7 ships the function of 2.0). Any other C(clear_expired()), from a fork, a patched install, DOT's main
    branch or a later release that changes it, runs itself, and the module warns; the end state is that function's.
  - Much less work than C(cleartokens), for the same result. Each kind of token is walked once in primary-key order
    and deleted in batches of O(batch_size), each one a few set-based SQL statements in its own short transaction.
    Relations of the project's own models to the token tables keep their C(on_delete) behaviour (CASCADE, SET_NULL,
    SET_DEFAULT). Where plain SQL cannot do what Django's delete collector does (delete signal receivers on an
    affected model, multi-table inheritance, generic relations) that kind of token is deleted through the collector,
    and RV(strategy) says why. A batch that a PROTECT or RESTRICT row points into goes through the collector too, which
    fails the task with Django's error, as C(cleartokens) would fail.
  - A run that is stopped (O(max_runtime), a killed process) leaves only whole batches done; the next run continues.
  - A lock keeps two cleanups of one database apart. See O(lock).
author:
  - oauthops.toolkit maintainers (@oauthops)
extends_documentation_fragment:
  - oauthops.toolkit.django
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details:
      - Returns in RV(deleted) the exact number of rows of each kind that a real run would delete, and deletes nothing.
      - Not available for a DOT release the module does not know; it then returns null counts and warns.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  batch_size:
    description:
      - Most tokens deleted per transaction.
      - Defaults to the project's C(OAUTH2_PROVIDER["CLEAR_EXPIRED_TOKENS_BATCH_SIZE"]) (DOT's default is 10000).
    type: int
  batch_interval:
    description:
      - Seconds to pause between batches, to leave the database room for other work.
      - Defaults to the project's C(OAUTH2_PROVIDER["CLEAR_EXPIRED_TOKENS_BATCH_INTERVAL"]) (DOT's default is 0).
    type: float
  max_runtime:
    description:
      - Stop after this many seconds, between two batches, and return RV(complete=false). The next run continues
        where this one stopped. Without it the run goes on until everything is deleted.
      - Counted from the start of the Django side, waiting for the lock included. A batch that has started is
        finished, so a run can exceed this by the length of one batch.
    type: float
  lock:
    description:
      - Take a lock so that two cleanups never run on one database at the same time.
      - PostgreSQL uses an advisory lock (C(pg_try_advisory_lock)), MySQL and MariaDB C(GET_LOCK()), SQLite an
        C(flock) on the database file itself (no lock file is created). The database server (or the kernel, for
        the file) releases the lock when a run dies.
      - The advisory locks belong to the database session, so they do not work through a connection pooler in
        transaction mode (PgBouncer C(pool_mode=transaction)).
    type: bool
    default: true
  lock_timeout:
    description:
      - Seconds to wait for a lock that another cleanup holds. When it is not released in time, the task deletes
        nothing, returns RV(complete=false) with C(lock.acquired=false), and warns.
      - V(0) gives up at once.
    type: float
    default: 0
notes:
  - Schedule it (or the C(oauthops.toolkit.token_cleanup) role) instead of C(manage.py cleartokens); both leave the
    same rows behind.
  - Without E(REFRESH_TOKEN_EXPIRE_SECONDS) DOT never deletes refresh tokens by age, so access tokens that still have
    a refresh token are kept; the module follows DOT here too.
seealso:
  - name: Django OAuth Toolkit settings
    description: CLEAR_EXPIRED_TOKENS_BATCH_SIZE, REFRESH_TOKEN_EXPIRE_SECONDS and the other settings the rules read.
    link: https://django-oauth-toolkit.readthedocs.io/en/latest/settings.html
"""

EXAMPLES = r"""
- name: Delete expired tokens with the project's own batch settings
  oauthops.toolkit.oauth_token_cleanup:
    project_path: /srv/shop
    virtualenv: /srv/shop/venv
    settings: shop.settings.production
  register: cleanup

- name: See what a cleanup would delete, without deleting anything
  oauthops.toolkit.oauth_token_cleanup:
    project_path: /srv/shop
    virtualenv: /srv/shop/venv
    settings: shop.settings.production
  check_mode: true
  register: pending

- name: Show the backlog by kind
  ansible.builtin.debug:
    msg: "{{ pending.total }} rows would go: {{ pending.deleted }}"

- name: A bounded run in a maintenance window; the next run continues if this one runs out of time
  oauthops.toolkit.oauth_token_cleanup:
    project_path: /srv/shop
    virtualenv: /srv/shop/venv
    settings: shop.settings.production
    environment:
      DATABASE_URL: "{{ vault_shop_database_url }}"
    batch_size: 5000
    batch_interval: 0.2
    max_runtime: 600
    lock_timeout: 30
  run_once: true  # the hosts share one database
"""

RETURN = r"""
deleted:
  description:
    - Rows deleted (in check mode, rows that would be deleted) per kind, in the order DOT deletes them.
    - A kind that the installed DOT release does not clean up is V(0).
    - After running DOT's own C(clear_expired()) (an implementation the module has no proven rules for), the three
      refresh token kinds are null and C(refresh_tokens) holds their sum, and rows that function deleted from any
      other table of DOT's app are counted under the model's label (for example
      C(oauth2_provider.PushedAuthorizationRequest) on DOT's main branch); in check mode all counts are null then.
  returned: always
  type: dict
  contains:
    revoked_refresh_tokens:
      description: Revoked refresh tokens past the grace period (or, with reuse protection, past their expiry).
      type: int
    orphaned_refresh_tokens:
      description: Refresh tokens that are not revoked but whose access token is gone (DOT 3.4.1 and later).
      type: int
    expired_refresh_tokens:
      description: Refresh tokens whose access token expired more than E(REFRESH_TOKEN_EXPIRE_SECONDS) ago.
      type: int
    access_tokens:
      description: Expired access tokens without a refresh token (including those whose refresh token just went).
      type: int
    id_tokens:
      description: Expired OpenID Connect ID tokens without an access token (DOT 2.3 and later).
      type: int
    grants:
      description: Expired authorization codes.
      type: int
  sample:
    revoked_refresh_tokens: 1200
    orphaned_refresh_tokens: 3
    expired_refresh_tokens: 5400
    access_tokens: 48211
    id_tokens: 2210
    grants: 17
total:
  description: Sum of RV(deleted).
  returned: always
  type: int
  sample: 57041
cascaded:
  description:
    - Rows of other tables deleted because they pointed at a deleted token with C(on_delete=CASCADE), per model.
      Rows updated by C(SET_NULL) are not counted.
  returned: when not in check mode and the lock was acquired
  type: dict
  sample:
    shop.TokenAuditEntry: 48211
batches:
  description: Number of delete transactions.
  returned: always
  type: int
  sample: 8
complete:
  description:
    - Whether everything due was deleted. V(false) when O(max_runtime) stopped the run or another cleanup held the
      lock; run again to finish.
  returned: always
  type: bool
  sample: true
elapsed:
  description: Seconds the task spent on the Django side, waiting for the lock included.
  returned: always
  type: float
  sample: 4.132
strategy:
  description:
    - How each kind was deleted; V(set-based SQL), or V(Django collector (reason)) where plain SQL cannot repeat
      what Django's delete collector does. V(clear_expired) after running DOT's own C(clear_expired()).
  returned: when not in check mode and the lock was acquired
  type: raw
  sample:
    revoked_refresh_tokens: set-based SQL
    access_tokens: Django collector (delete signal receivers are connected to shop.TokenAuditEntry)
lock:
  description: The lock the run took.
  returned: when not in check mode
  type: dict
  contains:
    method:
      description: The kind of lock, or null when O(lock=false) or the database needs none (in-memory SQLite).
      type: str
    acquired:
      description: Whether the run got the lock. When V(false) nothing was deleted.
      type: bool
    waited:
      description: Seconds spent waiting for it.
      type: float
  sample:
    method: PostgreSQL advisory lock
    acquired: true
    waited: 0.0
cutoffs:
  description:
    - The moments the rules compared against, from the installed DOT's settings. C(refresh_revoked_at) or
      C(refresh_expire_at) is null when that kind of refresh token is not deleted.
  returned: when the module has proven rules for the installed C(clear_expired()) and, outside check mode, got the lock
  type: dict
  sample:
    now: "2026-11-27T03:00:00.000000+00:00"
    refresh_revoked_at: "2026-11-27T03:00:00.000000+00:00"
    refresh_expire_at: "2026-10-28T03:00:00.000000+00:00"
dot_version:
  description: The installed django-oauth-toolkit release.
  returned: always
  type: str
  sample: 3.4.1
rules:
  description:
    - The rule set applied, named after the DOT release that introduced it (V(2.0), V(2.3), V(3.4.0) or V(3.4.1)),
      or V(clear_expired) when DOT's own function ran.
    - Chosen by RV(clear_expired_fingerprint), not by RV(dot_version).
  returned: always
  type: str
  sample: 3.4.1
clear_expired_fingerprint:
  description:
    - A hash of the code of the installed C(clear_expired()) (its syntax tree, so comments and layout do not count),
      or null when its source cannot be read. The module has rules for the fingerprints of DOT 2.0.0 to 3.4.1 only.
  returned: always
  type: str
  sample: 139e9933482f01cc
batch_size:
  description: The batch size used.
  returned: always
  type: int
  sample: 10000
batch_interval:
  description: The pause between batches used, in seconds.
  returned: always
  type: float
  sample: 0.0
msg:
  description: One line saying what happened.
  returned: always
  type: str
  sample: deleted 57041 expired or revoked token rows in 8 batches
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

from ansible_collections.oauthops.toolkit.plugins.module_utils.django_bridge import (
    DJANGO_MUTUALLY_EXCLUSIVE,
    DjangoBridge,
    DjangoModule,
    django_argument_spec,
)

CLEANUP_OPTIONS = ("batch_size", "batch_interval", "max_runtime", "lock", "lock_timeout")


def main():
    argument_spec = django_argument_spec()
    argument_spec.update(
        batch_size=dict(type="int"),
        batch_interval=dict(type="float"),
        max_runtime=dict(type="float"),
        lock=dict(type="bool", default=True),
        lock_timeout=dict(type="float", default=0),
    )
    module = DjangoModule(
        argument_spec=argument_spec,
        mutually_exclusive=DJANGO_MUTUALLY_EXCLUSIVE,
        supports_check_mode=True,
    )
    params = dict((name, module.params[name]) for name in CLEANUP_OPTIONS)
    module.exit_json(**DjangoBridge(module).call("token_cleanup", params))


if __name__ == "__main__":
    main()
