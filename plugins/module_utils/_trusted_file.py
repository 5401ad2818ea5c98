# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Create, write, chown and remove as root through directory descriptors, so that nothing on the way
can be swapped between a check and the write.

A path is walked from "/" one component at a time. Each directory is opened with O_NOFOLLOW relative
to the descriptor of its parent, and the parent is verified (through its descriptor: fstat, ACLs) to be
one the untrusted user cannot change, by the rules path_trust_info reports by (_path_trust). A symbolic
link on the way is resolved here, not by the kernel, after the same check. Whatever the user renames
afterwards, root keeps working in the directories it verified. The last component is then created
(O_CREAT|O_EXCL|O_NOFOLLOW), replaced (a new file renamed over it), changed (fchown and fchmod of a
descriptor) or removed by name, relative to its directory's descriptor.

A hard link elsewhere to a file root changes in place would see the change. Removals and replacements
by rename never touch the old file, so only a change of owner or mode in place can reach another name;
it is refused unless the file is the untrusted user's own and the change one that user could make.
Plain Python, no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import errno
import os
import stat

from ansible_collections.oauthops.toolkit.plugins.module_utils._path_trust import replace_reason

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
EXISTING_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
MAX_SYMLINKS = 40  # the kernel's own limit on links followed in one lookup
VERBS = {"file": "write", "directory": "set up the directory", "absent": "remove"}


class TrustedFileError(Exception):
    """One line for the operator: the path, and why nothing (more) was done."""


class Refused(Exception):
    """The untrusted user could redirect the operation, or a hard link would carry it elsewhere."""


class Missing(Exception):
    """A directory on the way does not exist."""


class Directory:
    """A directory held open, with the path it was reached by and its fstat."""

    def __init__(self, fd, path):
        self.fd = fd
        self.path = path
        self.info = os.fstat(fd)

    def child(self, name):
        return os.path.join(self.path, name)

    def lstat(self, name):
        try:
            return os.lstat(name, dir_fd=self.fd)
        except FileNotFoundError:
            return None

    def require_safe_entry(self, name, info, user):
        """Refuse when `user` could replace the entry `name` (its lstat `info`, None if missing) of this directory."""
        if user is None:
            return
        reason = replace_reason(user, self.path, self.info, self.fd, self.child(name), info)
        if reason is not None:
            raise Refused(reason)


def open_parent(path, user):
    """The Directory that holds the last component of the absolute `path`, and that component.

    Every directory on the way is opened relative to its verified parent; `user` None trusts everyone.
    """
    parts = [part for part in path.split("/") if part]
    if not parts or parts[-1] in (".", ".."):
        raise Refused("%s does not name an entry of a directory" % path)
    name = parts.pop()
    held = [Directory(os.open("/", DIRECTORY_FLAGS), "/")]
    seen_links = set()
    try:
        while parts:
            part = parts.pop(0)
            if part == "." or (part == ".." and len(held) == 1):
                continue
            if part == "..":
                os.close(held.pop().fd)
                continue
            parent = held[-1]
            try:
                fd = os.open(part, DIRECTORY_FLAGS, dir_fd=parent.fd)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                    raise
                target = link_target(parent, part, user, seen_links)
                if target.startswith("/"):
                    while len(held) > 1:
                        os.close(held.pop().fd)
                parts[:0] = [piece for piece in target.split("/") if piece]
                continue
            held.append(Directory(fd, parent.child(part)))
            parent.require_safe_entry(part, held[-1].info, user)
        directory = held.pop()
        return directory, name
    finally:
        for directory in held:
            os.close(directory.fd)


def link_target(parent, name, user, seen_links):
    """The target of the symbolic link `name` of `parent`, once checked like a directory on the way."""
    info = parent.lstat(name)
    parent.require_safe_entry(name, info, user)
    path = parent.child(name)
    if info is None:
        raise Missing(path)
    if stat.S_ISDIR(info.st_mode):
        # It was not one when opened: someone could write its directory a moment ago.
        raise Refused("%s was replaced while root opened it" % path)
    if not stat.S_ISLNK(info.st_mode):
        raise Refused("%s is not a directory" % path)
    if user is not None and user.owns(info):
        raise Refused("%s is a symbolic link owned by %s" % (path, user.owner_name(info)))
    if (info.st_dev, info.st_ino) in seen_links or len(seen_links) >= MAX_SYMLINKS:
        raise Refused("%s is part of a symbolic link loop" % path)
    seen_links.add((info.st_dev, info.st_ino))
    return os.readlink(name, dir_fd=parent.fd)


