"""How much one oauth_application task costs next to a bare django.setup().

Both are measured in the same run with the same interpreter (the project's), so the
printed ratio holds on a noisy shared machine where absolute times do not:
  * bare:  `python -c "import django; django.setup()"` with the test project's settings;
  * ping:  the same for ansible.builtin.ping, Ansible's own cost of running any module;
  * task:  the marginal cost of one unchanged oauth_application task, i.e. the time of a
           playbook with 1 + N tasks minus one with 1 task, divided by N (so Ansible's own
           start-up is not charged to the task).
Usage: python tests/bench/application_task.py [N]   (SQLite, a scratch directory under /tmp)
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "tests" / "django_project"
sys.path.insert(0, str(REPO / "tests"))

import ansible_isolation  # noqa: E402  pylint: disable=wrong-import-position


def timed(command, env, repeat=5):
    samples = []
    for _attempt in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, env=env, cwd=PROJECT, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def playbook(path, tasks, module="oauth_application"):
    if module == "ping":
        task = {"ansible.builtin.ping": {}}
        path.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [task] * tasks}]))
        return path
    task = {
        "oauthops.toolkit.oauth_application": {
            "client_id": "bench",
            "client_type": "confidential",
            "authorization_grant_type": "client-credentials",
            "project_path": str(PROJECT),
            "settings": "testproject.settings",
            "python": sys.executable,
            "environment": {"OAUTHOPS_TEST_DB_NAME": str(path.parent / "bench.sqlite3")},
        },
        "no_log": True,
    }
    path.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [task] * tasks}]))
    return path


def main():
    extra = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    # The ansible-playbook runs get the suite's Ansible settings, not the caller's (tests/ansible_isolation.py).
    note = ansible_isolation.ignored_note(ansible_isolation.isolate())
    if note:
        print("bench: " + note)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        collections = scratch / "collections" / "ansible_collections" / "oauthops"
        collections.mkdir(parents=True)
        (collections / "toolkit").symlink_to(REPO)
        env = dict(os.environ, OAUTHOPS_TEST_DB_NAME=str(scratch / "bench.sqlite3"),
                   DJANGO_SETTINGS_MODULE="testproject.settings",
                   ANSIBLE_COLLECTIONS_PATH=str(scratch / "collections"))
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=PROJECT, check=True)
        bare = timed([sys.executable, "-c", "import django; django.setup()"], env)
        ansible = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                   "-e", "ansible_python_interpreter=%s" % sys.executable]
        one = timed(ansible + [str(playbook(scratch / "one.json", 1))], env, repeat=3)
        many = timed(ansible + [str(playbook(scratch / "many.json", 1 + extra))], env, repeat=3)
        per_task = (many - one) / extra
        pings = timed(ansible + [str(playbook(scratch / "pings.json", 1 + extra, "ping"))], env, repeat=3)
        ping_one = timed(ansible + [str(playbook(scratch / "ping.json", 1, "ping"))], env, repeat=3)
        per_ping = (pings - ping_one) / extra
        print("bare django.setup():        %.3f s" % bare)
        print("one oauth_application task: %.3f s (marginal, over %d unchanged tasks)" % (per_task, extra))
        print("one ansible.builtin.ping:   %.3f s (Ansible's own cost of a task)" % per_ping)
        print("ratio task / bare setup:    %.2f" % (per_task / bare))
        print("ratio (task - ping) / bare: %.2f" % ((per_task - per_ping) / bare))


if __name__ == "__main__":
    main()
