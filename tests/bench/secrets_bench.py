"""Benchmark: a fleet whose every application declares its client secret, hashed with the project's default
hasher (PBKDF2), converged by one oauth_applications task, against the physical floor measured in the same run.

A declared secret is verified against its salted hash on every run, so a no-change run over N applications
cannot cost less than starting the module and Django once, plus N verifications spread over the host's cores.
Everything runs on SQLite in a scratch directory, with this checkout as the collection and the interpreter
running this script as the project's (so with the dev virtualenv: `make bench`), with the test project's
default hashers (never the suite's fast MD5 one).

Per size (--counts), N applications are seeded once, each declaring its secret and nothing to change (every
run must report changed=0, or the benchmark stops). The commands run in rounds, each once per round in turns,
so that a round's samples share the machine's load; each ratio is the median of the per-round ratios:
  django.setup()   `python -c "import django; django.setup()"`: Django's own start-up
  ping             one ansible.builtin.ping task: Ansible's own cost of running any module (a playbook with
                   the task minus the same playbook without it)
  check_password   one verification of a seeded secret with the project's default hasher, one core (median of
                   --samples in one process that has set Django up; the start-up is not in it)
  floor            ping + django.setup() + N x check_password / cores: what no implementation can beat
  bulk             one oauth_applications task declaring all N secrets (marginal, as ping)
  check mode       the same task in check mode (at the sizes of --check-mode-at)
  one thread       the same task with hash_threads: 1, one verification after another as before hash_threads
                   existed (at the sizes of --one-thread-at)
The task's `python` is a wrapper that starts the project's interpreter and notes the Django side's peak RSS
and CPU time (its child's rusage): CPU time / (N x check_password) says how much work besides the hashing the
Django side does, whatever the other processes of a shared machine take.
Targets, printed and never asserted: bulk <= 1.3x the floor at every size; the Django side's peak RSS at the
largest size <= 1.5x that at the smallest.

Every application is seeded with the same secret and hash: hashing 2,000 distinct secrets would cost as long
as the runs, and the module verifies every declared secret even when it repeats another's secret and hash
(tests/unit/test_parallel_secrets.py checks the count), so sharing one hash makes no run cheaper.

Usage: python tests/bench/secrets_bench.py [--counts 200,2000] [--repeat 3] [--large-repeat 1]
           [--samples 4] [--check-mode-at 200] [--one-thread-at 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from fleet_bench import PROJECT, SETTINGS, Bench, median_ratio, module_options, per_round, verdict

# fleet_bench put tests/ on the path.
import ansible_isolation  # noqa: E402  pylint: disable=wrong-import-position

TARGET_BULK_TO_FLOOR = 1.3
TARGET_RSS_GROWTH = 1.5
LARGE = 500  # sizes above this run --large-repeat rounds
SECRET = "bench-not-a-secret"

# Seeds the applications, each with the secret hashed once by the project's default hasher (stored as given:
# DOT keeps an already hashed value), and prints that hash.
SEED = """
import json, sys
import django
django.setup()
from django.contrib.auth.hashers import make_password
from oauth2_provider.models import get_application_model
model = get_application_model()
request = json.load(sys.stdin)
secret = make_password(request["secret"])
model.objects.bulk_create([model(client_secret=secret, hash_client_secret=True, **spec)
                           for spec in request["applications"]], batch_size=500)
print(secret)
"""
# [wall seconds, CPU seconds] of each of argv[1] verifications of the secret on stdin against the hash in argv[2].
CHECK = """
import json, sys, time
import django
django.setup()
from django.contrib.auth.hashers import check_password
secret, samples = sys.stdin.read(), []
for _sample in range(int(sys.argv[1])):
    start, cpu = time.perf_counter(), time.process_time()
    if not check_password(secret, sys.argv[2]):
        sys.exit("the seeded secret does not verify")
    samples.append([time.perf_counter() - start, time.process_time() - cpu])