def kind(info):
    if info is None:
        return "absent"
    if stat.S_ISDIR(info.st_mode):
        return "directory"
    if stat.S_ISREG(info.st_mode):
        return "file"
    return "link" if stat.S_ISLNK(info.st_mode) else "other"


def describe(path, info):
    """What the diff shows of an entry."""
    found = {"path": path, "state": kind(info)}
    if info is not None and not stat.S_ISLNK(info.st_mode):
        found.update(owner=info.st_uid, group=info.st_gid, mode="%04o" % stat.S_IMODE(info.st_mode))
    return found


class Outcome:
    """What was done (or, in check mode, would be done), for the module's result."""

    def __init__(self, path, info):
        self.path = path
        self.actions = []
        self.before = describe(path, info)
        self.after = dict(self.before)
        self.content = None  # (before, after) text for the diff, when it changed and may be shown

    @property
    def changed(self):
        return bool(self.actions)


class Request:
    """One trusted_file task: the path, what it should be, and whom not to trust (None: nobody)."""

    def __init__(self, path, state, user, check_mode, owner=None, group=None, mode=None, content=None,
                 secret=False, recurse=False):
        self.path = path
        self.state = state
        self.user = user
        self.check_mode = check_mode
        self.owner = owner
        self.group = group
        self.mode = mode
        self.content = content  # bytes, or None to keep what a file holds
        self.secret = secret
        self.recurse = recurse

    def run(self):
        """Apply the request; an Outcome, or TrustedFileError with one line."""
        verb = VERBS[self.state]
        try:
            try:
                directory, name = open_parent(self.path, self.user)
            except Missing as exc:
                return self.missing_directory(str(exc))
            try:
                info = directory.lstat(name)
                directory.require_safe_entry(name, info, self.user)
                outcome = Outcome(self.path, info)
                if self.state == "absent":
                    self.remove(directory, name, info, outcome)
                elif self.state == "directory":
                    self.make_directory(directory, name, info, outcome)
                else:
                    self.make_file(directory, name, info, outcome)
                return outcome
            finally:
                os.close(directory.fd)
        except Refused as exc:
            raise TrustedFileError("refusing to %s %s: %s" % (verb, self.path, exc))
        except OSError as exc:
            raise TrustedFileError("cannot %s %s: %s" % (verb, self.path, os.strerror(exc.errno)))

    def missing_directory(self, missing):
        outcome = Outcome(self.path, None)
        if self.state == "absent":
            return outcome
        if not self.check_mode:
            raise TrustedFileError("cannot %s %s: %s does not exist" % (VERBS[self.state], self.path, missing))
        # A dry run of a first install: an earlier task would have created the directory.
        outcome.actions.append("create the %s (once %s exists)" % (self.state, missing))
        outcome.after = dict(path=self.path, state=self.state, owner=self.target_uid(None),
                             group=self.target_gid(None), mode="%04o" % self.mode)
        return outcome

    # -- state=directory ------------------------------------------------------------------------

    def make_directory(self, directory, name, info, outcome):
        if info is not None and not stat.S_ISDIR(info.st_mode):
            raise Refused(self.wrong_kind(info))
        if info is None:
            outcome.actions.append("create the directory")
            outcome.after = dict(path=self.path, state="directory", owner=self.target_uid(None),
                                 group=self.target_gid(None), mode="%04o" % self.mode)
            if self.check_mode:
                return
            # 0700 until it has its owner and mode: nobody else sees it half set up.
            os.mkdir(name, 0o700, dir_fd=directory.fd)
        fd = os.open(name, DIRECTORY_FLAGS, dir_fd=directory.fd)
        try:
            self.settle_attributes(fd, os.fstat(fd), outcome, created=info is None)
            if not self.check_mode:
                os.fsync(fd)
                if info is None:
                    os.fsync(directory.fd)
        finally:
            os.close(fd)

    # -- state=file -----------------------------------------------------------------------------

    def make_file(self, directory, name, info, outcome):
        if info is not None and not stat.S_ISREG(info.st_mode):
            raise Refused(self.wrong_kind(info))
        if info is None:
            outcome.after = dict(path=self.path, state="file", owner=self.target_uid(None),
                                 group=self.target_gid(None), mode="%04o" % self.mode)
            if self.content is None:
                self.create_empty(directory, name, outcome)
            else:
                self.replace(directory, name, outcome, None, None, "create the file")
            return
        fd = os.open(name, EXISTING_FILE_FLAGS, dir_fd=directory.fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise Refused(self.wrong_kind(info))
            if self.content is not None and read_if_size(fd, info, len(self.content)) != self.content:
                self.replace(directory, name, outcome, fd, info, "write the content (a new file renamed over the old one)")
                return
            if self.attributes_differ(info) and not self.in_place_is_safe(info):
                if self.content is None:
                    raise Refused(self.hard_link_reason(info))
                # The same content in a new file, with the new owner and mode: the other names keep theirs.
                self.replace(directory, name, outcome, fd, info,
                             "replace the file by a copy with the new owner and mode (it has %d hard links)"
                             % info.st_nlink, content_changes=False)
                return
            self.settle_attributes(fd, info, outcome, created=False)
            if outcome.changed and not self.check_mode:
                os.fsync(fd)
        finally:
            os.close(fd)

    def create_empty(self, directory, name, outcome):
        outcome.actions.append("create the file, empty")
        if self.check_mode:
            return
        fd = os.open(name, NEW_FILE_FLAGS, 0o600, dir_fd=directory.fd)
        try:
            self.settle_attributes(fd, os.fstat(fd), outcome, created=True)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.fsync(directory.fd)

    def replace(self, directory, name, outcome, old_fd, old_info, action, content_changes=True):
        """Write the content to a new file in the same directory, give it its owner and mode, and rename
        it over `name`: readers see the old file or the new one, and the old inode is never touched."""
        outcome.actions.append(action)
        uid, gid = self.target_uid(old_info), self.target_gid(old_info)
        outcome.after.update(state="file", owner=uid, group=gid, mode="%04o" % self.mode)
        if content_changes and self.secret:
            outcome.before["content"] = "(secret)" if old_info is not None else "(none)"
            outcome.after["content"] = "(secret, changed)"
        elif content_changes:
            outcome.content = (old_text(old_fd, old_info), decode(self.content))
        if self.check_mode:
            return
        temporary = ".%s.%s.tmp" % (name[:200], binascii.hexlify(os.urandom(6)).decode())
        fd = os.open(temporary, NEW_FILE_FLAGS, 0o600, dir_fd=directory.fd)
        try:
            try:
                view = memoryview(self.content)
                while view:
                    view = view[os.write(fd, view):]
                os.fchown(fd, uid, gid)
                os.fchmod(fd, self.mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, name, src_dir_fd=directory.fd, dst_dir_fd=directory.fd)
        except BaseException:
            try:
                os.unlink(temporary, dir_fd=directory.fd)
            except FileNotFoundError:
                pass
            raise
        os.fsync(directory.fd)

    # -- owner, group and mode ------------------------------------------------------------------

    def target_uid(self, info):
        if self.owner is not None:
            return self.owner
        return os.geteuid() if info is None else info.st_uid

    def target_gid(self, info):
        if self.group is not None:
            return self.group
        return os.getegid() if info is None else info.st_gid

    def attributes_differ(self, info):
        return (self.target_uid(info), self.target_gid(info), self.mode) != (
            info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode))

    def in_place_is_safe(self, info):
        """A change of owner, group or mode in place reaches every name of the file. That is harmless when
        the file has no other name, or when it is the untrusted user's own and stays so: that user could
        make the same change itself."""
        if info.st_nlink <= 1 or self.user is None:
            return True
        if not self.user.owns(info) or self.target_uid(info) != info.st_uid:
            return False
        gid = self.target_gid(info)
        return gid == info.st_gid or gid in self.user.groups_of(info.st_uid)

    def hard_link_reason(self, info):
        change = "%d:%d %04o to %d:%d %04o" % (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode),
                                               self.target_uid(info), self.target_gid(info), self.mode)
        return (
            "it has %d hard links, and changing its owner and mode from %s is not a change %s could make itself: "
            "made in place, it would reach the file under its other names too. Remove the other names "
            "(find / -xdev -samefile %s) or this one"
            % (info.st_nlink, change, self.user.name or "its owner", self.path)
        )

    def settle_attributes(self, fd, info, outcome, created):
        uid, gid = self.target_uid(info), self.target_gid(info)
        if (uid, gid) != (info.st_uid, info.st_gid):
            if not created:
                outcome.actions.append("change the owner and group from %d:%d to %d:%d"
                                       % (info.st_uid, info.st_gid, uid, gid))
            if not self.check_mode:
                os.fchown(fd, uid, gid)
                info = os.fstat(fd)  # a chown may clear the set-id bits
        if stat.S_IMODE(info.st_mode) != self.mode:
            if not created:
                outcome.actions.append("change the mode from %04o to %04o" % (stat.S_IMODE(info.st_mode), self.mode))
            if not self.check_mode:
                os.fchmod(fd, self.mode)
        outcome.after.update(owner=uid, group=gid, mode="%04o" % self.mode)

    # -- state=absent ---------------------------------------------------------------------------

    def remove(self, directory, name, info, outcome):
        """By name, relative to the directory's descriptor: a link goes, never what it points to."""
        if info is None:
            return
        outcome.after = describe(self.path, None)
        if not stat.S_ISDIR(info.st_mode):
            outcome.actions.append("remove the %s" % kind(info))
            if not self.check_mode:
                os.unlink(name, dir_fd=directory.fd)
                os.fsync(directory.fd)
            return
        fd = os.open(name, DIRECTORY_FLAGS, dir_fd=directory.fd)
        try:
            entries = sorted(os.listdir(fd))
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            if entries and not self.recurse and not self.check_mode:
                raise TrustedFileError("cannot remove %s: the directory is not empty (it holds %s)" % (self.path, shown))
            if entries and not self.recurse:
                # A dry run: earlier tasks would have removed what it holds.
                outcome.actions.append("remove the directory once it is empty (it holds %s)" % shown)
                return
            if entries:
                outcome.actions.append("remove the %d entries in the directory" % count_entries(fd))
                if not self.check_mode:
                    empty_directory(fd)
        finally:
            os.close(fd)
        outcome.actions.append("remove the directory")
        if not self.check_mode:
            os.rmdir(name, dir_fd=directory.fd)
            os.fsync(directory.fd)

    def wrong_kind(self, info):
        if stat.S_ISLNK(info.st_mode):
            return "it is a symbolic link"
        return "it is a %s, not a %s" % ("special file" if kind(info) == "other" else kind(info), self.state)


