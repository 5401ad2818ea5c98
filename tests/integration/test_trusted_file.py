"""oauthops.toolkit.trusted_file: its EXAMPLES through ansible-playbook, and its rules called in-process
(plugins/module_utils/_trusted_file.py, what the module runs), as root against the application user.

The race against a user who swaps a directory while root writes is in test_root_safety.py.
"""

import ast
import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from attacks import fingerprint, owned_by, plant_link
from cronjobs import as_user, host_root
from provisioning import REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason=(
    "trusted_file changes owners as root and is attacked by an unprivileged user (setpriv); run as root, as CI does"
))

MODULE = REPO / "plugins" / "modules" / "trusted_file.py"


@pytest.fixture
def core(module_utils, app_user):
    """Request(path, state, ...) as the module builds it, for the application user, not in check mode."""
    trusted_file = module_utils("_trusted_file")
    user = module_utils("_path_trust").UntrustedUser(app_user.pw_name)

    def request(path, state="file", check_mode=False, **options):
        return trusted_file.Request(str(path), state, user, check_mode, **options)

    request.Error = trusted_file.TrustedFileError
    return request


def test_the_examples_run(role_playbook, app_user, scratch):
    """EXAMPLES with its placeholders replaced: /var/lib/shop-jobs and /var/log/shop-jobs.log by a scratch
    host's directories, the user and group shop by the application user and its group."""
    base = host_root(scratch, "examples")
    examples = ast.literal_eval(next(
        node.value for node in ast.parse(MODULE.read_text()).body
        if isinstance(node, ast.Assign) and node.targets[0].id == "EXAMPLES"
    ))
    tasks = examples.replace("/var/lib/shop-jobs", str(base / "lib" / "jobs"))
    tasks = tasks.replace("/var/log/shop-jobs.log", str(base / "log" / "jobs.log"))
    tasks = re.sub(r"\bshop\b", app_user.pw_name, tasks)
    tasks = tasks.replace("group: %s" % app_user.pw_name, "group: %d" % app_user.pw_gid)
    playbook = role_playbook.workdir / "examples.yml"
    indented = "".join("    " + line if line.strip() else line for line in tasks.splitlines(True))
    playbook.write_text("- name: EXAMPLES\n  hosts: localhost\n  gather_facts: false\n  tasks:\n" + indented)

    empty = fingerprint(base)
    output = role_playbook.run(str(playbook), None, "--check", "--diff", "-v")
    assert fingerprint(base) == empty, "check mode wrote"
    assert "s3cret" not in output and "create the directory" in output
    output = role_playbook.run(str(playbook), None, "--diff", "-v")
    assert "s3cret" not in output and "print('hello')" in output  # the code's diff, never the secret's
    assert re.search(r"ok=\d+\s+changed=7\s", output), output[-2000:]
    assert "tasks.py: create the file" in output and "__init__.py: remove the file" in output
    assert fingerprint(base) == empty, "the examples remove what they create"


def test_check_mode_predicts_the_run_and_a_second_run_changes_nothing(core, app_user, scratch):
    base = host_root(scratch, "converge")
    job = base / "lib" / "job"
    cache = job / "cache"
    uid, gid = app_user.pw_uid, app_user.pw_gid
    steps = [
        (job, dict(state="directory", owner=0, group=gid, mode=0o750)),
        (job / "code.py", dict(content=b"print('hi')\n", owner=0, group=gid, mode=0o640)),
        (job / "environment.json", dict(content=b'{"SECRET": "x"}\n', secret=True, owner=uid, group=gid, mode=0o600)),
        (base / "log" / "job.log", dict(owner=uid, group=gid, mode=0o640)),
        (cache, dict(state="directory", mode=0o755)),
    ]
    for path, options in steps:
        before = fingerprint(base)
        predicted = core(path, check_mode=True, **options).run().actions
        assert fingerprint(base) == before, (path, "check mode wrote")
        assert predicted and core(path, **options).run().actions == predicted, path
        assert core(path, **options).run().actions == [], (path, "a second run changed something")
    Path(base / "log" / "job.log").write_text("a line the job wrote\n")
    assert core(base / "log" / "job.log", owner=uid, group=gid, mode=0o640).run().actions == []
    assert (base / "log" / "job.log").read_text() == "a line the job wrote\n", "a file without content keeps its own"

    (cache / "sub").mkdir()
    (cache / "sub" / "x.pyc").write_text("x")
    os.symlink("/etc", cache / "etc")
    with pytest.raises(core.Error, match=r"^cannot remove %s: the directory is not empty \(it holds etc, sub\)$"
                       % re.escape(str(cache))):
        core(cache, state="absent").run()
    assert core(cache, state="absent", recurse=True, check_mode=True).run().actions == [
        "remove the 3 entries in the directory", "remove the directory"]
    assert core(cache, state="absent", recurse=True).run().changed and not cache.exists()
    assert os.path.isdir("/etc"), "a link inside was removed, never followed"
    for path in (job / "code.py", job / "environment.json", base / "log" / "job.log"):
        assert core(path, state="absent").run().actions == ["remove the file"]
    assert core(job, state="absent").run().actions == ["remove the directory"]
    assert core(job / "gone" / "file", state="absent").run().actions == []
    assert {entry.name: os.listdir(entry) for entry in base.iterdir()} == {"cron.d": [], "lib": [], "log": []}


