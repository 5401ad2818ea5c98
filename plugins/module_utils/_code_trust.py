# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who, besides root, can change the code and configuration a run of the Django side would load.

A module run as root starts the project's Python, which imports the project (its settings are
code), the packages of its virtualenv and whatever pythonpath and env_file add. Anyone who can
change one of those files, or a directory on the way to one, or create a module in a directory on
sys.path, runs code as root. Before anything of the project starts, the bridge collects that:
every entry of each tree is looked at with lstat (a link counts as an entry of its own, and its
target is checked too: the target, the directories above it and, for a directory, its tree), and
so is every directory above each tree and file. Each entry's writers (_path_trust.writers: owner,
mode bits, ACLs) give the users who could change it; a group stands for its members.

Directories above a tree are judged as the kernel judges a path lookup through them: in a sticky
directory (/tmp) only the owner of an entry, or of the directory, can rename it, and their default
ACLs only concern what is created later. Inside a tree nothing softens a grant: whoever can create
an entry in a directory on sys.path can plant a module.

Plain Python, no Ansible import. Nothing is opened but files found to be root's alone (a
virtualenv's pyvenv.cfg and .pth files, setuptools' editable finders), and nothing runs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import glob
import os
import stat

from ansible_collections.oauthops.toolkit.plugins.module_utils._path_trust import (
    DEFAULT_ACL,
    GROUP,
    OWNER,
    describe_grant,
    group_members,
    group_name,
    user_name,
    writers,
)

# The kernel's own limit on links followed in one lookup (ELOOP).
MAX_LINKS = 40
# Without these bits no access ACL can grant write (see _path_trust.writers): only the owner can
# change such an entry, unless it is a directory of a tree, whose default ACL counts too.
GROUP_OR_OTHER_WRITE = stat.S_IWGRP | stat.S_IWOTH


class CodeControllers:
    """The users who can change what a run would load, with the first place found for each, and
    the places that no single user answers for: a group of several members, or everyone."""

    def __init__(self):
        self.users = {}  # uid -> "PATH is owned by NAME", the first reason found
        self.shared = []  # "PATH is writable by everyone", ...
        self._ancestors = {}  # (path, inside a tree) -> whether only root can change it; directories are shared
        self._flagged = set()  # every path someone besides root can change
        self._walked = []  # real paths of the trees walked
        self._members = {}

    def __bool__(self):
        return bool(self.users or self.shared)

    __nonzero__ = __bool__

    def add_file(self, path):
        """A file (or any single entry) and the directories above it; whether only root controls them."""
        return self._resolve(path)[1]

    def add_tree(self, path):
        """A directory on sys.path (or a file there, such as a zip) with everything below it, and the
        directories above it; whether only root controls all of it. Walked whoever controls the way to
        it: a second user in it must be found too."""
        real, clean = self._resolve(path)
        if real is None:
            return clean
        if any(_within(real, done) for done in self._walked):
            return clean and not any(_within(flagged, real) for flagged in self._flagged)
        self._walked.append(real)
        stack = [real] if stat.S_ISDIR(os.lstat(real).st_mode) else []
        while stack:
            directory = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except FileNotFoundError:
                continue
            except OSError as exc:  # root cannot read it (NFS root_squash, FUSE): unknown is not trusted
                self.shared.append("%s cannot be read (%s)" % (directory, exc.strerror))
                clean = False
                continue
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if info.st_uid == 0 and stat.S_ISREG(info.st_mode) and not info.st_mode & GROUP_OR_OTHER_WRITE:
                    continue  # most of a tree: root's files that only root can write (the walk's cost is here)
                clean = self._check(entry.path, info, inside_tree=True) and clean
                if stat.S_ISDIR(info.st_mode):
                    stack.append(entry.path)
                elif stat.S_ISLNK(info.st_mode):
                    clean = self.add_tree(os.path.join(directory, os.readlink(entry.path))) and clean
        return clean

    def _resolve(self, path, links=0):
        """Look `path` up one component at a time from /, checking each directory on the way, each
        link and the entry itself: (its real path or None when it does not exist, whether only root
        controls the way to it). For a missing entry, whoever can create it counts."""
        clean = self._check_directory("/", inside_tree=False)
        current = "/"
        components = [part for part in path.split("/") if part not in ("", ".")]
        for index, name in enumerate(components):
            if name == "..":
                current = os.path.dirname(current)
                continue
            candidate = os.path.join(current, name)
            try:
                info = os.lstat(candidate)
            except (FileNotFoundError, NotADirectoryError):
                # Sticky or not, whoever can write the directory can create the entry.
                return None, self._check_directory(current, inside_tree=True) and clean
            last = index == len(components) - 1
            if stat.S_ISLNK(info.st_mode):
                clean = self._check(candidate, info, inside_tree=True) and clean
                if links >= MAX_LINKS:
                    return None, clean  # a loop: nothing loads through it
                target = os.path.join(current, os.readlink(candidate), *components[index + 1:])
                real, target_clean = self._resolve(target, links + 1)
                return real, target_clean and clean
            if last:
                return candidate, self._check(candidate, info, inside_tree=True) and clean
            if not stat.S_ISDIR(info.st_mode):
                return None, clean
            clean = self._check_directory(candidate, inside_tree=False, info=info) and clean
            current = candidate
        return current, clean

    def _check_directory(self, path, inside_tree, info=None):
        """_check, once per directory: many paths share the directories above them."""
        key = (path, inside_tree)
        if key not in self._ancestors:
            self._ancestors[key] = self._check(path, info or os.lstat(path), inside_tree)
        return self._ancestors[key]

    def _check(self, path, info, inside_tree):
        """Record who besides root can change the entry at `path`; whether nobody can."""
        reasons = []
        if info.st_uid != 0:
            reasons.append((info.st_uid, "%s is owned by %s" % (path, user_name(info.st_uid))))
        if info.st_mode & GROUP_OR_OTHER_WRITE or (inside_tree and stat.S_ISDIR(info.st_mode)):
            # In a sticky directory on the way only an entry's owner (checked on its own) or the
            # directory's can rename or remove the entry; a directory of a tree also has its default ACL.
            if inside_tree or not info.st_mode & stat.S_ISVTX:
                reasons += self._grants(path, info, inside_tree)
        for uid, reason in reasons:
            if uid is None:
                if reason not in self.shared:
                    self.shared.append(reason)
            else:
                self.users.setdefault(uid, reason)
        if reasons:
            self._flagged.add(path)
        return not reasons

    def _grants(self, path, info, inside_tree):
        """(uid or None, reason) for each write access the entry's mode and ACLs grant besides its owner."""
        found = writers(path, info)
        grants = []
        for uid, how in sorted(found.uids.items()):
            if how != OWNER and uid != 0 and (inside_tree or how != DEFAULT_ACL):
                grants.append((uid, "%s grants %s write access %s" % (path, user_name(uid), describe_grant(how))))
        for gid, how in sorted(found.gids.items()):
            members = sorted(self._group_members(gid))
            if not members or (how == DEFAULT_ACL and not inside_tree):
                continue
            if how == GROUP:
                reason = "%s is writable by its group %s" % (path, group_name(gid))
            else:
                reason = "%s grants group %s write access %s" % (path, group_name(gid), describe_grant(how))
            if len(members) == 1:
                grants.append((members[0], "%s, whose only member is %s" % (reason, user_name(members[0]))))
            else:
                grants.append((None, "%s, whose members are %s" % (reason, ", ".join(user_name(uid) for uid in members))))
        if found.everyone:
            grants.append((None, "%s is writable by everyone" % path))
        return grants

    def _group_members(self, gid):
        if gid not in self._members:
            self._members[gid] = set(group_members(gid)) - {0}
        return self._members[gid]


