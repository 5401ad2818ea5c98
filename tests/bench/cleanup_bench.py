"""Benchmark: the oauth_token_cleanup engine against DOT's `cleartokens` and against raw SQL.

For each backend and scenario it seeds one database with set-based SQL (generate_series on
PostgreSQL, a recursive CTE elsewhere), gives every contestant an identical copy (a file copy
for SQLite, CREATE DATABASE ... TEMPLATE for PostgreSQL, the same deterministic seed again for
MariaDB), runs each contestant in its own process and prints:

  cleartokens   `manage.py cleartokens` (DOT's clear_expired()), CLEAR_EXPIRED_TOKENS_BATCH_SIZE=batch
  engine        the module's engine in-process, same batch size (the time the module reports)
  raw           the physical limit: one set-based statement per category and relation, no batching
  playbook      the module through ansible-playbook: the task's time (junit callback) and the whole run

Times are wall seconds of the work itself (django.setup() excluded; it is the same for all).
Peak RSS is the contestant process's ru_maxrss. Every contestant must leave the same rows
(a per-table fingerprint is compared), or the run fails.

Scenarios (every expired access token has a TokenAudit row, CASCADE; one in ten a TokenSession, SET_NULL):
  150k      125k expired access tokens, 25k of them with a revoked refresh token, 5k lone expired ID
            tokens, 5k grants (4.5k expired): 159.5k rows to delete
  600k      the same times four: 638k rows to delete
  live10:1  165k access tokens, one in eleven expired (15k) and the rest live, half of them with a
            live refresh token: live tokens outnumber expired ones 10:1

Usage: python tests/bench/cleanup_bench.py [--backends sqlite,postgresql,mysql]
           [--scenarios 150k,600k,live10:1] [--batch-size 10000] [--repeat 1] [--no-playbook]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from xml.etree import ElementTree
from datetime import datetime, timedelta, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TESTS = BENCH.parent
REPO = TESTS.parent
DJANGO_PROJECT = TESTS / "django_project"
sys.path.insert(0, str(TESTS))

import ansible_isolation  # noqa: E402  pylint: disable=wrong-import-position

SCENARIOS = {
    # access tokens, SQL condition on n (1..access) for an expired one
    "150k": (125_000, "1 = 1"),
    "600k": (500_000, "1 = 1"),
    "live10:1": (165_000, "n %% 11 = 0"),
}
CONTESTANTS = ("cleartokens", "engine", "raw")
# tests/bench/revoke_bench.py seeds "revoke-N": N access tokens of the one application, a quarter of them
# expired (a fifth of those with a revoked refresh token), the rest live, half of them with a live refresh token.
REVOKE_SCENARIO = "revoke-"


def scenario_shape(scenario: str) -> tuple:
    """(access tokens, the SQL condition on n that makes one expired) of a scenario."""
    if scenario.startswith(REVOKE_SCENARIO):
        return int(scenario[len(REVOKE_SCENARIO):]), "n %% 4 = 0"
    return SCENARIOS[scenario]


# --- Child side: runs inside the contestant's process, with Django set up for one database.


def _django():
    sys.path[:0] = [str(DJANGO_PROJECT), os.environ["OAUTHOPS_BENCH_SIDE"]]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
    import django

    django.setup()


def _tables():
    from oauth2_provider.models import (
        get_access_token_model,
        get_grant_model,
        get_id_token_model,
        get_refresh_token_model,
    )
    from testapp.models import TokenAudit, TokenSession

    return dict(
        access=get_access_token_model(),
        refresh=get_refresh_token_model(),
        id=get_id_token_model(),
        grant=get_grant_model(),
        audit=TokenAudit,
        session=TokenSession,
    )


class Seeder:
    """Set-based INSERT ... SELECT for every table, in each backend's dialect."""

    def __init__(self, connection):
        self.connection = connection
        self.vendor = connection.vendor
        self.quote = connection.ops.quote_name

    def series(self, count: int) -> str:
        if self.vendor == "postgresql":
            return "generate_series(1, %d) AS s(n)" % count
        return (
            "(WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %d) SELECT n FROM seq) AS s"
            % count
        )

    def concat(self, prefix: str, expression: str) -> str:
        if self.vendor == "mysql":
            return "CONCAT('%s', %s)" % (prefix, expression)
        return "('%s' || %s)" % (prefix, expression)

    def padded(self, expression: str, width: int = 64) -> str:
        if self.vendor == "sqlite":
            return "printf('%%0%dd', %s)" % (width, expression)
        if self.vendor == "postgresql":
            return "lpad((%s)::text, %d, '0')" % (expression, width)
        return "LPAD(%s, %d, '0')" % (expression, width)

    def uuid(self, expression: str) -> str:
        if self.vendor == "postgresql":
            return "lpad(to_hex(%s), 32, '0')::uuid" % expression
        if self.vendor == "sqlite":
            return "printf('%%032x', %s)" % expression
        return "LPAD(HEX(%s), 32, '0')" % expression

    def insert(self, model, source: str, expressions: dict, where: str = "") -> None:
        """INSERT INTO model's table SELECT ... FROM source. `expressions` maps a column to SQL, or to
        (SQL, parameters); every other column gets the field's default."""
        columns, values, params = [], [], []
        for field in model._meta.concrete_fields:
            if field.primary_key:
                continue
            columns.append(self.quote(field.column))
            expression = expressions.get(field.column)
            if expression is None:
                values.append("%s")
                params.append(field.get_db_prep_save(field.get_default(), self.connection))
            elif isinstance(expression, tuple):
                values.append(expression[0])
                params.extend(expression[1])
            else:
                values.append(expression)
        sql = "INSERT INTO %s (%s) SELECT %s FROM %s %s" % (
            self.quote(model._meta.db_table),
            ", ".join(columns),
            ", ".join(values),
            source,
            where,
        )
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)  # a list even when empty, so every driver reads %% as %