def test_a_path_the_user_could_redirect_is_refused_with_its_reason(core, app_user, scratch, victims):
    base = host_root(scratch, "refused")
    user = app_user.pw_name
    own = owned_by(app_user, base / "own")
    acl = base / "acl"
    acl.mkdir(mode=0o755)
    subprocess.run(["setfacl", "-m", "u:%s:rwx" % user, str(acl)], check=True)
    inherited = base / "inherited"
    inherited.mkdir(mode=0o755)
    subprocess.run(["setfacl", "-d", "-m", "u:%s:rwx" % user, str(inherited)], check=True)
    (inherited / "job").mkdir(mode=0o755)
    plant_link(app_user, own / "link", victims["dir"])
    os.symlink(own / "link", base / "root-link")  # root's own link, to a link of the user's
    os.symlink(victims["file"], base / "link-at-the-end")
    sticky = base / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    cases = {
        own / "file": "%s is owned by %s" % (own, user),
        acl / "file": "%s grants %s write access through an ACL entry" % (acl, user),
        inherited / "job" / "file": "%s grants %s write access through a default ACL entry (to what is created in "
                                    "it)" % (inherited, user),
        base / "root-link" / "keep": "%s is owned by %s" % (own, user),
        base / "link-at-the-end": "it is a symbolic link",
        sticky / "job": "%s is writable by everyone and %s does not exist yet" % (sticky, sticky / "job"),
    }
    before = fingerprint(base)
    for path, reason in cases.items():
        for check_mode in (True, False):
            with pytest.raises(core.Error) as refused:
                core(path, check_mode=check_mode, content=b"x", owner=app_user.pw_uid, mode=0o644).run()
            assert str(refused.value) == "refusing to write %s: %s" % (path, reason)
    assert fingerprint(base) == before


def test_hard_links_refuse_only_a_change_in_place_the_user_could_not_make(core, app_user, scratch):
    base = host_root(scratch, "hardlinks")
    uid, gid = app_user.pw_uid, app_user.pw_gid
    home = owned_by(app_user, base / "home")
    jobs = base / "lib"

    # root's file linked where the log goes (left by a layout the user could once write): never handed over.
    victim = base / "victim"
    victim.write_text("root's\n")
    victim.chmod(0o600)
    os.link(victim, jobs / "job.log")
    with pytest.raises(core.Error) as refused:
        core(jobs / "job.log", owner=uid, group=gid, mode=0o640).run()
    log = jobs / "job.log"
    assert str(refused.value) == (
        "refusing to write %s: it has 2 hard links, and changing its owner and mode from 0:0 0600 to %d:%d 0640 is not "
        "a change %s could make itself: made in place, it would reach the file under its other names too. Remove "
        "the other names (find / -xdev -samefile %s) or this one" % (log, uid, gid, app_user.pw_name, log)
    )
    assert fingerprint(victim)[:3] == (0o600, 0, 0)
    # With the content known, a new file takes the new owner and mode, renamed over that name.
    assert core(jobs / "job.log", content=b"root's\n", owner=uid, group=gid, mode=0o640).run().actions == [
        "replace the file by a copy with the new owner and mode (it has 2 hard links)"]
    assert fingerprint(victim) == (0o600, 0, 0, 1, b"root's\n")
    assert core(jobs / "job.log", state="absent").run().changed and victim.exists()

    # The user's own files, linked into its home and made world-writable: root sets the mode back in place
    # (the user could have done it), writes new content by rename, and removes by name.
    core(jobs / "job.log", owner=uid, group=gid, mode=0o640).run()
    core(jobs / "environment.json", content=b"old\n", secret=True, owner=uid, group=gid, mode=0o600).run()
    for name in ("job.log", "environment.json"):
        subprocess.run(as_user(app_user, ["ln", "--", str(jobs / name), str(home / name)]), check=True)
        subprocess.run(as_user(app_user, ["chmod", "0666", str(jobs / name)]), check=True)
    assert core(jobs / "job.log", owner=uid, group=gid, mode=0o640).run().actions == ["change the mode from 0666 to 0640"]
    assert core(jobs / "environment.json", content=b"new\n", secret=True, owner=uid, group=gid, mode=0o600).run().actions == [
        "write the content (a new file renamed over the old one)"]
    assert (home / "environment.json").read_text() == "old\n" and (jobs / "environment.json").read_text() == "new\n"
    assert stat.S_IMODE(os.stat(home / "environment.json").st_mode) == 0o666
    for name in ("job.log", "environment.json"):
        assert core(jobs / name, state="absent").run().actions == ["remove the file"]
        assert (home / name).exists()


