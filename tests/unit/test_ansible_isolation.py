"""The suite's Ansible commands see the suite's Ansible settings only, whatever the caller's are
(tests/ansible_isolation.py for pytest sessions and scripts, the Makefile for make's recipes).

A caller with an older oauthops.toolkit in ~/.ansible/collections, a ~/.ansible.cfg, an ansible.cfg in the
working directory and ANSIBLE_* variables pointing at all of it: real ansible-galaxy and ansible-config
commands, given the environment the suite makes of the caller's, find no copy of the collection and no
setting but the suite's own. The same commands given the caller's environment do find the planted copy, so
the test cannot pass for a plant Ansible never looks at.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ansible_isolation
from provisioning import REPO

BIN = Path(sys.executable).parent


def planted_caller(tmp_path):
    """The caller's environment: HOME with ~/.ansible.cfg and an oauthops.toolkit 0.0.1 in ~/.ansible/collections,
    and ANSIBLE_* variables pointing at them; and a working directory with an ansible.cfg of its own."""
    home = tmp_path / "home"
    collections = home / ".ansible" / "collections"
    old_copy = collections / "ansible_collections" / "oauthops" / "toolkit"
    old_copy.mkdir(parents=True)
    (old_copy / "MANIFEST.json").write_text(json.dumps({"collection_info": {
        "namespace": "oauthops", "name": "toolkit", "version": "0.0.1", "dependencies": {}}}))
    hostile = "[defaults]\ncollections_path = %s\nstdout_callback = ansible.builtin.minimal\n" % collections
    (home / ".ansible.cfg").write_text(hostile)
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "ansible.cfg").write_text(hostile + "forks = 3\n")
    environ = {name: value for name, value in os.environ.items()
               if not name.startswith(("ANSIBLE_", "MAKE", "MFLAGS"))}  # a make above us passes its flags on
    environ.update(
        HOME=str(home),
        ANSIBLE_HOME=str(home / ".ansible"),
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="true",
        ANSIBLE_STDOUT_CALLBACK="minimal",
        ANSIBLE_ROLES_PATH="/nonexistent",
    )
    return environ, workdir


def start(argv, env, cwd):
    return subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def json_output(process):
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, "%s exited %s:\n%s%s" % (process.args, process.returncode, stdout, stderr)
    return json.loads(stdout)


def makefile_environment(environ):
    """The ANSIBLE_* variables a recipe of the Makefile sees, when make runs in environ."""
    probe = "ansible-isolation-probe:\n\t@env | grep '^ANSIBLE_' || true\n"
    completed = subprocess.run(["make", "--no-print-directory", "-s", "-f", "Makefile", "-f", "-",
                                "ansible-isolation-probe"], input=probe, env=environ, cwd=REPO, capture_output=True,
                               text=True, check=True)
    return dict(line.split("=", 1) for line in completed.stdout.splitlines())


@pytest.mark.one_backend
def test_the_suites_ansible_commands_ignore_the_callers_ansible(tmp_path):
    caller, workdir = planted_caller(tmp_path)
    suite, ignored = ansible_isolation.environment(caller)
    assert ignored == sorted(name for name in caller if name.startswith("ANSIBLE_"))
    galaxy_list = [str(BIN / "ansible-galaxy"), "collection", "list", "--format", "json"]
    # Side by side: each command starts a Python and imports Ansible (about a second).
    control = start(galaxy_list, caller, workdir)
    listed = start(galaxy_list, suite, workdir)
    dumped = start([str(BIN / "ansible-config"), "dump", "--only-changed", "--format", "json"], suite, workdir)

    assert makefile_environment(caller) == ansible_isolation.settings(), "the Makefile and tests/ansible_isolation.py differ"
    planted = str(tmp_path / "home" / ".ansible" / "collections" / "ansible_collections")
    assert json_output(control) == {planted: {"oauthops.toolkit": {"version": "0.0.1"}}}, "the plant is not where Ansible looks"
    # The suite's collections path only, which nothing installs into: each command that needs collections names its own.
    assert json_output(listed) == {}
    home = ansible_isolation.HOME
    changed = {item["name"]: item["value"] for item in json_output(dumped) if "name" in item}
    assert changed == {
        "ANSIBLE_HOME": str(home),
        "CONFIG_FILE": str(REPO / "tests" / "ansible.cfg"),
        "COLLECTIONS_PATHS": [str(home / "collections")],
        "COLLECTIONS_SCAN_SYS_PATH": False,
    }
