"""Benchmark: a fleet of OAuth applications converged in one task vs a loop, against the floor.

Everything runs on SQLite in a scratch directory, with this checkout as the collection and the
interpreter running this script as the project's (so with the dev virtualenv: `make bench`).
The commands are timed in rounds, each command once per round in turns (--repeat rounds; the
200-task loop, the slow one, --loop-repeat times with rounds of the floor around it). Every row is
measured in this run and each ratio is the median of per-round ratios, so the ratios hold on a
noisy machine where the absolute times do not.

Part 1, 200 declared applications, nothing to change (seeded once; every run must report
changed=0, or the benchmark stops):
  django.setup()   `python -c "import django; django.setup()"`: Django's own start-up, the
                   least a task that talks to Django can cost
  ping             one ansible.builtin.ping task: Ansible's own cost of running any module
                   (a playbook with the task minus the same playbook without it)
  floor            django.setup() + ping: one module run that starts Django once and does nothing
  bulk             one oauthops.toolkit.oauth_applications task declaring all 200 (marginal, as ping)
  loop             one oauthops.toolkit.oauth_application task looped over the 200 (marginal)
Targets, printed and never asserted: bulk within 3x the floor; loop at least 20x slower than bulk.

Part 2, a project with many migrations (--apps apps x --migrations migrations each, generated
and migrated once): one unchanged oauth_application task against the floor in that project.
The pre-flight "migrations applied?" check reads only oauth2_provider's migrations, so the
task's ratio to the floor should stay where it is in the small project.

Usage: python tests/bench/fleet_bench.py [--count 200] [--repeat 5] [--loop-repeat 1]
           [--apps 30] [--migrations 20] [--skip-fleet] [--skip-migrations]
"""

from __future__ import annotations

import argparse
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

SETTINGS = "testproject.settings"
BULK_MODULE = REPO / "plugins" / "modules" / "oauth_applications.py"
TARGET_BULK_TO_FLOOR = 3.0
TARGET_LOOP_TO_BULK = 20.0

# Seeds the applications the playbooks declare, with the values they declare, in one process.
# The secret is hashed once and stored as given (DOT keeps an already hashed value): the bench
# measures reading and comparing, not PBKDF2.
SEED = """
import json, sys
import django
django.setup()
from django.contrib.auth.hashers import make_password
from oauth2_provider.models import get_application_model
model = get_application_model()
secret = make_password("bench-not-a-secret")
model.objects.bulk_create([model(client_secret=secret, hash_client_secret=True, **spec)
                           for spec in json.load(sys.stdin)])
"""


class Bench:
    def __init__(self, scratch: Path, args) -> None:
        self.scratch = scratch
        self.args = args
        collections = scratch / "collections" / "ansible_collections" / "oauthops"
        collections.mkdir(parents=True)
        (collections / "toolkit").symlink_to(REPO)
        self.ansible_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(scratch / "collections"),
                                ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")
        self.ansible = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                        "-e", "ansible_python_interpreter=%s" % sys.executable]

    def once(self, command, env, cwd, expect=None):
        """Seconds one run of `command` takes; a failed run (or one without `expect` in its output) stops the bench."""
        start = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0 or (expect and expect not in done.stdout):
            sys.exit("fleet_bench: %s failed (expected %r):\n%s\n%s"
                     % (" ".join(map(str, command[-1:])), expect, done.stdout[-3000:], done.stderr[-3000:]))
        return seconds

    def rounds(self, runs: dict, repeat: int) -> dict:
        """name -> its samples. Every round runs each command once, in turns, so that the samples of
        one round share the machine's load; ratios are taken per round, then their median."""
        samples = dict((name, []) for name in runs)
        for _round in range(repeat):
            for name, run in runs.items():
                samples[name].append(run())
        return samples

    def playbook(self, name, tasks, variables=None):
        path = self.scratch / (name + ".json")
        play = {"hosts": "localhost", "gather_facts": False, "tasks": tasks}
        if variables:
            play["vars"] = variables
        path.write_text(json.dumps([play]))
        return path

    def playbook_run(self, name, tasks, variables=None, expect="changed=0"):
        """A function that times one run of a playbook of `tasks`."""
        command = self.ansible + [str(self.playbook(name, tasks, variables))]
        return lambda: self.once(command, self.ansible_env, self.scratch, expect)

    def bare_setup_run(self, env, cwd):
        return lambda: self.once([sys.executable, "-c", "import django; django.setup()"], env, cwd)

    def floor_runs(self, env, cwd) -> dict:
        """The runs every part measures its rows against: a playbook with no task, one with a ping task,
        and a bare django.setup()."""
        return {
            "empty": self.playbook_run("empty", [], expect=None),
            "ping": self.playbook_run("ping", [{"ansible.builtin.ping": {}}], expect="ok=1"),
            "django.setup()": self.bare_setup_run(env, cwd),
        }