def count_entries(fd):
    total = 0
    for name in os.listdir(fd):
        total += 1
        info = os.lstat(name, dir_fd=fd)
        if stat.S_ISDIR(info.st_mode):
            child = os.open(name, DIRECTORY_FLAGS, dir_fd=fd)
            try:
                total += count_entries(child)
            finally:
                os.close(child)
    return total


def empty_directory(fd):
    """Remove everything in the directory `fd`, depth first, each entry by name relative to its own
    directory's descriptor (a link is removed, never followed)."""
    for name in os.listdir(fd):
        info = os.lstat(name, dir_fd=fd)
        if stat.S_ISDIR(info.st_mode):
            child = os.open(name, DIRECTORY_FLAGS, dir_fd=fd)
            try:
                empty_directory(child)
            finally:
                os.close(child)
            os.rmdir(name, dir_fd=fd)
        else:
            os.unlink(name, dir_fd=fd)


def read_if_size(fd, info, size):
    """The file's content when it has `size` bytes, else None (it differs anyway)."""
    if info.st_size != size:
        return None
    return read_all(fd)


def old_text(fd, info, limit=1 << 20):
    """The replaced file's text for the diff (not the whole of a large one)."""
    if info is None:
        return ""
    if info.st_size > limit:
        return "(%d bytes, not shown)\n" % info.st_size
    return decode(read_all(fd))


def read_all(fd):
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def decode(data):
    return data.decode("utf-8", "replace")