FILES_PLAY = """
- name: trusted_file's files, refused and applied
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Refused
      oauthops.toolkit.trusted_file:
        path: "{{ item.path }}"
        files: "{{ item.files }}"
        state: "{{ item.state | default('file') }}"
        content: "{{ item.content | default(omit) }}"
        owner: root
        group: "%(gid)d"
        mode: "0640"
        user: %(user)s
      loop: "{{ refusals }}"
      register: refused
      ignore_errors: true
    - name: Two files in one task, then the same again
      oauthops.toolkit.trusted_file:
        path: "{{ lib }}"
        files: {a.py: "a = 1\\n", b.py: ""}
        owner: root
        group: "%(gid)d"
        mode: "0640"
        user: %(user)s
      loop: [first, second]
      register: written
    - name: Remove them by name, and a name that is not there
      oauthops.toolkit.trusted_file: {path: "{{ lib }}", files: [a.py, b.py, gone.py], state: absent, user: %(user)s}
      register: removed
    - name: What came back
      ansible.builtin.copy:
        content: "{{ {'refused': refused.results | map(attribute='msg') | list, 'written': written.results,
                      'removed': removed} | to_json }}"
        dest: "{{ results }}"
        mode: "0600"
"""


def test_files_are_checked_before_anything_is_written_and_each_entry_as_its_own_path(
        role_playbook, app_user, scratch):
    """files: every name checked first (a bad one refuses the task, nothing written), each entry walked as
    path/NAME would be (a link the user planted in a directory of theirs is refused, as for one path)."""
    base = host_root(scratch, "files")
    lib = base / "lib"
    own = owned_by(app_user, base / "own")
    plant_link(app_user, own / "b.py", base / "victim")
    refusals = [
        {"path": str(lib), "files": {"a.py": "x", "../escape.py": "x"}},
        {"path": str(lib), "files": {"a.py": "x", "sub/b.py": "x"}},
        {"path": str(lib), "files": {}},
        {"path": str(lib), "files": ["a.py"]},
        {"path": str(lib), "files": {"a.py": "x"}, "state": "directory"},
        {"path": str(lib), "files": {"a.py": "x"}, "content": "x"},
        {"path": str(own), "files": {"a.py": "x", "b.py": "x"}},
    ]
    playbook = role_playbook.workdir / "files.yml"
    playbook.write_text(FILES_PLAY % {"gid": app_user.pw_gid, "user": app_user.pw_name})
    results = role_playbook.workdir / "results.json"
    before = fingerprint(base)
    role_playbook.run(str(playbook), {"refusals": refusals, "lib": str(lib), "results": str(results)}, "--diff")
    answers = json.loads(results.read_text())
    assert answers["refused"] == [
        "files: '../escape.py' is not the name of an entry of a directory (no /, not . or ..)",
        "files: 'sub/b.py' is not the name of an entry of a directory (no /, not . or ..)",
        "files is empty: name at least one entry",
        "files needs state=file with a dictionary of names and contents, or state=absent with a list of names, not "
        "state=file with a list",
        "files needs state=file with a dictionary of names and contents, or state=absent with a list of names, not "
        "state=directory with a dict",
        "parameters are mutually exclusive: content|secret_content|files",
        "refusing to write %s: %s is owned by %s" % (own / "a.py", own, app_user.pw_name),
    ]
    first, second = answers["written"]
    assert first["actions"] == ["a.py: create the file", "b.py: create the file"] and first["changed"]
    assert second["actions"] == [] and not second["changed"], "a second run changed something"
    assert [(diff.get("after_header"), diff["after"]) for diff in first["diff"] if "after_header" in diff] == [
        (str(lib / "a.py"), "a = 1\n"), (str(lib / "b.py"), "")], "each file's content diff, under its own path"
    assert (first["owner"], first["group"], first["mode"]) == (0, app_user.pw_gid, "0640")
    assert answers["removed"]["actions"] == ["a.py: remove the file", "b.py: remove the file"]
    assert answers["removed"]["state"] == "absent"
    assert fingerprint(base) == before, "a refusal wrote, or the removal left something"