def per_round(samples: dict) -> dict:
    """Each round's marginal costs: a task's is its playbook minus the empty playbook; the floor is
    django.setup() plus a ping task's."""
    marginal = {}
    for name, values in samples.items():
        if name == "django.setup()":
            marginal[name] = list(values)
        elif name != "empty":
            marginal[name] = [value - empty for value, empty in zip(values, samples["empty"])]
    marginal["floor"] = [setup + ping for setup, ping in zip(marginal["django.setup()"], marginal["ping"])]
    return marginal


def median_ratio(numerators, denominators):
    return statistics.median(top / bottom for top, bottom in zip(numerators, denominators))


def module_options(db_name, project=PROJECT, settings=SETTINGS, pythonpath=()):
    return {
        "project_path": str(project),
        "settings": settings,
        "python": sys.executable,
        "pythonpath": [str(path) for path in pythonpath],
        "environment": {"OAUTHOPS_TEST_DB_NAME": str(db_name)},
    }


def declared(count):
    return [{"client_id": "bench-%03d" % number, "name": "Bench client %d" % number, "client_type": "confidential",
             "authorization_grant_type": "client-credentials"} for number in range(count)]


def row(label, samples, floor_samples, note):
    """A row: the median time, and the median of the per-round ratios to the floor."""
    ratio = median_ratio(samples, floor_samples)
    return "%-18s %8.3f s %7.2fx floor   %s" % (label, statistics.median(samples), ratio, note)


def verdict(passed):
    return "PASS" if passed else "MISS"


def fleet(bench: Bench, args) -> list:
    db_name = bench.scratch / "fleet.sqlite3"
    env = dict(os.environ, OAUTHOPS_TEST_DB_NAME=str(db_name), DJANGO_SETTINGS_MODULE=SETTINGS)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=PROJECT, check=True)
    specs = declared(args.count)
    subprocess.run([sys.executable, "-c", SEED], input=json.dumps(specs), text=True, env=env, cwd=PROJECT,
                   check=True)
    options = module_options(db_name)
    runs = bench.floor_runs(env, PROJECT)
    if BULK_MODULE.exists():
        bulk_task = {"oauthops.toolkit.oauth_applications": dict(options, applications="{{ fleet }}")}
        runs["bulk"] = bench.playbook_run("bulk", [bulk_task], {"fleet": specs})
    times = per_round(bench.rounds(runs, args.repeat))
    floor = times["floor"]
    loop_task = {"oauthops.toolkit.oauth_application": dict(options, **{
        "client_id": "{{ item.client_id }}", "name": "{{ item.name }}", "client_type": "{{ item.client_type }}",
        "authorization_grant_type": "{{ item.authorization_grant_type }}"}),
        "loop": "{{ fleet }}", "loop_control": {"label": "{{ item.client_id }}"}}
    # The loop (minutes) runs between two more rounds of the floor, and is compared with their median.
    loop_run = bench.playbook_run("loop", [loop_task], {"fleet": specs})
    around = per_round(bench.rounds(dict(runs, loop=loop_run), args.loop_repeat))
    loop_floor = statistics.median(around["floor"])
    lines = [
        "Part 1: %d declared applications, nothing to change (SQLite; %d rounds, each command once per round in "
        "turns; times are medians, ratios the median of the per-round ratios)" % (args.count, args.repeat),
        row("django.setup()", times["django.setup()"], floor,
            'python -c "import django; django.setup()", the project\'s interpreter'),
        row("ping", times["ping"], floor, "one ansible.builtin.ping task (playbook with it minus without it)"),
        row("floor", floor, floor, "django.setup() + ping: one module run that starts Django and does nothing"),
    ]
    if "bulk" not in times:
        lines.append("%-18s %8s   %-16s   not measured: %s is not in this checkout"
                     % ("bulk", "-", "-", BULK_MODULE.relative_to(REPO)))
    else:
        lines.append(row("bulk", times["bulk"], floor, "one oauth_applications task declaring all %d" % args.count))
    loop = statistics.median(around["loop"])
    lines.append("%-18s %8.3f s %7.2fx floor   oauth_application looped over the %d (one task, %d module runs; "
                 "%d run(s), against the floor of the same rounds)"
                 % ("loop", loop, loop / loop_floor, args.count, args.count, args.loop_repeat))
    lines.append("%-18s %8.3f s %7.2fx floor   the loop's time / %d"
                 % ("loop per item", loop / args.count, loop / args.count / loop_floor, args.count))
    if "bulk" not in times:
        lines.append("target bulk <= %.0fx floor:  n/a (no bulk module)" % TARGET_BULK_TO_FLOOR)
        lines.append("target loop/bulk >= %.0fx:   n/a (no bulk module)" % TARGET_LOOP_TO_BULK)
    else:
        bulk_to_floor = median_ratio(times["bulk"], floor)
        loop_to_bulk = median_ratio(around["loop"], around["bulk"])
        lines.append("target bulk <= %.0fx floor:  %.2fx  %s"
                     % (TARGET_BULK_TO_FLOOR, bulk_to_floor, verdict(bulk_to_floor <= TARGET_BULK_TO_FLOOR)))
        lines.append("target loop/bulk >= %.0fx:   %.1fx  %s (bulk of the loop's rounds)"
                     % (TARGET_LOOP_TO_BULK, loop_to_bulk, verdict(loop_to_bulk >= TARGET_LOOP_TO_BULK)))
    return lines