def seed(scenario: str) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from oauth2_provider.models import get_application_model

    access_count, expired_if = scenario_shape(scenario)
    tables = _tables()
    now = datetime.now(timezone.utc)
    stamp = connection.ops.adapt_datetimefield_value
    past, future, created = (
        stamp(now - timedelta(days=2)),
        stamp(now + timedelta(days=30)),
        stamp(now - timedelta(days=3)),
    )
    user = get_user_model().objects.create(username="bench")
    application = get_application_model().objects.create(
        client_id="bench",
        user=user,
        client_type="confidential",
        authorization_grant_type="password",
        hash_client_secret=False,
    )
    seeder = Seeder(connection)
    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            try:
                cursor.execute("SET SESSION max_recursive_iterations = %d" % (access_count + 10))  # MariaDB
            except Exception:
                cursor.execute("SET SESSION cte_max_recursion_depth = %d" % (access_count + 10))  # MySQL
    owner = {
        "application_id": str(application.pk),
        "user_id": str(user.pk),
        "created": ("%s", [created]),
        "updated": ("%s", [created]),
    }
    kind = (
        "CASE WHEN {expired} THEN (CASE WHEN n %% 5 = 0 THEN 'x-revoked' ELSE 'x-plain' END) "
        "ELSE (CASE WHEN n %% 2 = 0 THEN 'live-rt' ELSE 'live' END) END"
    ).format(expired=expired_if)
    access = seeder.quote(tables["access"]._meta.db_table)
    with transaction.atomic():
        seeder.insert(
            tables["access"],
            seeder.series(access_count),
            dict(
                owner,
                token=seeder.concat("a", "n"),
                token_checksum=seeder.padded("n"),
                scope=kind,
                expires=("CASE WHEN %s THEN %%s ELSE %%s END" % expired_if, [past, future]),
            ),
        )
        seeder.insert(
            tables["refresh"],
            access,
            dict(
                owner,
                token=seeder.concat("r", "id"),
                token_checksum=seeder.padded("id"),
                access_token_id="id",
                revoked=("CASE WHEN scope = 'x-revoked' THEN %s ELSE NULL END", [past]),
            ),
            where="WHERE scope IN ('x-revoked', 'live-rt')",
        )
        seeder.insert(
            tables["audit"], access, dict(access_token_id="id", note="'audit'"), where="WHERE scope LIKE 'x-%%'"
        )
        seeder.insert(tables["session"], access, dict(access_token_id="id"), where="WHERE id %% 10 = 0")
        seeder.insert(
            tables["id"],
            seeder.series(access_count // 25),
            dict(owner, jti=seeder.uuid("n"), scope="'openid'", expires=("%s", [past])),
        )
        seeder.insert(
            tables["grant"],
            seeder.series(access_count // 25),
            dict(
                owner,
                code=seeder.concat("g", "n"),
                redirect_uri="'https://bench.example.com/cb'",
                expires=("CASE WHEN n %% 10 = 0 THEN %s ELSE %s END", [future, past]),
            ),
        )
    with connection.cursor() as cursor:
        for model in tables.values():
            table = seeder.quote(model._meta.db_table)
            if connection.vendor == "postgresql":
                cursor.execute("ANALYZE %s" % table)
            elif connection.vendor == "mysql":
                cursor.execute("ANALYZE TABLE %s" % table)
                cursor.fetchall()
    return {"rows": {name: model.objects.count() for name, model in tables.items()}}


def fingerprint() -> dict:
    """Per table: row count, sum of ids, and how many rows each foreign key column still fills."""
    from django.db import connection

    state = {}
    with connection.cursor() as cursor:
        for name, model in _tables().items():
            quote = connection.ops.quote_name
            columns = ["COUNT(*)", "SUM(%s)" % quote(model._meta.pk.column)]
            columns += ["COUNT(%s)" % quote(field.column) for field in model._meta.concrete_fields if field.is_relation]
            cursor.execute("SELECT %s FROM %s" % (", ".join(columns), quote(model._meta.db_table)))
            state[name] = [int(value or 0) for value in cursor.fetchone()]
    return state


def raw_deletes() -> None:
    """The physical limit for DOT 3.4.1 with the test project's settings (no refresh expiry, no grace):
    each category in DOT's order as one statement, each relation's on_delete as one statement.
    Subqueries only ever read other tables than the one written, which MySQL requires."""
    from django.db import connection
    from django.utils import timezone as django_timezone

    tables = {name: connection.ops.quote_name(model._meta.db_table) for name, model in _tables().items()}
    now = connection.ops.adapt_datetimefield_value(django_timezone.now())
    unrefreshed = "expires < %s AND NOT EXISTS (SELECT 1 FROM {refresh} WHERE {refresh}.access_token_id = {access}.id)"
    freed = "SELECT id FROM {access} WHERE " + unrefreshed
    revoked = "SELECT id FROM {refresh} WHERE revoked <= %s"
    orphaned = "SELECT id FROM {refresh} WHERE revoked IS NULL AND access_token_id IS NULL"
    unused = "expires < %s AND NOT EXISTS (SELECT 1 FROM {access} WHERE {access}.id_token_id = {id}.id)"
    statements = [  # (SQL, how many times it compares with now)
        ("UPDATE {access} SET source_refresh_token_id = NULL WHERE source_refresh_token_id IN (%s)" % revoked, 1),
        ("DELETE FROM {refresh} WHERE revoked <= %s", 1),
        ("UPDATE {access} SET source_refresh_token_id = NULL WHERE source_refresh_token_id IN (%s)" % orphaned, 0),
        ("DELETE FROM {refresh} WHERE revoked IS NULL AND access_token_id IS NULL", 0),
        ("DELETE FROM {audit} WHERE access_token_id IN (%s)" % freed, 1),
        ("UPDATE {session} SET access_token_id = NULL WHERE access_token_id IN (%s)" % freed, 1),
        ("DELETE FROM {access} WHERE " + unrefreshed, 1),
        ("DELETE FROM {id} WHERE " + unused, 1),
        ("DELETE FROM {grant} WHERE expires < %s", 1),
    ]
    with connection.cursor() as cursor:
        for sql, uses_now in statements:
            cursor.execute(sql.format(**tables), [now] * uses_now)


def child(role: str, argument: str) -> None:
    _django()
    output = {}
    started = time.perf_counter()
    if role == "seed":
        output = seed(argument)
    elif role == "fingerprint":
        output = fingerprint()
    elif role == "cleartokens":
        from django.core.management import call_command

        call_command("cleartokens")
    elif role == "engine":
        from oauthops_django_side._django_cleanup import run_token_cleanup
        from oauthops_django_side._django_core import Context

        context = Context("default", False)
        output = run_token_cleanup({"batch_size": int(argument)}, context)
    elif role == "raw":
        raw_deletes()
    output["seconds"] = time.perf_counter() - started
    output["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(output, default=str))


# --- Parent side: databases, copies, contestants, the table.


def state(env: dict) -> dict:
    found = run_child(env, "fingerprint")
    del found["seconds"], found["maxrss_kb"]
    return found


def run_child(env: dict, role: str, argument: str = "", script: Path = None) -> dict:
    """Run `role` of `script`'s child side (this file's by default) in a process of its own; its JSON answer."""
    completed = subprocess.run(
        [sys.executable, str(script or Path(__file__).resolve()), "--child", role, argument],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        cwd=DJANGO_PROJECT,
        check=False,  # its stderr says why; shown below
    )
    if completed.returncode != 0:
        raise SystemExit("bench: %s failed:\n%s" % (role, completed.stderr[-3000:]))
    return json.loads(completed.stdout.strip().splitlines()[-1])


def migrate(env: dict) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=DJANGO_PROJECT,
        env=dict(os.environ, **env),
        check=True,
    )


class Copies:
    """Identical databases for the contestants of one scenario on one backend."""

    def __init__(self, backend: str, workdir: Path, scenario: str):
        self.backend, self.workdir, self.scenario = backend, workdir, scenario
        self.template = None
        if backend != "sqlite":
            import dbservers

            self.server = dbservers.discover(backend)
        if backend == "mysql":
            return  # no templates in MariaDB: each copy is seeded again, with the same deterministic SQL
        self.template = self._empty("template")
        migrate(self.template)
        run_child(self.template, "seed", scenario)
        if backend == "postgresql":
            self._sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [self._name(self.template)]
            )

    @staticmethod
    def _name(env: dict) -> str:
        return env["OAUTHOPS_TEST_DB_NAME"]

    def _sql(self, sql: str, params=None) -> list:
        connection = self.server.connect()
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
        finally:
            connection.close()

    def _empty(self, label: str) -> dict:
        if self.backend == "sqlite":
            path = self.workdir / ("%s-%s.sqlite3" % (label, secrets.token_hex(4)))
            return {"OAUTHOPS_TEST_DB": "sqlite", "OAUTHOPS_TEST_DB_NAME": str(path)}
        return self.server.django_env(self.server.create_database("bench"))

    def copy(self, label: str) -> dict:
        """A fresh copy, with the server's background work from making it done (it would be billed
        to whoever runs next)."""
        if self.backend == "postgresql":
            name = "oauthops_bench_%s" % secrets.token_hex(6)
            self._sql('CREATE DATABASE "%s" TEMPLATE "%s"' % (name, self._name(self.template)))
            env = self.server.django_env(name)
        else:
            env = self._empty(label)
        if self.backend == "sqlite":
            shutil.copyfile(self._name(self.template), self._name(env))
        elif self.backend == "mysql":
            migrate(env)
            run_child(env, "seed", self.scenario)
        self.settle()
        return env

    def _status(self, name: str) -> int:
        return int(self._sql("SHOW GLOBAL STATUS LIKE %s", [name])[0][1])

    def _history_length(self) -> int:
        status = self._sql("SHOW ENGINE INNODB STATUS")[0][2]
        lines = [line for line in status.splitlines() if line.startswith("History list length")]
        return int(lines[0].split()[-1]) if lines else 0

    def settle(self, timeout: float = 180) -> None:
        """Flush the dirty pages and the purge backlog that earlier runs (and seeding) left, so that
        they are not billed to the next contestant. PostgreSQL: a checkpoint. MariaDB: it flushes
        only under pressure, so ask for every dirty page for a moment (a global setting, restored)."""
        if self.backend == "postgresql":
            self._sql("CHECKPOINT")
        if self.backend != "mysql":
            return
        before = self._sql("SELECT @@GLOBAL.innodb_max_dirty_pages_pct")[0][0]
        self._sql("SET GLOBAL innodb_max_dirty_pages_pct = 0")
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._status("Innodb_buffer_pool_pages_dirty") < 20 and self._history_length() < 100:
                    return
                time.sleep(0.5)
        finally:
            self._sql("SET GLOBAL innodb_max_dirty_pages_pct = %s", [float(before)])

    def release(self, env: dict) -> None:
        if self.backend == "sqlite":
            for path in self.workdir.glob(Path(self._name(env)).name + "*"):
                path.unlink()
        else:
            self.server.drop_database(self._name(env))

    def close(self) -> None:
        if self.template is not None:
            self.release(self.template)


PLAYBOOK = """\
- name: Benchmark the module
  hosts: localhost
  gather_facts: false
  tasks:
    - name: oauth_token_cleanup
      oauthops.toolkit.oauth_token_cleanup:
        project_path: "{{ project_path }}"
        settings: testproject.settings
        python: "{{ project_python }}"
        environment: "{{ db_env }}"
        batch_size: "{{ batch_size }}"
      register: cleanup

    - name: Keep the result
      ansible.builtin.copy:
        content: "{{ cleanup | to_json }}"
        dest: "{{ result_file }}"
        mode: "0600"
"""


def run_playbook(env: dict, workdir: Path, batch_size: int) -> dict:
    collections = workdir / "collections" / "ansible_collections" / "oauthops"
    if not collections.exists():
        collections.mkdir(parents=True)
        (collections / "toolkit").symlink_to(REPO)
    playbook = workdir / "bench.yml"
    playbook.write_text(PLAYBOOK)
    junit = workdir / "junit"
    shutil.rmtree(junit, ignore_errors=True)
    variables = dict(
        project_path=str(DJANGO_PROJECT),
        project_python=sys.executable,
        db_env=env,
        batch_size=batch_size,
        result_file=str(workdir / "result.json"),
    )
    (workdir / "vars.json").write_text(json.dumps(variables))
    ansible_env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(workdir / "collections"),
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        ANSIBLE_CALLBACKS_ENABLED="junit",
        JUNIT_OUTPUT_DIR=str(junit),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(workdir / "ansible-tmp"),
    )
    started = time.perf_counter()
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            "@%s" % (workdir / "vars.json"),
            str(playbook),
        ],
        env=ansible_env,
        capture_output=True,
        text=True,
        check=False,  # its output says why; shown below
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit("bench: ansible-playbook failed:\n%s" % completed.stdout[-3000:])
    task_seconds = None
    for report in junit.glob("*.xml"):
        for case in ElementTree.parse(report).iter("testcase"):
            if "oauth_token_cleanup" in case.get("name", ""):
                task_seconds = float(case.get("time"))
    result = json.loads((workdir / "result.json").read_text())
    return {"task": task_seconds, "wall": wall, "module_elapsed": result["elapsed"], "total": result["total"]}