print(json.dumps(samples))
"""
# The task's `python`: runs the project's interpreter with the bridge's arguments (stdin, stdout and the
# environment pass through), then appends the child's peak RSS (KiB) and CPU seconds to a log.
WRAPPER = """#!{python} -I
import json, resource, subprocess, sys
done = subprocess.run([{python!r}] + sys.argv[1:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open({log!r}, "a") as log:
    log.write(json.dumps({{"maxrss_kib": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime}}) + "\\n")
sys.exit(done.returncode)
"""


def cores() -> int:
    """The CPUs this process may use: what the module's pool defaults to on this host."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def declared(count):
    return [{"client_id": "secret-%04d" % number, "name": "Secret client %d" % number, "client_type": "confidential",
             "authorization_grant_type": "client-credentials"} for number in range(count)]


class Size:
    """One size: its database, seeded once, and the runs of its rows."""

    def __init__(self, bench: Bench, count: int, args) -> None:
        self.bench, self.count, self.args = bench, count, args
        db_name = bench.scratch / ("secrets-%d.sqlite3" % count)
        self.env = dict(os.environ, OAUTHOPS_TEST_DB_NAME=str(db_name), DJANGO_SETTINGS_MODULE=SETTINGS)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=self.env, cwd=PROJECT, check=True)
        specs = declared(count)
        seeded = subprocess.run([sys.executable, "-c", SEED], input=json.dumps({"secret": SECRET, "applications": specs}),
                                text=True, env=self.env, cwd=PROJECT, check=True, capture_output=True)
        self.hashed = seeded.stdout.strip().splitlines()[-1]
        self.usage_log = bench.scratch / ("usage-%d.jsonl" % count)
        wrapper = bench.scratch / ("python-%d" % count)
        wrapper.write_text(WRAPPER.format(python=sys.executable, log=str(self.usage_log)))
        wrapper.chmod(0o755)
        self.options = dict(module_options(db_name), python=str(wrapper))
        self.fleet = [dict(spec, client_secret=SECRET) for spec in specs]

    def task_run(self, name, keywords=None, **options):
        task = {"oauthops.toolkit.oauth_applications": dict(self.options, applications="{{ fleet }}", **options)}
        task.update(keywords or {})
        return self.bench.playbook_run("%s-%d" % (name, self.count), [task], {"fleet": self.fleet})

    def check_password(self):
        """The median wall and CPU seconds of one verification."""
        done = subprocess.run([sys.executable, "-c", CHECK, str(self.args.samples), self.hashed], input=SECRET,
                              text=True, env=self.env, cwd=PROJECT, check=True, capture_output=True)
        samples = json.loads(done.stdout)
        return statistics.median(wall for wall, _cpu in samples), statistics.median(cpu for _wall, cpu in samples)

    def usage(self):
        """The wrapper's records, in run order."""
        return [json.loads(line) for line in self.usage_log.read_text().splitlines()] if self.usage_log.exists() else []


def hasher_of(hashed: str) -> str:
    """'pbkdf2_sha256, 1500000 iterations' for a PBKDF2 hash; the algorithm of another."""
    parts = hashed.split("$")
    return "%s, %s iterations" % (parts[0], parts[1]) if parts[0].startswith("pbkdf2") else parts[0]


def row(label, seconds, floor, note):
    """A row: the median time, and the median of the per-round ratios to the floor."""
    return "%-16s %8.2f s %7.2fx floor   %s" % (label, statistics.median(seconds), median_ratio(seconds, floor), note)


NOTES = {
    "bulk": "one oauth_applications task, hash_threads default (%d)" % cores(),
    "check mode": "the same task, check_mode: true",
    "one thread": "the same task, hash_threads: 1",
}


def measure(size: Size, args) -> tuple:
    """The rows of one size, and the Django side's peak RSS (KiB, median of the bulk runs)."""
    runs = size.bench.floor_runs(size.env, PROJECT)
    runs["bulk"] = size.task_run("bulk")
    if size.count in args.check_mode_at:
        runs["check mode"] = size.task_run("check", {"check_mode": True})
    if size.count in args.one_thread_at:
        runs["one thread"] = size.task_run("one-thread", hash_threads=1)
    repeat = args.large_repeat if size.count > LARGE else args.repeat
    samples = dict((name, []) for name in runs)
    usage = dict((name, []) for name in runs)
    checks, check_cpus, loads = [], [], []
    for _round in range(repeat):
        loads.append(os.getloadavg()[0])
        wall, cpu = size.check_password()
        checks.append(wall)
        check_cpus.append(cpu)
        for name, run in runs.items():
            before = len(size.usage())
            samples[name].append(run())
            usage[name] += size.usage()[before:]
    times = per_round(samples)
    floor = [start + size.count * check / cores() for start, check in zip(times["floor"], checks)]
    lines = [
        "%d applications, each declaring its secret, nothing to change (SQLite; %s; %d round(s), each command once "
        "a round in turns; 1-minute load average %s at the rounds' starts)"
        % (size.count, hasher_of(size.hashed), repeat, ", ".join("%.1f" % load for load in loads)),
        row("django.setup()", times["django.setup()"], floor, "bare start-up of the project"),
        row("ping", times["ping"], floor, "one ansible.builtin.ping task"),
        row("check_password", checks, floor, "one verification, one core (median of %d a round; %.2f s of CPU)"
            % (args.samples, statistics.median(check_cpus))),
        row("floor", floor, floor, "ping + django.setup() + %d x check_password / %d cores" % (size.count, cores())),
    ]
    hashing_cpu = size.count * statistics.median(check_cpus)
    for name in [name for name in NOTES if name in runs]:
        cpu = statistics.median(record["cpu"] for record in usage[name])
        rss = statistics.median(record["maxrss_kib"] for record in usage[name]) / 1024
        lines.append(row(name, times[name], floor, "%s; Django side: %.0f s CPU = %.2fx N x check_password's CPU, "
                         "peak RSS %.0f MiB" % (NOTES[name], cpu, cpu / hashing_cpu, rss)))
    bulk_to_floor = median_ratio(times["bulk"], floor)
    lines.append("target bulk <= %.1fx floor: %.2fx  %s"
                 % (TARGET_BULK_TO_FLOOR, bulk_to_floor, verdict(bulk_to_floor <= TARGET_BULK_TO_FLOOR)))
    return lines, statistics.median(record["maxrss_kib"] for record in usage["bulk"])


def sizes(text: str) -> list:
    return [int(size) for size in text.split(",") if size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--counts", type=sizes, default=[200, 2000], help="applications, per size (comma-separated)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds at sizes up to %d" % LARGE)
    parser.add_argument("--large-repeat", type=int, default=1, help="rounds at larger sizes")
    parser.add_argument("--samples", type=int, default=4, help="check_password timings a round")
    parser.add_argument("--check-mode-at", type=sizes, default=[200], help="sizes that also time check mode")
    parser.add_argument("--one-thread-at", type=sizes, default=[200], help="sizes that also time hash_threads: 1")
    args = parser.parse_args()
    # The ansible-playbook runs get the suite's Ansible settings, not the caller's (tests/ansible_isolation.py).
    note = ansible_isolation.ignored_note(ansible_isolation.isolate())
    if note:
        print("bench: " + note)
    # The project's own hashers: the suite's switch to MD5 must not reach the Django side.
    os.environ.pop("OAUTHOPS_TEST_FAST_HASHER", None)
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="oauthops-secrets-bench-") as scratch:
        bench = Bench(Path(scratch), args)
        for count in args.counts:
            lines, peaks[count] = measure(Size(bench, count, args), args)
            print(("\n" if len(peaks) > 1 else "") + "\n".join(lines), flush=True)
    if len(peaks) > 1:
        smallest, largest = min(peaks), max(peaks)
        growth = peaks[largest] / peaks[smallest]
        summary = ("target Django side's peak RSS at %d <= %.1fx that at %d: %.0f MiB / %.0f MiB = %.2fx  %s"
                   % (largest, TARGET_RSS_GROWTH, smallest, peaks[largest] / 1024, peaks[smallest] / 1024, growth,
                      verdict(growth <= TARGET_RSS_GROWTH)))
        print("\n" + summary)


if __name__ == "__main__":
    main()
