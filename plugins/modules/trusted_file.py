#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: trusted_file
short_description: Create, write, chown or remove a file or directory where a user cannot redirect it
version_added: 0.2.0
description:
  - Does what M(ansible.builtin.file) and M(ansible.builtin.copy) do for one path, as root, in places that
    O(user) can reach, without ever letting O(user) redirect it, even by racing the task.
  - The path is walked from C(/) one directory at a time. Each directory is opened without following a link,
    relative to its parent's descriptor, and that parent is checked through its descriptor to be one O(user)
    cannot change - by the rules of M(oauthops.toolkit.path_trust_info) (owners, group and other write bits,
    POSIX ACL entries and default ACLs, sticky directories). A symbolic link on the way is followed only when its
    directory passed the same check and O(user) does not own it. Every write then happens relative to the
    verified directory's descriptor, so renaming a directory on the way, or swapping it for a link, after the check
    changes nothing.
  - A file is created with C(O_CREAT|O_EXCL|O_NOFOLLOW), and its owner and mode are set on the open descriptor
    (C(fchown), C(fchmod)) and synced. New content goes to a new file in the same directory, which is renamed over
    the old one. A removal unlinks the name (a link goes, never what it points to).
  - A hard link elsewhere sees whatever is changed in place. Writing new content (a rename) and removing (an
    unlink) never touch the old file, so they are always done. A change of owner or mode in place of a file with
    several hard links is done only when the file is O(user)'s own and the change one O(user) could make itself;
    otherwise a file with O(content) or O(secret_content) is replaced by a copy with the new owner and mode, and
    one without is refused.
  - Check mode reports what would be done (RV(actions)) and does nothing. Diff mode shows owner, group, mode and
    kind, and the content when O(content) changes; never the content of O(secret_content).
  - Errors are one line that names the path and the reason.
