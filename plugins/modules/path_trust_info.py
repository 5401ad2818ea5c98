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
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.oauthops.toolkit.plugins.module_utils._path_trust import (
    GROUP,
    describe_grant,
    group_name,
    user_name,
    writers,
)


class UntrustedUser:
    """One user, or (name None) every user but root."""

    def __init__(self, name=None):
        self.name = self.uid = None
        self.gids = []
        if name is not None:
            entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
            self.name = entry.pw_name
            self.uid = entry.pw_uid
            self.gids = sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)))

    def owns(self, info):
        return info.st_uid == self.uid if self.name else info.st_uid != 0

    def is_user(self, uid):
        return uid == self.uid if self.name else uid != 0

    def in_group(self, gid):
        return gid in self.gids if self.name else gid != 0

    def can_change(self, info, target):
        """Why this user can change the entry `info` describes at `target` (rename into, or write
        through), or None. Owners, mode bits and ACL entries all count."""
        if self.owns(info):
            return "is owned by %s" % (self.name or user_name(info.st_uid))
        found = writers(target, info)
        for uid, how in sorted(found.uids.items()):
            if self.is_user(uid):
                return "grants %s write access %s" % (user_name(uid), describe_grant(how))
        for gid, how in sorted(found.gids.items()):
            if self.in_group(gid):
                members = ", which %s is in" % self.name if self.name else ""
                if how == GROUP:
                    return "is writable by its group %s%s" % (group_name(gid), members)
                return "grants group %s write access %s%s" % (group_name(gid), describe_grant(how), members)
        if found.everyone:
            return "is writable by everyone"
        return None


def untrusted_reason(path, user, seen=None):
    """The first way `user` could redirect a write through `path`, or None."""
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
        reason = user.can_change(parent_info, parent)
        if reason is not None and not sticky_protects(parent_info, info, user):
            if reason == "is writable by everyone" and info is None:
                return "%s %s and %s does not exist yet" % (parent, reason, current)
            return "%s %s" % (parent, reason)
        if info is None:
            return None  # root creates the rest, in a directory the user cannot change
        if stat.S_ISLNK(info.st_mode):
            if is_last:
                return "%s is a symbolic link" % current
            if user.owns(info):
                return "%s is a symbolic link owned by %s" % (current, user.name or user_name(info.st_uid))
            if current in seen:
                return "%s is part of a symbolic link loop" % current
            seen.add(current)
            target = os.path.normpath(os.path.join(parent, os.readlink(current)))
            rest = "/".join(components[index + 1:])
            return untrusted_reason(os.path.join(target, rest), user, seen)
        if is_last:
            if stat.S_ISDIR(info.st_mode):
                reason = user.can_change(info, current)
                return None if reason is None else "%s %s" % (current, reason)
            if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                return "%s has %d hard links, so changing it changes another name too" % (current, info.st_nlink)
            return None
        if not stat.S_ISDIR(info.st_mode):
            return "%s is not a directory" % current
        parent, parent_info = current, info
    # The path is "/" itself.
    reason = user.can_change(parent_info, "/")
    return None if reason is None else "/ %s" % reason


def sticky_protects(directory_info, entry_info, user):
    """In a sticky directory that everyone may write (/tmp), only an entry's owner can rename or remove it."""
    if not directory_info.st_mode & stat.S_ISVTX or user.owns(directory_info):
        return False
    if directory_info.st_mode & stat.S_IWGRP and user.in_group(directory_info.st_gid):
        return False
    return entry_info is not None and not user.owns(entry_info)


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
    # Whatever the module's own user writes, that user could have written itself.
    nothing_to_protect = os.geteuid() == user.uid if user.name else os.geteuid() != 0
    untrusted = []
    for path in module.params["paths"]:
        if not os.path.isabs(path):
            module.fail_json(msg="paths: %s is not an absolute path" % path)
        if nothing_to_protect:
            continue
        reason = untrusted_reason(os.path.normpath(path), user)
        if reason is not None:
            untrusted.append(dict(path=path, reason=reason))
    identity = dict(uid=user.uid, groups=user.gids) if user.name else {}
    module.exit_json(changed=False, untrusted=untrusted, running_uid=os.geteuid(), **identity)


if __name__ == "__main__":
    main()