def _within(path, directory):
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def virtualenv_of(python):
    """The virtualenv `python` belongs to (where Python itself finds pyvenv.cfg: beside the
    executable or one level up), or None."""
    bin_directory = os.path.dirname(python)
    for directory in (bin_directory, os.path.dirname(bin_directory)):
        if os.path.isfile(os.path.join(directory, "pyvenv.cfg")):
            return directory
    return None


def includes_system_site(virtualenv):
    """Whether the virtualenv sees the base interpreter's site-packages (and so the user's)."""
    try:
        with open(os.path.join(virtualenv, "pyvenv.cfg"), errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    for line in lines:
        name, _equals, value = line.partition("=")
        if name.strip().lower() == "include-system-site-packages":
            return value.strip().lower() == "true"
    return False


def user_site_paths(controllers, environment):
    """Check the user site-packages an interpreter outside a virtualenv imports from (and runs the .pth
    files of): under PYTHONUSERBASE or ~/.local of the HOME it is given, which under sudo may be
    another user's; even when it does not exist yet, whoever could create it counts. Returns what its
    .pth files add, when it is root's."""
    if environment.get("PYTHONNOUSERSITE"):
        return []
    base = environment.get("PYTHONUSERBASE") or os.path.join(environment.get("HOME") or os.path.expanduser("~"), ".local")
    if not controllers.add_file(os.path.join(base, "lib")):
        return []  # not root's: the run will not be root's either
    found = []
    for site_packages in glob.glob(os.path.join(base, "lib", "python*", "site-packages")):
        if controllers.add_tree(site_packages):
            found += pth_paths(site_packages)
    return found


def loader_paths(environment):
    """What an environment points the interpreter and the dynamic loader at besides PYTHONPATH."""
    paths = environment.get("PYTHONHOME", "").split(os.pathsep) + environment.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    return [path for path in paths + environment.get("LD_PRELOAD", "").replace(":", " ").split() if path]


def site_paths(virtualenv):
    """Directories a virtualenv's site-packages add to sys.path from elsewhere: the path lines of its
    .pth files (`pip install -e` of old) and the mappings of setuptools' editable finders. Read only
    once the virtualenv is known to be root's."""
    found = []
    for site_packages in glob.glob(os.path.join(virtualenv, "lib", "python*", "site-packages")):
        found += pth_paths(site_packages)
    return found


def pth_paths(site_packages):
    """The directories the .pth files and editable finders of one site-packages directory add."""
    found = []
    for pth in sorted(glob.glob(os.path.join(site_packages, "*.pth"))):
        with open(pth, errors="replace") as handle:
            for line in handle.read().splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "import ", "import\t")):
                    found.append(os.path.join(site_packages, line))
    for finder in sorted(glob.glob(os.path.join(site_packages, "__editable___*_finder.py"))):
        found.extend(editable_mapping(finder))
    return found


def editable_mapping(finder):
    """The paths of `MAPPING = {...}` in a setuptools editable finder module, read without running it."""
    with open(finder, errors="replace") as handle:
        try:
            tree = ast.parse(handle.read())
        except SyntaxError:
            return []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(target, ast.Name) and target.id == "MAPPING" for target in targets) and node.value:
            try:
                mapping = ast.literal_eval(node.value)
            except ValueError:
                return []
            return [path for path in mapping.values() if isinstance(path, str)] if isinstance(mapping, dict) else []
    return []