author:
  - oauthops.toolkit maintainers (@oauthops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The content of O(secret_content) is never shown.
  platform:
    platforms: posix
    details: Linux (directory descriptors, C(O_NOFOLLOW), POSIX ACLs as extended attributes).
options:
  path:
    description:
      - Absolute path of the file or directory, taken as written (no C(~) or C($VAR) expansion).
      - The directory that holds it must exist, except in check mode.
    type: str
    required: true
  state:
    description:
      - V(file) creates the file when it is missing (with O(content) or O(secret_content), or empty), writes the
        content when one is given and differs, and sets O(owner), O(group) and O(mode). Without a content, an
        existing file keeps its own.
      - V(directory) creates the directory when it is missing and sets O(owner), O(group) and O(mode).
      - V(absent) removes the file, link or empty directory (with O(recurse), a directory and everything in it).
        A path whose directory does not exist is already absent.
    type: str
    choices: [file, directory, absent]
    default: file
  content:
    description:
      - The whole content of the file (V(state=file)). Shown in diff mode.
      - Mutually exclusive with O(secret_content).
    type: str
  secret_content:
    description:
      - Like O(content), for a content that is secret. It never appears in the task's output, its diff or its
        logs.
    type: str
  files:
    description:
      - Several entries of the directory O(path), handled in one task instead of a loop of tasks (one module run
        instead of one a file, which is what a role that ships a package of code wants). O(path) is then the directory
        that holds them, and each entry is handled as O(path)/NAME would be, walked and checked the same way.
      - With V(state=file), a dictionary of file names and their whole contents (each as O(content), shown in
        diff mode); O(owner), O(group) and O(mode) apply to every file.
      - With V(state=absent), a list of the names to remove (O(recurse) applies to each).
      - A name is one entry of the directory, never a path (no C(/), not C(.) or C(..)). Every name is checked
        before anything is done, and an empty O(files) is refused. The entries are handled in the order given;
        a failure stops the task at that entry, the ones before it done, as a loop of tasks would.
      - Mutually exclusive with O(content) and O(secret_content); not with V(state=directory).
    type: raw
    version_added: 0.3.0
  owner:
    description:
      - User name or uid of the owner. Left out, a new entry is owned by the user the module runs as and an
        existing one keeps its owner.
    type: str
  group:
    description:
      - Group name or gid. Left out, a new entry gets the group the module runs with and an existing one keeps its
        group.
    type: str
  mode:
    description:
      - Permissions, as an octal string (V('0640')) or a number. Required with V(state=file) and
        V(state=directory).
    type: raw
  recurse:
    description:
      - With V(state=absent), remove a directory that is not empty, and everything in it (by descriptor, never
        following a link). Without it, such a directory is an error that lists what it holds.
    type: bool
    default: false
  user:
    description:
      - The user that is not trusted (name or numeric uid), typically the application's user.
      - Without it, no user but root is trusted, nor a directory a group other than root's may write.
      - When the module runs as O(user) itself, there is nothing to protect and no directory is refused.
    type: str
seealso:
  - module: oauthops.toolkit.path_trust_info
    description: Reports, with a reason, every path a user could redirect; run it first to refuse a layout as a whole.
  - module: ansible.builtin.file
  - module: ansible.builtin.copy
"""

EXAMPLES = r"""
- name: The job's directory, root's, that the application's user may read
  oauthops.toolkit.trusted_file:
    path: /var/lib/shop-jobs
    state: directory
    owner: root
    group: shop
    mode: "0750"
    user: shop

- name: A secret environment file that only the application's user reads
  oauthops.toolkit.trusted_file:
    path: /var/lib/shop-jobs/environment.json
    secret_content: "{{ {'DATABASE_URL': 'postgres://shop:s3cret@db/shop'} | to_nice_json }}\n"
    owner: shop
    group: shop
    mode: "0600"
    user: shop

- name: A log file the user appends to (created empty, its content kept)
  oauthops.toolkit.trusted_file:
    path: /var/log/shop-jobs.log
    owner: shop
    group: shop
    mode: "0640"
    user: shop

- name: Code the user runs but cannot change
  oauthops.toolkit.trusted_file:
    path: /var/lib/shop-jobs/hello.py
    content: "print('hello')\n"
    owner: root
    group: shop
    mode: "0640"
    user: shop

- name: A package of code in one task (one module run, however many files)
  oauthops.toolkit.trusted_file:
    path: /var/lib/shop-jobs
    files:
      __init__.py: ""
      tasks.py: "def run():\n    print('tasks')\n"
    owner: root
    group: shop
    mode: "0640"
    user: shop

- name: Remove the package's files, by name
  oauthops.toolkit.trusted_file:
    path: /var/lib/shop-jobs
    files: [__init__.py, tasks.py]
    state: absent
    user: shop

- name: Remove them again, the directory last
  oauthops.toolkit.trusted_file:
    path: "{{ item }}"
    state: absent
    user: shop
  loop:
    - /var/log/shop-jobs.log
    - /var/lib/shop-jobs/environment.json
    - /var/lib/shop-jobs/hello.py
    - /var/lib/shop-jobs
"""

RETURN = r"""
state:
  description:
    - What the path is now (in check mode, would be) - V(file), V(directory) or V(absent).
    - With O(files), what every entry named there is now (V(file) or V(absent)).
  returned: always
  type: str
  sample: file
actions:
  description:
    - What the module did, or in check mode would do, in order; empty when nothing changed.
    - "With O(files), each action starts with the name of the entry it concerns (V(tasks.py: create the file))."
  returned: always
  type: list
  elements: str
  sample:
    - write the content (a new file renamed over the old one)
owner:
  description: The uid of the owner.
  returned: when O(state) is not V(absent)
  type: int
  sample: 0
group:
  description: The gid of the group.
  returned: when O(state) is not V(absent)
  type: int
  sample: 998
mode:
  description: The permissions, in octal.
  returned: when O(state) is not V(absent)
  type: str
  sample: "0640"
"""

import grp
import os
import pwd
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.oauthops.toolkit.plugins.module_utils._path_trust import UntrustedUser
from ansible_collections.oauthops.toolkit.plugins.module_utils._trusted_file import Request, TrustedFileError


def numeric_id(value, lookup, what):
    if value is None or value.isdigit():
        return None if value is None else int(value)
    try:
        return lookup(value)
    except KeyError:
        raise ValueError("%s %s does not exist" % (what, value))


def numeric_mode(value):
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0o7777:
        return value
    if isinstance(value, str) and re.match(r"^0?[0-7]{3,4}\Z", value):
        return int(value, 8)
    raise ValueError("mode %r is not an octal mode such as '0640'" % (value,))


def entry_names(files, state):
    """The names of O(files), checked, in order: a dict's keys (state=file) or a list (state=absent)."""
    wanted = dict if state == "file" else list
    if state == "directory" or not isinstance(files, wanted):
        raise ValueError("files needs state=file with a dictionary of names and contents, or state=absent with a "
                         "list of names, not state=%s with a %s" % (state, type(files).__name__))
    if not files:
        raise ValueError("files is empty: name at least one entry")
    names = list(files)
    for name in names:
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
            raise ValueError("files: %r is not the name of an entry of a directory (no /, not . or ..)" % (name,))
        if state == "file" and not isinstance(files[name], str):
            raise ValueError("files: the content of %s is not a string" % name)
    if len(set(names)) != len(names):
        raise ValueError("files names an entry twice")
    return names


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="str", required=True),
            state=dict(type="str", default="file", choices=["file", "directory", "absent"]),
            content=dict(type="str"),
            secret_content=dict(type="str", no_log=True),
            files=dict(type="raw"),
            owner=dict(type="str"),
            group=dict(type="str"),
            mode=dict(type="raw"),
            recurse=dict(type="bool", default=False),
            user=dict(type="str"),
        ),
        mutually_exclusive=[("content", "secret_content", "files")],
        required_if=[("state", "file", ["mode"]), ("state", "directory", ["mode"])],
        supports_check_mode=True,
    )
    params = module.params
    path, state, files = params["path"], params["state"], params["files"]
    content = params["secret_content"] if params["content"] is None else params["content"]
    if not os.path.isabs(path):
        module.fail_json(msg="path: %s is not an absolute path" % path)
    if content is not None and state != "file":
        module.fail_json(msg="content and secret_content need state=file, not state=%s" % state)
    if params["recurse"] and state != "absent":
        module.fail_json(msg="recurse applies to state=absent only")
    try:
        user = UntrustedUser(params["user"])
    except (KeyError, ValueError):
        module.fail_json(msg="user %s does not exist" % params["user"])
    try:
        options = dict(
            owner=numeric_id(params["owner"], lambda name: pwd.getpwnam(name).pw_uid, "owner"),
            group=numeric_id(params["group"], lambda name: grp.getgrnam(name).gr_gid, "group"),
            mode=numeric_mode(params["mode"]),
            secret=params["secret_content"] is not None,
            recurse=params["recurse"],
        )
        # (label for the actions, path, content): the path itself, or each entry of files in the directory path.
        targets = [(None, path, content)] if files is None else [
            (name, os.path.join(path, name), files[name] if state == "file" else None)
            for name in entry_names(files, state)]
        outcomes = []
        for label, target, text in targets:
            request = Request(target, state, None if user.runs_this_process() else user, module.check_mode,
                              content=None if text is None else text.encode("utf-8", "surrogateescape"), **options)
            outcomes.append((label, request.run()))
    except (ValueError, TrustedFileError) as exc:
        module.fail_json(msg=str(exc))
    # No "path" key: AnsibleModule would replace owner, group, mode and state with a stat() of the path.
    last = outcomes[-1][1]
    result = dict(changed=any(outcome.changed for _label, outcome in outcomes), state=last.after["state"],
                  actions=[action if label is None else "%s: %s" % (label, action)
                           for label, outcome in outcomes for action in outcome.actions])
    result.update((key, last.after[key]) for key in ("owner", "group", "mode") if key in last.after)
    if module._diff:
        result["diff"] = []
        for _label, outcome in outcomes:
            result["diff"].append(dict(before=outcome.before, after=outcome.after))
            if outcome.content is not None:
                before, after = outcome.content
                result["diff"].append(dict(before=before, after=after, before_header=outcome.path,
                                           after_header=outcome.path))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
