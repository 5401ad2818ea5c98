"""Every Ansible command the suite runs sees the suite's Ansible settings, never the caller's.

A contributor's own Ansible must not change a result: their ANSIBLE_* variables, an ansible.cfg in the
working directory, ~/.ansible.cfg or /etc/ansible/ansible.cfg, and what ~/.ansible holds (collections, among
them perhaps an older oauthops.toolkit, plugins, roles). So every ANSIBLE_* variable of the caller's
environment goes, and these take their place:

    ANSIBLE_HOME                       tests/output/ansible-home (Ansible's and ansible-lint's scratch and caches)
    ANSIBLE_CONFIG                     tests/ansible.cfg, which sets nothing: Ansible then reads no other file
    ANSIBLE_COLLECTIONS_PATH           ANSIBLE_HOME/collections, which nothing fills: each command that needs
                                       collections names its own path (the Makefile's targets, the playbook runners)
    ANSIBLE_COLLECTIONS_SCAN_SYS_PATH  false: no ansible_collections from the interpreter's sys.path (PYTHONPATH,
                                       a user site-packages)

Who applies it: the Makefile for every recipe (the same four lines there: tests/unit/test_ansible_isolation.py
checks that both agree), tests/conftest.py to os.environ for every pytest session (the unit, integration and
hosts tests, the matrix cells), tests/tools/suite, tests/tools/ee-check and the benchmarks when run by hand.
ansible-test is unaffected: it keeps its own state in ~/.ansible/test and gives the commands it runs an
environment and config of its own. Ansible's local temporary files default to ANSIBLE_HOME/tmp, so whoever runs
ansible-playbook (the tests' own user, root in CI; never the users that modules or jobs become) must be able
to write tests/output/ansible-home; the playbook runners name a per-test ANSIBLE_LOCAL_TEMP anyway.

Plain Python 3.6+: the matrix cells' interpreters import it too.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOME = REPO / "tests" / "output" / "ansible-home"
CONFIG = REPO / "tests" / "ansible.cfg"


def settings(home=HOME):
    """The suite's Ansible environment variables (home: ANSIBLE_HOME)."""
    return {
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_CONFIG": str(CONFIG),
        "ANSIBLE_COLLECTIONS_PATH": str(Path(home) / "collections"),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
    }


def environment(environ, home=HOME):
    """(a copy of environ with the suite's Ansible settings in place of every ANSIBLE_* variable, the sorted
    names of the variables it dropped or changed). A command may add ANSIBLE_* variables of its own on top."""
    suite = settings(home)
    ignored = sorted(name for name, value in environ.items() if name.startswith("ANSIBLE_") and suite.get(name) != value)
    env = {name: value for name, value in environ.items() if not name.startswith("ANSIBLE_")}
    env.update(suite)
    return env, ignored


def isolate(home=HOME):
    """Apply environment() to os.environ, for this process and every subprocess it starts; return the names of
    the caller's variables it dropped or changed."""
    _env, ignored = environment(os.environ, home)
    for name in [name for name in os.environ if name.startswith("ANSIBLE_")]:
        del os.environ[name]
    os.environ.update(settings(home))
    return ignored


def ignored_note(ignored):
    """One line naming the caller's ANSIBLE_* variables the suite ignored, or None."""
    if not ignored:
        return None
    return "ignoring the caller's %s: the suite's Ansible commands use ANSIBLE_HOME=%s and ANSIBLE_CONFIG=%s " \
           "(tests/ansible_isolation.py)" % (", ".join(ignored), os.path.relpath(HOME, REPO), os.path.relpath(CONFIG, REPO))