MODEL = """from django.db import models


class Thing(models.Model):
{fields}
"""
MIGRATION = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = {dependencies}
    operations = [
        {operation},
    ]
"""


def many_migrations_project(root: Path, apps: int, migrations: int) -> list:
    """`apps` apps of `migrations` migrations each (a CreateModel, then one AddField each) and a
    settings module bench_settings: the test project's settings with these apps added."""
    labels = []
    for number in range(apps):
        label = "benchapp%02d" % number
        labels.append(label)
        package = root / label / "migrations"
        package.mkdir(parents=True)
        (root / label / "__init__.py").write_text("")
        (package / "__init__.py").write_text("")
        fields = ["    field%02d = models.IntegerField(null=True)" % index for index in range(1, migrations)]
        (root / label / "models.py").write_text(MODEL.format(fields="\n".join(fields) or "    pass"))
        previous = None
        for index in range(migrations):
            if index == 0:
                name = "0001_initial"
                operation = "migrations.CreateModel('Thing', [('id', models.BigAutoField(primary_key=True))])"
            else:
                name = "%04d_thing_field%02d" % (index + 1, index)
                operation = "migrations.AddField('thing', 'field%02d', models.IntegerField(null=True))" % index
            dependencies = [(label, previous)] if previous else []
            (package / (name + ".py")).write_text(MIGRATION.format(dependencies=dependencies, operation=operation))
            previous = name
    (root / "bench_settings.py").write_text(
        "from testproject.settings import *  # noqa: F401,F403\n\nINSTALLED_APPS = INSTALLED_APPS + %r  # noqa: F405\n"
        % labels
    )
    return labels


def ship_side(directory: Path) -> Path:
    """The Django side as the bridge ships it: a package oauthops_django_side of the _django_*.py files."""
    package = directory / "oauthops_django_side"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for source in sorted((REPO / "plugins" / "module_utils").glob("_django_*.py")):
        (package / source.name).write_text(source.read_text())
    return directory


