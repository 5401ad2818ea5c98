# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who can change a file or directory: owners, mode bits and POSIX ACLs.

Root must never write through, nor run code from, a path another user can change. The kernel lets
a user change an entry when the user owns it, or when a write permission reaches the user through
the entry's group, through "other", or through an ACL entry (named users and groups, limited by the
ACL's mask). A directory's default ACL grants the same to whatever is created in it next, so for a
directory it counts as well. UntrustedUser and replace_reason hold the rules path_trust_info reports
by and the descriptor-based writes (trusted_file) enforce, so that both refuse the same layouts; the
bridge's run-as decision uses writers(). Plain Python, no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import grp
import os
import pwd
import stat
import struct

ACL_ACCESS = "system.posix_acl_access"
ACL_DEFAULT = "system.posix_acl_default"
# linux/posix_acl_xattr.h: a little-endian u32 version, then (u16 tag, u16 perm, u32 id) entries.
_ACL_HEADER = struct.Struct("<I")
_ACL_ENTRY = struct.Struct("<HHI")
ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ACL_WRITE = 0x02


def acl_entries(target, name):
    """The entries [(tag, perm, id)] of the ACL `name` of `target` (a path, not followed, or a
    descriptor); [] when it has none or the file system keeps none."""
    try:
        if isinstance(target, int):
            raw = os.getxattr(target, name)
        else:
            raw = os.getxattr(target, name, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
            return []
        raise
    body = raw[_ACL_HEADER.size:]
    return [_ACL_ENTRY.unpack_from(body, offset) for offset in range(0, len(body) - _ACL_ENTRY.size + 1, _ACL_ENTRY.size)]


OWNER, GROUP, ACL, DEFAULT_ACL = "owner", "group", "ACL", "default ACL"


def describe_grant(how):
    """How a write permission reaches a user or group, as the end of a sentence."""
    if how == DEFAULT_ACL:
        return "through a default ACL entry (to what is created in it)"
    return "through an ACL entry" if how == ACL else "as its %s" % how


class Writers:
    """Who, besides root, can write an entry: uids (its owner among them), gids, and whether everyone can."""

    def __init__(self):
        self.uids = {}  # uid -> how: OWNER, GROUP, ACL or DEFAULT_ACL
        self.gids = {}  # gid -> how
        self.everyone = False

    def __bool__(self):
        return bool(self.uids or self.gids or self.everyone)

    __nonzero__ = __bool__


def writers(target, info):
    """The Writers of the entry `info` (its lstat/fstat) at `target` (a path or a descriptor)."""
    found = Writers()
    found.uids[info.st_uid] = OWNER  # an owner may chmod, whatever the bits say
    if stat.S_ISLNK(info.st_mode):
        return found  # a link's mode bits and ACLs mean nothing; its owner and its directory decide
    # Without the group write bit no access ACL can grant write: with an ACL, the group bits are its
    # mask, which caps every named entry and the owning group; "other" is the mode's own bits. So the
    # ACL is read only when it could matter (most entries of a tree never need the system call).
    access = acl_entries(target, ACL_ACCESS) if info.st_mode & stat.S_IWGRP else []
    if access:
        _add_acl_writers(found, access, info, ACL)
    else:  # with an access ACL, the group bits of the mode are its mask, not the group's permission
        if info.st_mode & stat.S_IWGRP:
            found.gids[info.st_gid] = GROUP
        found.everyone = bool(info.st_mode & stat.S_IWOTH)
    if stat.S_ISDIR(info.st_mode):
        _add_acl_writers(found, acl_entries(target, ACL_DEFAULT), info, DEFAULT_ACL)
    return found


def _add_acl_writers(found, entries, info, how):
    masks = [perm for tag, perm, _id in entries if tag == ACL_MASK]
    mask = masks[0] if masks else 0x07
    for tag, perm, ident in entries:
        if tag == ACL_USER and perm & mask & ACL_WRITE:
            found.uids.setdefault(ident, how)
        elif tag == ACL_GROUP_OBJ and perm & mask & ACL_WRITE:
            found.gids.setdefault(info.st_gid, GROUP if how == ACL else how)
        elif tag == ACL_GROUP and perm & mask & ACL_WRITE:
            found.gids.setdefault(ident, how)
        elif tag == ACL_OTHER and perm & ACL_WRITE:
            found.everyone = True


def group_members(gid):
    """The uids of the users in group `gid`: those it is the primary group of, and its listed members."""
    uids = set(entry.pw_uid for entry in pwd.getpwall() if entry.pw_gid == gid)
    try:
        for name in grp.getgrgid(gid).gr_mem:
            try:
                uids.add(pwd.getpwnam(name).pw_uid)
            except KeyError:
                pass
    except KeyError:
        pass
    return uids


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "uid %d" % uid


def group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return "gid %d" % gid


class UntrustedUser:
    """The user root does not trust: one user, or (name None) every user but root."""

    def __init__(self, name=None):
        self.name = self.uid = None
        self.gids = []
        if name is not None:
            entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
            self.name = entry.pw_name
            self.uid = entry.pw_uid
            self.gids = sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)))

    def runs_this_process(self):
        """Whatever this process writes, the user could have written itself: there is nothing to protect."""
        return os.geteuid() == self.uid if self.name else os.geteuid() != 0

    def owns(self, info):
        return info.st_uid == self.uid if self.name else info.st_uid != 0

    def owner_name(self, info):
        return self.name or user_name(info.st_uid)

    def is_user(self, uid):
        return uid == self.uid if self.name else uid != 0

    def in_group(self, gid):
        return gid in self.gids if self.name else gid != 0

    def groups_of(self, uid):
        """The gids of user `uid` (one this object distrusts)."""
        if self.name:
            return self.gids
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return []
        return sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid)))

    def can_change(self, info, target):
        """Why this user can change the entry `info` describes at `target` (a path or a descriptor):
        rename into it, or write through it; or None. Owners, mode bits and ACL entries all count."""
        if self.owns(info):
            return "is owned by %s" % self.owner_name(info)
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


def sticky_protects(directory_info, entry_info, user):
    """In a sticky directory that everyone may write (/tmp), only an entry's owner can rename or remove it."""
    if not directory_info.st_mode & stat.S_ISVTX or user.owns(directory_info):
        return False
    if directory_info.st_mode & stat.S_IWGRP and user.in_group(directory_info.st_gid):
        return False
    return entry_info is not None and not user.owns(entry_info)


def replace_reason(user, directory, directory_info, directory_target, entry, entry_info):
    """Why `user` could replace the entry `entry` (its lstat `entry_info`, None when it does not exist) of
    `directory` (its lstat/fstat, and its path or a descriptor of it): rename or remove it, or create it
    first. None when the user cannot."""
    reason = user.can_change(directory_info, directory_target)
    if reason is None or sticky_protects(directory_info, entry_info, user):
        return None
    if reason == "is writable by everyone" and entry_info is None:
        return "%s %s and %s does not exist yet" % (directory, reason, entry)
    return "%s %s" % (directory, reason)
