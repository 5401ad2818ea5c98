#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: path_trust_info
short_description: Tell whether a user could redirect what root writes through some paths
version_added: 0.2.0
description:
  - For each path that the play is about to create, write, change the owner of or delete as root, reports
    whether O(user) could make that write land somewhere else, by owning or being able to write a directory on
    the way (and so rename it, or plant a symbolic link in it), or by having put a link at the path itself.
  - Write access counts however the kernel grants it - ownership, the group and other mode bits, and POSIX ACL
    entries for the user or one of its groups (limited by the ACL's mask). A directory's default ACL counts too,
    since it hands write access to whatever root creates in it next.
  - The C(oauthops.toolkit.token_cleanup) role refuses a layout this module reports as untrusted, before it
    writes anything. Use it the same way in your own plays that write, as root, into places an application's
    user can reach.
  - It only reads (C(lstat) of every component, symbolic links followed to their targets, which are checked
    too). A directory writable by everyone with the sticky bit (C(/tmp)) is trusted only for names that exist
    and that O(user) does not own.
  - A regular file with several hard links that O(user) does not own is reported too, with RV(untrusted[].hard_links),
    since a change of its content, owner or mode in place would reach its other names, which root did not mean to
    change. Removing it, or replacing it by renaming a new file over it, is safe, and
    M(oauthops.toolkit.trusted_file) does those, so a play that writes with that module can leave such entries
    to it. A hard link to O(user)'s own file is not reported - the user could make any change to that file
    itself.
  - It reports what it sees; writes that the user races after it looked are another matter. Make them with
    M(oauthops.toolkit.trusted_file), which checks every directory again, through descriptors, as it writes.
  - When the module runs as O(user) itself, there is nothing to protect and every path is trusted.
  - Without O(user), every user but root is distrusted, and a path is trusted only when nobody else can change it.
author:
  - oauthops.toolkit maintainers (@oauthops)
extends_documentation_fragment:
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
  paths:
    description:
      - Absolute paths of the files and directories that will be written. They need not exist yet.
      - A path that exists as a directory counts as one that will be written into, so O(user) must not be able to
        write it either.
    type: list
    elements: path
    required: true
  user:
    description:
      - The user that is not trusted (name or numeric uid), typically the application's user.
      - Without it, no user but root is trusted, and a directory writable by a group other than root's is too.
    type: str
"""

EXAMPLES = r"""
- name: Refuse to write into directories the application user controls
  oauthops.toolkit.path_trust_info:
    paths:
      - /var/lib/shop-jobs
      - /var/log/shop-jobs.log
    user: shop
  register: trust

- name: Stop when one of them is not safe for root
  ansible.builtin.assert:
    that: trust.untrusted | length == 0
    fail_msg: "{{ trust.untrusted | map(attribute='reason') | join('; ') }}"
"""

RETURN = r"""
untrusted:
  description: The paths of O(paths) that O(user) could redirect, in the order given, each with the first reason found.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The path as given.
      type: str
    reason:
      description: A sentence naming the component and what O(user) can do to it.
      type: str
    hard_links:
      description:
        - The number of names of the file, when that is the reason (a file O(user) does not own, with other names).
        - Only a change in place is unsafe; a removal, or a replacement by rename, is not.
      type: int
      returned: when the reason is the file's hard links
  sample:
    - path: /var/lib/shop/cleanup.lock
      reason: /var/lib/shop is owned by shop
uid:
  description: The uid of O(user).
  returned: when O(user) is given
  type: int
  sample: 998
groups:
  description: The gids of the groups of O(user) (primary and supplementary).
  returned: when O(user) is given
  type: list
  elements: int
  sample: [998, 33]
running_uid:
  description: The uid the module ran as, which is who will own what the play creates next.
  returned: always
  type: int
  sample: 0
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.oauthops.toolkit.plugins.module_utils._path_trust import UntrustedUser, replace_reason, user_name


def untrusted_entry(path, user, seen=None):
    """The first way `user` could redirect a write through `path`, as {"reason": ...} (and "hard_links" when
    that is the way), or None."""
    seen = set() if seen is None else seen
    parent = "/"
    parent_info = os.lstat(parent)
    components = [part for part in path.split("/") if part]
    for index, name in enumerate(components):
        current = os.path.join(parent, name)
        is_last = index == len(components) - 1
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            info = None
        reason = replace_reason(user, parent, parent_info, parent, current, info)
        if reason is not None:
            return dict(reason=reason)
        if info is None:
            return None  # root creates the rest, in a directory the user cannot change
        if stat.S_ISLNK(info.st_mode):
            if is_last:
                return dict(reason="%s is a symbolic link" % current)
            if user.owns(info):
                return dict(reason="%s is a symbolic link owned by %s" % (current, user.owner_name(info)))
            if current in seen:
                return dict(reason="%s is part of a symbolic link loop" % current)
            seen.add(current)
            target = os.path.normpath(os.path.join(parent, os.readlink(current)))
            rest = "/".join(components[index + 1:])
            return untrusted_entry(os.path.join(target, rest), user, seen)
        if is_last:
            if stat.S_ISDIR(info.st_mode):
                reason = user.can_change(info, current)
                return None if reason is None else dict(reason="%s %s" % (current, reason))
            # The user's own file: whatever root changes in it, the user could have changed too.
            if stat.S_ISREG(info.st_mode) and info.st_nlink > 1 and not user.owns(info):
                return dict(
                    reason="%s has %d hard links and belongs to %s%s: a change in place of its content, owner or "
                    "mode would reach its other names too" % (
                        current, info.st_nlink, user_name(info.st_uid), ", not to %s" % user.name if user.name else ""),
                    hard_links=info.st_nlink,
                )
            return None
        if not stat.S_ISDIR(info.st_mode):
            return dict(reason="%s is not a directory" % current)
        parent, parent_info = current, info
    # The path is "/" itself.
    reason = user.can_change(parent_info, "/")
    return None if reason is None else dict(reason="/ %s" % reason)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", required=True),
            user=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    try:
        user = UntrustedUser(module.params["user"])
    except (KeyError, ValueError):
        module.fail_json(msg="user %s does not exist" % module.params["user"])
    nothing_to_protect = user.runs_this_process()
    untrusted = []
    for path in module.params["paths"]:
        if not os.path.isabs(path):
            module.fail_json(msg="paths: %s is not an absolute path" % path)
        if nothing_to_protect:
            continue
        entry = untrusted_entry(os.path.normpath(path), user)
        if entry is not None:
            untrusted.append(dict(path=path, **entry))
    identity = dict(uid=user.uid, groups=user.gids) if user.name else {}
    module.exit_json(changed=False, untrusted=untrusted, running_uid=os.geteuid(), **identity)


if __name__ == "__main__":
    main()