def migrations_part(bench: Bench, args) -> list:
    root = bench.scratch / "manyapps"
    many_migrations_project(root, args.apps, args.migrations)
    db_name = bench.scratch / "many.sqlite3"
    env = dict(os.environ, OAUTHOPS_TEST_DB_NAME=str(db_name), DJANGO_SETTINGS_MODULE="bench_settings",
               PYTHONPATH=os.pathsep.join([str(root), str(PROJECT)]))
    start = time.perf_counter()
    subprocess.run([sys.executable, str(PROJECT / "manage.py"), "migrate", "-v0"], env=env, cwd=root, check=True)
    migrate_time = time.perf_counter() - start
    options = module_options(db_name, project=root, settings="bench_settings", pythonpath=[PROJECT])
    seed = dict(options, client_id="bench-many", client_type="confidential",
                authorization_grant_type="client-credentials")
    bench.playbook_run("many-seed", [{"oauthops.toolkit.oauth_application": seed, "no_log": True}],
                       expect="changed=1")()
    task = {"oauthops.toolkit.oauth_application": seed}
    runs = bench.floor_runs(env, root)
    runs["task"] = bench.playbook_run("many-task", [task])
    times = per_round(bench.rounds(runs, args.repeat))
    floor = times["floor"]
    # The Django side alone, started as the bridge starts it: django.setup(), the pre-flight check and
    # one read, without Ansible's share (the noisiest part of a task's time).
    side = ship_side(bench.scratch / "side")
    bootstrap = "import sys; sys.path.insert(0, %r); from oauthops_django_side._django_side import main; main()"
    request = json.dumps({"op": "application_info", "params": {"client_id": ["bench-many"]}, "database": "default"})
    # Taken in turns with a bare django.setup(), so that both see the same load on a busy machine.
    side_runs, bare_runs = [], []
    for _attempt in range(args.repeat * 2):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", bootstrap % str(side)], input=request, env=env, cwd=root,
                              capture_output=True, text=True, check=False)
        side_runs.append(time.perf_counter() - start)
        if done.returncode != 0 or not json.loads(done.stdout or "{}").get("ok"):
            sys.exit("fleet_bench: the Django side failed:\n%s\n%s" % (done.stdout[-3000:], done.stderr[-3000:]))
        bare_runs.append(bench.bare_setup_run(env, root)())
    side_alone, side_bare = statistics.median(side_runs), statistics.median(bare_runs)
    side_ratio = median_ratio(side_runs, bare_runs)
    return [
        "Part 2: one unchanged oauth_application task in a project with %d apps x %d migrations (%d migrations, "
        "migrated once in %.0f s; %d rounds in turns)"
        % (args.apps, args.migrations, args.apps * args.migrations, migrate_time, args.repeat),
        row("django.setup()", times["django.setup()"], floor, "bare start-up of that project"),
        row("ping", times["ping"], floor, "one ansible.builtin.ping task"),
        row("floor", floor, floor, "django.setup() + ping"),
        row("task", times["task"], floor, "one oauth_application task, nothing to change (pre-flight check included)"),
        "%-18s %8.3f s %7.2fx django.setup()   the Django side of oauth_application_info alone, as the bridge "
        "starts it: setup, pre-flight check, one read (median of %d, in turns with django.setup(): %.3f s)"
        % ("side alone", side_alone, side_ratio, args.repeat * 2, side_bare),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--count", type=int, default=200, help="declared applications")
    parser.add_argument("--repeat", type=int, default=5, help="runs per row (the median is printed)")
    parser.add_argument("--loop-repeat", type=int, default=1, help="runs of the loop of --count tasks")
    parser.add_argument("--apps", type=int, default=30)
    parser.add_argument("--migrations", type=int, default=20, help="per generated app")
    parser.add_argument("--skip-fleet", action="store_true")
    parser.add_argument("--skip-migrations", action="store_true")
    args = parser.parse_args()
    # The ansible-playbook runs get the suite's Ansible settings, not the caller's (tests/ansible_isolation.py).
    note = ansible_isolation.ignored_note(ansible_isolation.isolate())
    if note:
        print("bench: " + note)
    lines = []
    with tempfile.TemporaryDirectory(prefix="oauthops-fleet-bench-") as scratch:
        bench = Bench(Path(scratch), args)
        if not args.skip_fleet:
            lines += fleet(bench, args)
        if not args.skip_migrations:
            lines += [""] if lines else []
            lines += migrations_part(bench, args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