def ship_side_package(workdir: Path) -> Path:
    package = workdir / "side" / "oauthops_django_side"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    for source in (REPO / "plugins" / "module_utils").glob("_django_*.py"):
        shutil.copy(source, package / source.name)
    return package.parent


def median_run(runs: list) -> dict:
    return sorted(runs, key=lambda run: run["seconds"])[(len(runs) - 1) // 2]


def bench(backend: str, scenario: str, batch_size: int, workdir: Path, playbook: bool, repeat: int) -> dict:
    copies = Copies(backend, workdir, scenario)
    row = {"backend": backend, "scenario": scenario, "runs": {}}
    try:
        fingerprints, runs = {}, {name: [] for name in CONTESTANTS}
        for repetition in range(repeat):
            # Each repetition starts with another contestant, so none always follows the slow cleartokens.
            first = repetition % len(CONTESTANTS)
            for contestant in CONTESTANTS[first:] + CONTESTANTS[:first]:
                env = copies.copy(contestant)
                env["OAUTHOPS_TEST_BATCH_SIZE"] = str(batch_size)  # the project's CLEAR_EXPIRED_TOKENS_BATCH_SIZE
                try:
                    before = state(env)
                    runs[contestant].append(run_child(env, contestant, str(batch_size)))
                    print(
                        "bench:   %s %.2f s" % (contestant, runs[contestant][-1]["seconds"]),
                        file=sys.stderr,
                        flush=True,
                    )
                    fingerprints[contestant] = state(env)
                finally:
                    copies.release(env)
        row["runs"] = {name: median_run(found) for name, found in runs.items()}
        end = fingerprints["raw"]
        row["deleted"] = sum(before[name][0] - end[name][0] for name in ("access", "refresh", "id", "grant"))
        row["live"] = sum(end[name][0] for name in ("access", "refresh", "id", "grant"))
        if len({json.dumps(found, sort_keys=True) for found in fingerprints.values()}) != 1:
            raise SystemExit("bench: end states differ on %s %s: %s" % (backend, scenario, json.dumps(fingerprints)))
        if playbook:
            env = copies.copy("playbook")
            try:
                row["playbook"] = run_playbook(env, workdir, batch_size)
            finally:
                copies.release(env)
    finally:
        copies.close()
    return row


def print_table(rows: list, batch_size: int) -> None:
    header = "%-10s %-8s %8s %8s | %8s %8s %8s | %6s %6s | %7s %7s %7s | %8s %8s %8s" % (
        "backend",
        "scenario",
        "deleted",
        "live",
        "cleartok",
        "engine",
        "raw",
        "eng/ct",
        "eng/raw",
        "RSS ct",
        "RSS eng",
        "RSS raw",
        "module",
        "task",
        "playbook",
    )
    print()
    print(
        "Token cleanup, batch size %d; seconds, peak RSS in MB; module = the engine's time as the module "
        "reports it, task = that task in ansible-playbook (junit), playbook = the whole ansible-playbook run"
        % batch_size
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        runs = row["runs"]
        seconds = {name: runs[name]["seconds"] for name in CONTESTANTS}
        rss = {name: runs[name]["maxrss_kb"] / 1024 for name in CONTESTANTS}
        play = row.get("playbook") or {}
        print(
            "%-10s %-8s %8d %8d | %8.2f %8.2f %8.2f | %6.3f %6.2f | %7.0f %7.0f %7.0f | %8s %8s %8s"
            % (
                row["backend"],
                row["scenario"],
                row["deleted"],
                row["live"],
                seconds["cleartokens"],
                seconds["engine"],
                seconds["raw"],
                seconds["engine"] / seconds["cleartokens"],
                seconds["engine"] / seconds["raw"],
                rss["cleartokens"],
                rss["engine"],
                rss["raw"],
                "%.2f" % play["module_elapsed"] if play else "-",
                "%.2f" % play["task"] if play.get("task") else "-",
                "%.2f" % play["wall"] if play else "-",
            )
        )
    by_key = {(row["backend"], row["scenario"]): row for row in rows}
    for backend in sorted({row["backend"] for row in rows}):
        small, large = by_key.get((backend, "150k")), by_key.get((backend, "600k"))
        if small and large:
            print(
                "%s: 600k/150k time ratio: engine %.2fx, cleartokens %.2fx, raw %.2fx; engine peak RSS %.0f -> %.0f MB"
                % (
                    backend,
                    *(
                        large["runs"][name]["seconds"] / small["runs"][name]["seconds"]
                        for name in ("engine", "cleartokens", "raw")
                    ),
                    small["runs"]["engine"]["maxrss_kb"] / 1024,
                    large["runs"]["engine"]["maxrss_kb"] / 1024,
                )
            )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--backends", default="sqlite,postgresql,mysql")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--batch-size", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=1, help="runs per contestant; the table shows the median")
    parser.add_argument("--no-playbook", action="store_true", help="skip the ansible-playbook runs")
    options = parser.parse_args()
    # The ansible-playbook runs get the suite's Ansible settings, not the caller's (tests/ansible_isolation.py).
    note = ansible_isolation.ignored_note(ansible_isolation.isolate())
    if note:
        print("bench: " + note)

    import django
    import oauth2_provider

    print(
        "Python %s, Django %s, django-oauth-toolkit %s, %d CPUs"
        % (sys.version.split()[0], django.get_version(), oauth2_provider.__version__, os.cpu_count())
    )
    workdir = Path(tempfile.mkdtemp(prefix="oauthops-bench-"))
    os.environ["OAUTHOPS_BENCH_SIDE"] = str(ship_side_package(workdir))
    rows, skipped = [], []
    try:
        for backend in options.backends.split(","):
            for scenario in options.scenarios.split(","):
                print("bench: %s %s ..." % (backend, scenario), file=sys.stderr, flush=True)
                try:
                    rows.append(
                        bench(backend, scenario, options.batch_size, workdir, not options.no_playbook, options.repeat)
                    )
                except Exception as exc:  # an unreachable server: say so, and go on with the others
                    if type(exc).__name__ != "Unavailable":
                        raise
                    skipped.append("%s: %s" % (backend, exc))
                    break
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(rows, options.batch_size)
    for line in skipped:
        print("NOT MEASURED: %s" % line)


if __name__ == "__main__":
    main()
