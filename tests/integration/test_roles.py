"""The roles through real ansible-playbook runs, and the installed cron job run exactly as cron runs it
(the helpers, and how they stand in for cron and for a host, are in cronjobs.py)."""

import datetime
import fcntl
import gzip
import json
import os
import pwd
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cronjobs import (
    DELETED_BY_ENGINE,
    CronJob,
    KEPT_ROWS,
    SEEDED_ROWS,
    changed_per_host,
    database_env,
    failures,
    finish,
    host_root,
    inventory,
    job_vars,
    log_entries,
    mode_and_owner,
    read_cron_file,
    read_unit,
    seed_tokens,
    sqlite_database,
    start_as_cron,
    start_as_systemd,
    token_rows,
    tree,
    unit_words,
    wait_until_locked,
)
from provisioning import REPO
from settings_failures import SETTINGS, VARIABLE, expected_errors


# -- token_cleanup -------------------------------------------------------------------------------


def test_the_cron_line_deletes_expired_tokens_once_at_a_time(
    role_playbook, job_database, app_user, app_python, scratch
):
    backend = job_database["backend"]
    db_env = database_env(job_database)
    canary = "canary-" + secrets.token_hex(8)
    base = host_root(scratch, "cron-" + backend)
    name = "cleanup-" + backend
    go = base / "go"  # a run holds its lock without starting until this file exists (the test settings)
    # A space and a percent sign in the job's directory: shell quoting and cron's % escaping.
    job = job_vars(
        base, name, app_user, app_python,
        directory=str(base / "lib" / (name + " 100%")),
        environment=dict(db_env, OAUTHOPS_TEST_CANARY=canary, OAUTHOPS_TEST_HOLD_UNTIL=str(go)),
        batch_size=1, batch_interval=0.2,
    )
    hosts = inventory(role_playbook.workdir / "inv.json", {name: job})
    seed_tokens(db_env, name)
    output = role_playbook.run("role_token_cleanup.yml", None, *hosts, "--diff", "-v")
    assert changed_per_host(output)[name] > 0
    assert canary not in output
    # The role proved the job (its cron line with --check): it counted the backlog, and deleted and logged nothing.
    assert re.search(r"engine=oauthops database=default check_mode=true revoked_refresh_tokens=5 .* total=18 ", output), output
    assert token_rows(db_env) == SEEDED_ROWS
    assert Path(job["token_cleanup_log_file"]).read_text() == ""

    cron_file = Path(job["token_cleanup_cron_file"])
    environment, jobs = read_cron_file(cron_file)
    assert len(jobs) == 1 and jobs[0].user == app_user.pw_name and jobs[0].schedule == "17 * * * *"
    # Without token_cleanup_database the job has no --database: it goes where the project's routers send DOT.
    assert "--database" not in jobs[0].command
    # The environment's values stay in the environment file: the canary, and the database's name and password.
    for value in (canary, db_env["OAUTHOPS_TEST_DB_NAME"], db_env.get("OAUTHOPS_TEST_DB_PASSWORD")):
        assert not value or value not in cron_file.read_text()
    env_file = Path(job["token_cleanup_directory"]) / "environment.json"
    assert json.loads(env_file.read_text())["OAUTHOPS_TEST_CANARY"] == canary
    assert mode_and_owner(env_file) == (0o600, app_user.pw_uid)
    log_file = Path(job["token_cleanup_log_file"])
    assert mode_and_owner(log_file) == (0o640, app_user.pw_uid)
    assert mode_and_owner(cron_file)[0] == 0o644

    first = start_as_cron(jobs[0], environment)
    wait_until_locked(Path(job["token_cleanup_directory"]) / "cleanup.lock")
    # flock -n: the second copy gives up at once, silently (nothing for cron to mail), status 1. One that
    # waited for the lock would still be waiting when finish() gives up: the first run holds it until `go` exists.
    second = finish(start_as_cron(jobs[0], environment), timeout=60)
    assert first.poll() is None, "the first run should still hold the lock"
    assert second == (1, "", "")
    go.touch()
    rc, stdout, stderr = finish(first)
    assert (rc, stdout, stderr) == (0, "", ""), "a successful run prints nothing: %s" % stderr

    entries = log_entries(log_file)
    assert len(entries) == 1, "one line per run, none for the copy that found the lock taken"
    timestamp, fields = entries[0]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", timestamp)
    assert {name: fields[name] for name in DELETED_BY_ENGINE["oauthops"]} == DELETED_BY_ENGINE["oauthops"]
    assert (fields["engine"], fields["total"], fields["batches"], fields["complete"]) == ("oauthops", 18, 18, True)
    assert fields["database"] == "default"
    assert fields["elapsed"] > 3  # 17 pauses of 0.2 s between the batches
    assert token_rows(db_env) == KEPT_ROWS
    assert mode_and_owner(log_file) == (0o640, app_user.pw_uid)
    if backend == "sqlite":  # the engine locks the database file itself: nothing is left beside it
        assert os.listdir(Path(db_env["OAUTHOPS_TEST_DB_NAME"]).parent) == ["jobs.sqlite3"]


def read_metrics(path, name):
    """{gauge without the oauthops_token_cleanup_ prefix: [(its other labels, value)]} of a job's .prom file, read
    by Prometheus' own parser; every sample carries the job's name."""
    found = {}
    for family in text_string_to_metric_families(Path(path).read_text()):
        assert family.type == "gauge" and family.documentation, family
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("name") == name, sample
            found.setdefault(sample.name.replace("oauthops_token_cleanup_", "", 1), []).append((labels, sample.value))
    return found


def single(metrics, gauge):
    ((labels, value),) = metrics[gauge]
    assert labels == {}, (gauge, labels)
    return value


def test_the_job_writes_prometheus_metrics_and_a_failure_keeps_the_last_success(
    role_playbook, app_user, app_python, scratch
):
    base = host_root(scratch, "metrics")
    db_env = sqlite_database(scratch, app_user)
    directory = base / "lib" / "job-metrics"
    job = job_vars(base, "job", app_user, app_python, environment=db_env, metrics_directory=str(directory))
    args = inventory(role_playbook.workdir / "inv.json", {"job": job})
    role_playbook.run("role_token_cleanup.yml", None, *args)
    assert mode_and_owner(directory) == (0o755, app_user.pw_uid)
    assert os.listdir(directory) == [], "the proof (check mode) wrote metrics"
    prom = directory / "job.prom"
    environment, (cron_job,) = read_cron_file(job["token_cleanup_cron_file"])
    seed_tokens(db_env, "metrics")

    def run(*extra, status=0):
        command = " ".join((cron_job.command,) + extra)
        assert finish(start_as_cron(CronJob(cron_job.schedule, cron_job.user, command, ""), environment))[0] == status
        assert os.listdir(directory) == ["job.prom"], "a temporary file was left"
        assert mode_and_owner(prom) == (0o644, app_user.pw_uid)
        timestamp, fields = log_entries(job["token_cleanup_log_file"])[-1]
        metrics = read_metrics(prom, "job")
        start = single(metrics, "last_run_start_time_seconds")
        assert int(start) == int(datetime.datetime.fromisoformat(timestamp).timestamp())
        assert abs(single(metrics, "last_run_duration_seconds") - fields["elapsed"]) <= 0.001
        assert single(metrics, "last_run_failed") == int(fields.get("failed", False))
        return fields, metrics, start

    # Stopped by max_runtime: one row a batch, 0.2 s apart, for at most 0.5 s.
    fields, metrics, start = run("--batch-size", "1", "--batch-interval", "0.2", "--max-runtime", "0.5")
    assert fields["complete"] is False and 0 < fields["total"] < 18
    assert single(metrics, "last_run_max_runtime_reached") == 1
    assert single(metrics, "last_run_skipped") == 0
    first_counts = {labels["category"]: value for labels, value in metrics["last_run_deleted_rows"]}
    assert first_counts == {name: fields[name] for name in DELETED_BY_ENGINE["oauthops"]}
    first_success = single(metrics, "last_success_time_seconds")
    assert start + single(metrics, "last_run_duration_seconds") == pytest.approx(first_success, abs=0.01)

    fields, metrics, start = run()
    assert fields["complete"] is True and single(metrics, "last_run_max_runtime_reached") == 0
    counts = {labels["category"]: value for labels, value in metrics["last_run_deleted_rows"]}
    assert counts == {name: fields[name] for name in DELETED_BY_ENGINE["oauthops"]}
    assert {name: first_counts[name] + counts[name] for name in counts} == DELETED_BY_ENGINE["oauthops"]
    success = single(metrics, "last_success_time_seconds")
    assert success > first_success and success == pytest.approx(start + fields["elapsed"], abs=0.01)
    assert metrics["info"] == [({"engine": "oauthops", "rules": "3.4.1", "dot_version": "3.4.1"}, 1)]
    assert token_rows(db_env) == KEPT_ROWS

    # The database goes: the run fails, the last success stays where it was.
    Path(db_env["OAUTHOPS_TEST_DB_NAME"]).unlink()
    fields, metrics, failed_start = run(status=1)
    assert fields["failed"] is True and failed_start > start
    assert single(metrics, "last_success_time_seconds") == success
    assert sorted(metrics) == ["last_run_duration_seconds", "last_run_failed", "last_run_start_time_seconds",
                               "last_success_time_seconds"], "a failed run has no counts, nor a rule set it did not load"

    role_playbook.run("role_token_cleanup.yml", {"token_cleanup_state": "absent"}, *args)
    assert tree(base) == ["cron.d", "lib", "log"]


def test_a_run_that_fails_at_cron_time_says_why_in_one_line_and_cleartokens_runs_dot(
    role_playbook, app_user, app_python, scratch
):
    """The role proves each job before cron gets it; what breaks later (here the database goes away) fails at
    cron time, in one line."""
    base = host_root(scratch, "failing")
    db_env = sqlite_database(scratch, app_user)
    doomed_env = sqlite_database(scratch, app_user)
    jobs = {
        "broken": job_vars(base, "broken", app_user, app_python, environment=doomed_env),
        "dot": job_vars(base, "dot", app_user, app_python, engine="cleartokens", environment=db_env,
                        special_time="daily", mailto="ops@example.com", database="default"),
    }
    output = role_playbook.run("role_token_cleanup.yml", None, *inventory(role_playbook.workdir / "inv.json", jobs),
                               "-v")
    # The cleartokens job was proven too: its check mode counts by the engine's rules for the installed DOT.
    assert re.search(r"engine=cleartokens database=default check_mode=true .* total=0 ", output), output
    doomed = Path(doomed_env["OAUTHOPS_TEST_DB_NAME"])
    doomed.unlink()

    environment, (broken,) = read_cron_file(jobs["broken"]["token_cleanup_cron_file"])
    rc, stdout, stderr = finish(start_as_cron(broken, environment))
    assert (rc, stdout) == (1, "")
    assert stderr == (
        "oauthops token cleanup failed: the SQLite database %s of database 'default' does not exist (check NAME in "
        "the settings, or run manage.py migrate to create it)\n" % doomed
    )
    ((_timestamp, fields),) = log_entries(jobs["broken"]["token_cleanup_log_file"])
    assert fields["failed"] is True and fields["error"].startswith("the SQLite database %s " % doomed)

    environment, (dot,) = read_cron_file(jobs["dot"]["token_cleanup_cron_file"])
    assert environment == {"MAILTO": "ops@example.com"}
    assert dot.schedule == "@daily" and "--engine cleartokens" in dot.command
    assert "--database default" in dot.command  # token_cleanup_database set: the job gets it
    seed_tokens(db_env, "dot")
    assert finish(start_as_cron(dot, environment)) == (0, "", "")
    ((_timestamp, fields),) = log_entries(jobs["dot"]["token_cleanup_log_file"])
    assert {name: fields[name] for name in DELETED_BY_ENGINE["cleartokens"]} == DELETED_BY_ENGINE["cleartokens"]
    assert (fields["engine"], fields["database"], fields["total"], fields["complete"]) == ("cleartokens", "default", 18, True)
    assert token_rows(db_env) == KEPT_ROWS


def test_idempotent_check_mode_changes_nothing_and_absent_leaves_nothing(
    role_playbook, app_user, app_python, scratch, idle_database
):
    base = host_root(scratch, "lifecycle")
    empty = tree(base)
    hosts = {"job": job_vars(base, "job", app_user, app_python, environment=dict(idle_database, SECRET="s3cret"))}
    args = inventory(role_playbook.workdir / "inv.json", hosts)

    def apply(*extra):
        return changed_per_host(role_playbook.run("role_token_cleanup.yml", None, *(args + list(extra))))["job"]

    assert apply("--check") > 0
    assert tree(base) == empty, "check mode created files"
    assert apply() > 0
    installed = tree(base)
    assert "cron.d/job" in installed and "lib/job/oauthops_django_side/_django_cleanup_job.py" in installed
    assert apply() == 0, "the second run changed something"

    cron_file = Path(hosts["job"]["token_cleanup_cron_file"])
    before = cron_file.read_text()
    assert apply("--check", "-e", "token_cleanup_hour=3") == 1
    assert apply("--check", "-e", "token_cleanup_state=absent") > 0
    assert cron_file.read_text() == before and tree(base) == installed, "check mode changed the job"

    assert apply("-e", "token_cleanup_state=absent") > 0
    assert tree(base) == empty, "state=absent left files behind"
    assert apply("-e", "token_cleanup_state=absent") == 0


def test_an_upgraded_host_gets_the_new_cron_line_and_keeps_no_old_entry_point(
    role_playbook, app_user, app_python, scratch, idle_database
):
    """A host installed by the role before issue 15 has _django_cli.py in its package directory and a cron
    line that runs it: the next run rewrites the line and removes the file, and state=absent removes it too."""
    base = host_root(scratch, "upgrade")
    empty = tree(base)
    hosts = {"job": job_vars(base, "job", app_user, app_python, environment=idle_database)}
    args = inventory(role_playbook.workdir / "inv.json", hosts)

    def apply(*extra):
        return changed_per_host(role_playbook.run("role_token_cleanup.yml", None, *(args + list(extra))))["job"]

    assert apply() > 0
    installed = tree(base)
    cron_file = Path(hosts["job"]["token_cleanup_cron_file"])
    current = cron_file.read_text()
    package = Path(hosts["job"]["token_cleanup_directory"]) / "oauthops_django_side"

    def as_the_previous_release_left_it():
        old_entry_point = package / "_django_cli.py"
        shutil.copy(package / "_django_cleanup_job.py", old_entry_point)
        os.chown(old_entry_point, 0, app_user.pw_gid)
        old_entry_point.chmod(0o640)
        cron_file.write_text(current.replace("oauthops_django_side._django_cleanup_job", "oauthops_django_side._django_cli"))

    as_the_previous_release_left_it()
    assert " -m oauthops_django_side._django_cli " in cron_file.read_text()
    assert apply() == 2, "the cron line and the old entry point"
    assert cron_file.read_text() == current
    assert tree(base) == installed, "the upgrade left files behind"
    assert apply() == 0

    as_the_previous_release_left_it()
    assert apply("-e", "token_cleanup_state=absent") > 0
    assert tree(base) == empty, "state=absent left the old entry point behind"


def test_only_the_chosen_host_of_a_cluster_runs_the_job(role_playbook, app_user, app_python, scratch, idle_database):
    bases = {host: host_root(scratch, host) for host in ("web1", "web2", "web3")}
    hosts = {host: dict(job_vars(base, "cleanup", app_user, app_python, environment=idle_database), ansible_become=False)
             for host, base in bases.items()}
    args = inventory(role_playbook.workdir / "inv.json", hosts, group="oauthops_token_cleanup")
    shipped = str(REPO / "playbooks" / "token_cleanup.yml")

    def installed():
        return sorted(host for host, base in bases.items() if tree(base) != ["cron.d", "lib", "log"])

    output = role_playbook.run(shipped, {"token_cleanup_host": "web2"}, *args)
    assert installed() == ["web2"]
    changed = changed_per_host(output)
    assert changed["web2"] > 0 and changed["web1"] == changed["web3"] == 0

    output = role_playbook.run(shipped, {"token_cleanup_host": "web3"}, *args)
    assert installed() == ["web3"], "moving the job leaves nothing on the host it left"
    assert changed_per_host(output)["web2"] > 0

    output = role_playbook.run(shipped, {"token_cleanup_host": "web9"}, *args, expect_rc=2)
    assert "token_cleanup_host 'web9' is not in the inventory" in output
    assert installed() == ["web3"]


def test_the_role_refuses_root(role_playbook, app_python, scratch):
    base = host_root(scratch, "root")
    hosts = {"job": job_vars(base, "job", pwd.getpwuid(0), app_python)}
    output = role_playbook.run("role_token_cleanup.yml", None, *inventory(role_playbook.workdir / "inv.json", hosts),
                               expect_rc=2)
    assert "token_cleanup_user 'root' has uid 0" in output
    assert tree(base) == ["cron.d", "lib", "log"]


def proof_failure(user, error, outcome):
    """The message of a play whose proof of the job failed: the job's own line, then what cron is left with."""
    return "the cleanup job fails as cron would run it (its cron line with --check, as %s, in cron's environment): %s; %s" % (
        user.pw_name, error, outcome)


def test_the_role_proves_the_job_before_cron_gets_it(role_playbook, app_user, app_python, scratch, idle_database):
    """Each job runs once as cron will run it (its cron line with --check, as its user, in cron's environment)
    before cron gets a line: what root's own checks cannot see fails the play with the job's own line, and cron
    gets no line that fails."""
    base = host_root(scratch, "proof")
    private = base / "private"  # root's alone: root can start what is in it, the job's user cannot
    private.mkdir()
    private.chmod(0o700)
    (private / "python").symlink_to(app_python)
    missing_env = base / "missing.env"
    hosts = {
        "settings": job_vars(base, "settings", app_user, app_python, settings="testproject.missing_settings",
                             environment=idle_database),
        "env-file": job_vars(base, "env-file", app_user, app_python, env_file=str(missing_env),
                             environment=idle_database),
        # Its settings read a variable of the environment that the job does not have.
        "variable": job_vars(base, "variable", app_user, app_python, settings=SETTINGS, environment=idle_database),
        "python": job_vars(base, "python", app_user, str(private / "python"), environment=idle_database),
        "user": dict(job_vars(base, "user", app_user, app_python, environment=idle_database),
                     token_cleanup_user="oauthops-no-such-user"),
    }
    output = role_playbook.run("role_token_cleanup.yml", None, *inventory(role_playbook.workdir / "inv.json", hosts),
                               expect_rc=2)
    nothing = "no cron line was written"
    missing_variable = expected_errors(app_python)["missing-variable"][1]
    assert failures(output) == {
        "settings": proof_failure(app_user, "oauthops token cleanup failed: settings module "
                                  "'testproject.missing_settings' not found (project_path and pythonpath are searched "
                                  "first)", nothing),
        "env-file": proof_failure(app_user, "oauthops token cleanup failed: cannot read env_file %s (No such file or "
                                  "directory)" % missing_env, nothing),
        "variable": proof_failure(app_user, "oauthops token cleanup failed: " + missing_variable, nothing),
        "python": proof_failure(app_user, "flock: failed to execute %s: Permission denied" % (private / "python"),
                                nothing),
        "user": "token_cleanup_user 'oauthops-no-such-user' does not exist on user: the job runs as the application's "
                "own user, which the role does not create",
    }
    assert os.listdir(base / "cron.d") == []

    # Given the variable, the same settings pass.
    mended = {"variable": dict(hosts["variable"], token_cleanup_environment=dict(idle_database, **{VARIABLE: "k"}))}
    role_playbook.run("role_token_cleanup.yml", None, *inventory(role_playbook.workdir / "mended.json", mended))
    assert os.listdir(base / "cron.d") == ["variable"]


def test_a_change_that_breaks_the_job_leaves_cron_only_a_line_that_passes(role_playbook, app_user, app_python, scratch):
    """The proof runs before the cron file is written, with the job's new files in place. When the new line
    fails, the line cron had is proven again with those files: it stays if it passes, else the cron file goes."""
    base = host_root(scratch, "change")
    db_env = sqlite_database(scratch, app_user)
    job = job_vars(base, "job", app_user, app_python, environment=db_env)
    args = inventory(role_playbook.workdir / "inv.json", {"job": job})
    role_playbook.run("role_token_cleanup.yml", None, *args)
    cron_file = Path(job["token_cleanup_cron_file"])
    working = cron_file.read_text()
    mistyped = {"token_cleanup_settings": "testproject.missing_settings"}
    settings_error = ("oauthops token cleanup failed: settings module 'testproject.missing_settings' not found "
                      "(project_path and pythonpath are searched first)")

    # A mistyped setting: cron keeps the line it had, which still passes; a dry run says the same and changes nothing.
    for mode in (["--check"], []):
        output = role_playbook.run("role_token_cleanup.yml", mistyped, *args, *mode, expect_rc=2)
        assert failures(output) == {"job": proof_failure(
            app_user, settings_error, "%s keeps the line cron had, which still passes this check" % cron_file)}
        assert cron_file.read_text() == working

    # A run in progress holds the job's lock (flock -n): the job cannot be proven, and the cron file stays as it was.
    lock = Path(job["token_cleanup_directory"]) / "cleanup.lock"
    with open(lock, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        output = role_playbook.run("role_token_cleanup.yml", None, *args, expect_rc=2)
    assert failures(output) == {"job": "a token cleanup run holds %s (flock -n), so the job could not be checked; %s "
                                       "is left as it was: run the role again when that run has ended" % (lock, cron_file)}
    assert cron_file.read_text() == working

    # New files that break the line cron had as well (its database is gone from the environment): the cron file goes.
    gone = dict(mistyped, token_cleanup_environment=dict(db_env, OAUTHOPS_TEST_DB_NAME=str(base / "missing.sqlite3")))
    output = role_playbook.run("role_token_cleanup.yml", gone, *args, expect_rc=2)
    assert failures(output) == {"job": proof_failure(
        app_user, settings_error,
        "%s is removed: the line cron had fails too, so no cleanup runs until the role succeeds" % cron_file)}
    assert not cron_file.exists()

    role_playbook.run("role_token_cleanup.yml", None, *args)
    assert cron_file.read_text() == working
    assert log_entries(job["token_cleanup_log_file"]) == [], "the proofs wrote no log line"


LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"


def test_logrotate_rotates_the_log_and_the_next_run_writes_the_new_file(role_playbook, app_user, app_python, scratch):
    base = host_root(scratch, "logrotate")
    (base / "logrotate.d").mkdir(mode=0o755)
    db_env = sqlite_database(scratch, app_user)
    job = job_vars(base, "rotated", app_user, app_python, environment=db_env)
    globbed = job_vars(base, "globbed", app_user, app_python, environment=db_env,
                       log_file=str(base / "log" / "globbed*.log"))
    args = inventory(role_playbook.workdir / "inv.json", {"rotated": job, "globbed": globbed})
    output = role_playbook.run("role_token_cleanup.yml", None, *args, expect_rc=2)
    assert failures(output) == {"globbed": "logrotate reads token_cleanup_log_file %s as a pattern: name the log "
                                "without quotes, backslashes and glob characters, or set token_cleanup_logrotate to "
                                "false" % json.dumps(globbed["token_cleanup_log_file"])}
    config = base / "logrotate.d" / "rotated"
    assert os.listdir(base / "logrotate.d") == ["rotated"] and mode_and_owner(config) == (0o644, 0)
    settings = [line.split() for line in config.read_text().splitlines() if line.startswith("    ")]
    assert ["create", "0640", app_user.pw_name, str(app_user.pw_gid)] in settings and ["compress"] in settings
    assert "copytruncate" not in [words[0] for words in settings], "the job opens its log at each run"
    state = base / "logrotate.status"  # the test's own: the machine's logrotate state is not touched
    checked = subprocess.run([LOGROTATE, "-d", "-s", str(state), str(config)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0 and "error" not in (checked.stdout + checked.stderr).lower(), checked.stderr
    assert "rotating pattern: \"%s\"" % job["token_cleanup_log_file"] in checked.stderr, checked.stderr

    environment, (cron_job,) = read_cron_file(job["token_cleanup_cron_file"])
    log = Path(job["token_cleanup_log_file"])

    def run_and_rotate():
        assert finish(start_as_cron(cron_job, environment)) == (0, "", "")
        forced = subprocess.run([LOGROTATE, "-f", "-s", str(state), str(config)], capture_output=True, text=True,
                                check=False)
        assert forced.returncode == 0, forced.stderr
        # logrotate made the new log as the role does: the job's user may append to it, nobody else read it.
        assert log.read_text() == "" and mode_and_owner(log) == (0o640, app_user.pw_uid)
        assert log.stat().st_gid == app_user.pw_gid

    run_and_rotate()
    ((first, _fields),) = log_entries(str(log) + ".1")
    run_and_rotate()
    ((second, _fields),) = log_entries(str(log) + ".1")
    with gzip.open(str(log) + ".2.gz", "rt") as compressed:
        assert compressed.read().startswith(first + " "), "the older log, compressed"
    assert second >= first and sorted(os.listdir(base / "log")) == ["rotated.log", "rotated.log.1", "rotated.log.2.gz"]

    role_playbook.run("role_token_cleanup.yml", {"token_cleanup_state": "absent"},
                      *inventory(role_playbook.workdir / "rotated.json", {"rotated": job}))
    assert os.listdir(base / "logrotate.d") == []


# -- token_cleanup under a systemd timer ----------------------------------------------------------

SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
CRON_FIELDS = ("minute", "hour", "day", "month", "weekday")
CRON_RANGES = {"minute": (0, 59), "hour": (0, 23), "day": (1, 31), "month": (1, 12), "weekday": (0, 7)}
CRON_NAMES = {"month": "jan feb mar apr may jun jul aug sep oct nov dec".split(), "weekday": "sun mon tue wed thu fri sat".split()}
CRON_SPECIAL = {"hourly": "0 * * * *", "daily": "0 0 * * *", "weekly": "0 0 * * 0", "monthly": "0 0 1 * *",
                "yearly": "0 0 1 1 *", "annually": "0 0 1 1 *"}
# Schedules the role turns into calendars: each must elapse when Debian's cron would start the job.
CALENDAR_SCHEDULES = ["17 * * * *", "*/15 8-18 1,15 jan *", "0,30 10-20/5 * 1-12/3 0-7", "5 3 */2 * MON", "5 3 * * 5-7",
                      "7 */6 * * sat", "0 0 31 2 *", "@hourly", "@daily", "@weekly", "@monthly", "@yearly"]
REFUSED_SCHEDULES = {
    "@reboot": "@reboot is no time of day, so no calendar has it",
    "5 3 1 * mon": 'cron starts the job on the days that match token_cleanup_day "1" or token_cleanup_weekday "mon", '
                   "and a systemd calendar on the days that match both: set one of them to *",
    "5/15 3 * * *": "the step after a single number in 5/15 means one run to Debian's cron and a run every 15 from "
                    "there to cronie: write a range (5-59/15)",
    "50-10 3 * * *": 'token_cleanup_minute "50-10" selects no minute',
}


def schedule_vars(schedule):
    if schedule.startswith("@"):
        return dict(zip(CRON_FIELDS, "0 0 31 2 *".split()), special_time=schedule[1:])
    return dict(zip(CRON_FIELDS, schedule.split()))


def cron_values(field, text):
    """The values Debian's cron (Vixie cron's parser) sets for one field."""
    low, high = CRON_RANGES[field]
    values = set()
    for element in text.lower().split(","):
        base, _sep, step = element.partition("/")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = map(int, base.split("-"))
        elif base in CRON_NAMES.get(field, ()):
            first = last = CRON_NAMES[field].index(base) + (field == "month")
        else:
            first = last = int(base)
        values.update(range(first, last + 1, int(step or 1)))
    return (values - {7}) | {0} if field == "weekday" and 7 in values else values


def cron_times(schedule, after, count):
    """The first `count` minutes after `after` at which Debian's cron starts a job of `schedule`: a day matches
    its day and its weekday fields, or either one when neither starts with *."""
    fields = dict(zip(CRON_FIELDS, CRON_SPECIAL.get(schedule[1:], schedule).split()))
    sets = {name: cron_values(name, text) for name, text in fields.items()}
    either = not fields["day"].startswith("*") and not fields["weekday"].startswith("*")
    found, day = [], after.date()
    for _day in range(366 * 50):
        on_day, on_weekday = day.day in sets["day"], day.isoweekday() % 7 in sets["weekday"]
        if day.month in sets["month"] and ((on_day or on_weekday) if either else (on_day and on_weekday)):
            for hour, minute in sorted((hour, minute) for hour in sets["hour"] for minute in sets["minute"]):
                moment = datetime.datetime(day.year, day.month, day.day, hour, minute)
                if moment > after:
                    found.append(moment)
                    if len(found) == count:
                        return found
        day += datetime.timedelta(days=1)
    return found


def calendar_times(calendar, after, count):
    """When `systemd-analyze calendar` says the calendar elapses, after `after` (UTC)."""
    completed = subprocess.run(
        [SYSTEMD_ANALYZE, "calendar", "--iterations=%d" % count, "--base-time=%s UTC" % after, calendar],
        env=dict(os.environ, TZ="UTC"), capture_output=True, text=True, check=False)
    assert completed.returncode == 0, (calendar, completed.stderr)
    times = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", completed.stdout)
    if "Next elapse: never" in completed.stdout:
        return []
    return [datetime.datetime.strptime(moment, "%Y-%m-%d %H:%M:%S") for moment in times]


def test_each_schedule_becomes_a_calendar_that_elapses_when_cron_would_run_it(role_playbook):
    """The role's template, with the role's variables; systemd's own reading of its calendar (systemd-analyze),
    against cron's reading of the schedule, over each schedule's next 40 elapses from two starting points."""
    schedules = CALENDAR_SCHEDULES + list(REFUSED_SCHEDULES)
    role_playbook.run("systemd_calendar.yml", {"schedules": [
        {"token_cleanup_" + name: value for name, value in schedule_vars(schedule).items()} for schedule in schedules]})
    calendars = dict(zip(schedules, json.loads((role_playbook.workdir / "calendars.json").read_text())))
    assert {schedule: calendars[schedule][1:] for schedule in REFUSED_SCHEDULES} == REFUSED_SCHEDULES
    for schedule in CALENDAR_SCHEDULES:
        for after in (datetime.datetime(2026, 12, 6, 0, 0, 30), datetime.datetime(2028, 2, 27, 23, 59, 30)):
            expected = cron_times(schedule, after, 40)
            assert calendar_times(calendars[schedule], after, 40) == expected, (schedule, calendars[schedule])
    assert calendars["0 0 31 2 *"] == "*-2-31 0:0:00" and cron_times("0 0 31 2 *", datetime.datetime(2026, 1, 1), 1) == []


def test_a_systemd_timer_runs_the_same_job_hardened_and_a_switch_leaves_one_scheduler(
    role_playbook, app_user, app_python, scratch
):
    base = host_root(scratch, "systemd")
    units = base / "systemd" / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    db_env = sqlite_database(scratch, app_user)
    go = base / "go"  # the first run holds its lock until this file exists (the test settings)
    # A space and a percent sign in the job's directory: systemd's quoting and specifiers.
    directory = base / "lib" / "timer 100%"
    job = job_vars(base, "timer", app_user, app_python, directory=str(directory),
                   environment=dict(database_env(db_env), OAUTHOPS_TEST_HOLD_UNTIL=str(go)), scheduler="systemd",
                   randomized_delay=300, read_write_paths=[str(Path(db_env["OAUTHOPS_TEST_DB_NAME"]).parent)])
    hosts = {"timer": job}
    for index, schedule in enumerate(["5/15 3 * * *", "@reboot"]):
        hosts["refused%d" % index] = job_vars(base, "refused%d" % index, app_user, app_python, scheduler="systemd",
                                              **schedule_vars(schedule))
    hosts["delay-with-cron"] = job_vars(base, "delay-with-cron", app_user, app_python, randomized_delay=60)
    args = inventory(role_playbook.workdir / "inv.json", hosts)
    output = role_playbook.run("role_token_cleanup.yml", None, *args, expect_rc=2)
    assert failures(output) == {
        "refused0": "the schedule has no exact systemd calendar: " + REFUSED_SCHEDULES["5/15 3 * * *"],
        "refused1": "the schedule has no exact systemd calendar: " + REFUSED_SCHEDULES["@reboot"],
        "delay-with-cron": "token_cleanup_randomized_delay needs token_cleanup_scheduler=systemd (cron has no randomized "
                           "delay)",
    }
    assert "systemd is not running on timer (no /run/systemd/system: PID 1 is another init" in output
    service_file, timer_file = units / "timer.service", units / "timer.timer"
    assert sorted(os.listdir(units)) == ["timer.service", "timer.timer", "timers.target.wants"]
    assert os.readlink(units / "timers.target.wants" / "timer.timer") == "/etc/systemd/system/timer.timer"
    assert [mode_and_owner(path) for path in (service_file, timer_file)] == [(0o644, 0)] * 2
    assert os.listdir(base / "cron.d") == [], "a systemd job has no cron file"

    # systemd's own checks: the units load (User=, ExecStart's binary, every setting), the calendar parses.
    verify = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", str(service_file), str(timer_file)],
                            capture_output=True, text=True, check=False)
    assert (verify.returncode, verify.stdout) == (0, ""), verify.stderr
    assert "timer.service" not in verify.stderr and "timer.timer" not in verify.stderr, verify.stderr
    service, timer = read_unit(service_file), read_unit(timer_file)
    assert timer["Timer"] == {"OnCalendar": ["*-*-* *:17:00"], "Persistent": ["true"], "RandomizedDelaySec": ["300"],
                              "Unit": ["timer.service"]}
    assert calendar_times(timer["Timer"]["OnCalendar"][0], datetime.datetime(2026, 12, 6, 0, 0, 30), 3) == cron_times(
        "17 * * * *", datetime.datetime(2026, 12, 6, 0, 0, 30), 3)
    settings = service["Service"]
    assert (settings["Type"], settings["User"], settings["NoNewPrivileges"], settings["ProtectSystem"],
            settings["PrivateTmp"]) == (["oneshot"], [app_user.pw_name], ["yes"], ["strict"], ["yes"])
    assert unit_words(settings["ReadWritePaths"][0], variables=False) == [
        job["token_cleanup_log_file"], str(Path(db_env["OAUTHOPS_TEST_DB_NAME"]).parent)]
    lock = directory / "cleanup.lock"
    assert unit_words(settings["ExecStart"][0])[:6] == ["/usr/bin/flock", "-n", "-E", "75", str(lock), app_python]
    for value in [db_env["OAUTHOPS_TEST_DB_NAME"]]:
        assert value not in service_file.read_text(), "the environment's values stay in the environment file"

    # The service's command, as systemd starts it: it deletes the backlog; a second run while the first holds the
    # lock exits at once with 75, which the service counts a success (SuccessExitStatus), and says nothing.
    seed_tokens(database_env(db_env), "timer")
    first = start_as_systemd(service)
    wait_until_locked(lock)
    assert finish(start_as_systemd(service), timeout=60) == (75, "", "")
    assert settings["SuccessExitStatus"] == ["75"]
    go.touch()
    assert finish(first) == (0, "", "")
    ((_timestamp, fields),) = log_entries(job["token_cleanup_log_file"])
    assert (fields["total"], fields["complete"]) == (18, True)
    assert token_rows(database_env(db_env)) == KEPT_ROWS

    # Back to cron: the timer's link and units go, the cron file comes; then absent leaves nothing of either.
    only = inventory(role_playbook.workdir / "timer.json", {"timer": job})
    role_playbook.run("role_token_cleanup.yml", {"token_cleanup_scheduler": "cron", "token_cleanup_randomized_delay": 0},
                      *only)
    assert os.listdir(base / "cron.d") == ["timer"]
    assert sorted(os.listdir(units)) == ["timers.target.wants"] and os.listdir(units / "timers.target.wants") == []
    role_playbook.run("role_token_cleanup.yml", None, *only)
    assert os.listdir(base / "cron.d") == []
    assert sorted(os.listdir(units)) == ["timer.service", "timer.timer", "timers.target.wants"]
    role_playbook.run("role_token_cleanup.yml", {"token_cleanup_state": "absent"}, *only)
    assert os.listdir(base / "cron.d") == [] and os.listdir(units / "timers.target.wants") == []
    assert sorted(os.listdir(units)) == ["timers.target.wants"] and not directory.exists()


@pytest.mark.parametrize("shipped, extra, pattern", [
    ("oauthops.toolkit.token_cleanup", [], "oauthops_token_cleanup"),
    ("oauthops.toolkit.applications", ["-e", "oauthops_hosts=no_such_group"], "no_such_group"),
])
def test_a_shipped_playbook_that_matches_no_host_fails_and_says_what_it_expected(
    role_playbook, shipped, extra, pattern
):
    """Without the check, Ansible prints "skipping: no hosts matched" and exits 0: nothing was installed, and
    nothing says so."""
    command, env = role_playbook.command("role_token_cleanup.yml", None, ())
    inventory_file = role_playbook.workdir / "hosts.ini"
    inventory_file.write_text("web1 ansible_connection=local\n")  # a host, in no group of ours
    command = [command[0], "-i", str(inventory_file), shipped] + extra
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 2, output
    assert "no inventory host matches '%s':" % pattern in output, output
    assert "-e oauthops_hosts=GROUP" in output
    assert "web1" not in output.split("PLAY RECAP")[-1], "no play ran on the inventory's host"


# -- applications ------------------------------------------------------------------------------


CENSORED = "the output has been hidden due to the fact that 'no_log: true'"


def declare_runs(output):
    """The output of each run of the applications role's module task, in order."""
    return [text.split("\nTASK [", 1)[0] for text in output.split("TASK [oauthops.toolkit.applications : Declare ")[1:]]


def test_applications_role_converges_and_keeps_secrets_out_of_the_output(playbook):
    secret = playbook.prefix + "-Vau1ted-s3cret"
    output = playbook.run("role_applications.yml", {"vaulted_secret": secret}, "-vvv", "--diff")
    generated = (playbook.workdir / "generated_secret").read_text()
    assert len(generated) >= 32
    assert secret not in output and generated not in output
    for line in ("%s-web: created", "%s-worker: created", "%s-web: unchanged", "%s-worker: unchanged",
                 "%s-worker: deleted"):
        assert line % playbook.prefix in output, "the summary names each application by client_id"
    assert "(client_id '%s-broken'): redirect_uris: " % playbook.prefix in output
    # no_log only where DOT may generate a secret in a real run (the first two runs declare the worker without
    # one): the failing run and the exclusive run, whose only item declares its secret, show their diffs.
    runs = declare_runs(output)
    assert [CENSORED in text for text in runs] == [True, True, False, False]
    assert "--- before: %s-worker\n" % playbook.prefix in runs[3] and "\n+{}\n" in runs[3]

    # ansible-playbook --check --diff: never no_log, though DOT would generate the worker's secret in a real run.
    preview = playbook.run("role_applications_preview.yml", {"vaulted_secret": secret}, "--check", "--diff", "-v")
    assert [CENSORED in text for text in declare_runs(preview)] == [False]
    assert '-    "name": "Web",\n+    "name": "Renamed web",' in preview
    assert "--- before: %s-worker\n" % playbook.prefix in preview
    assert secret not in preview and generated not in preview


def test_the_job_reads_the_projects_env_file_and_never_shows_its_secrets(role_playbook, app_user, app_python, scratch):
    base = host_root(scratch, "envfile")
    db_env = sqlite_database(scratch, app_user)
    canary = "canary-" + secrets.token_hex(8)
    password = "Pw7Kq2Lm/Zx9Rt4V"
    project_env = base / "project.env"
    broken_env = base / "broken.env"
    changing_env = base / "changing.env"
    # The project's file names a database that does not exist; token_cleanup_environment wins over it.
    project_env.write_text(
        "OAUTHOPS_TEST_DB=sqlite\nOAUTHOPS_TEST_DB_NAME=/nonexistent.sqlite3\nOAUTHOPS_TEST_SECRET_KEY=%s\n" % canary
    )
    broken = "OAUTHOPS_TEST_SECRET_KEY=%s\nOAUTHOPS_TEST_DATABASE_URL=\"postgres://shop:%s@db/shop\"\n" % (canary, password)
    broken_env.write_text(broken)
    changing_env.write_text("OAUTHOPS_TEST_SECRET_KEY=%s\n" % canary)
    for path in (project_env, broken_env, changing_env):
        os.chown(path, 0, app_user.pw_gid)
        path.chmod(0o640)
    hosts = {
        "good": job_vars(base, "good", app_user, app_python, env_file=str(project_env),
                         environment={"OAUTHOPS_TEST_DB_NAME": db_env["OAUTHOPS_TEST_DB_NAME"]}),
        "refused": job_vars(base, "refused", app_user, app_python, env_file=str(broken_env), environment=db_env),
        "broken": job_vars(base, "broken", app_user, app_python, env_file=str(changing_env), environment=db_env),
    }
    output = role_playbook.run("role_token_cleanup.yml", None, *inventory(role_playbook.workdir / "inv.json", hosts),
                               "-vvv", "--diff", expect_rc=2)
    secret_pieces = [canary, password] + password.split("/")
    assert [piece for piece in secret_pieces if piece in output] == []
    # The job's proof failed on the broken file, with the job's own line, scrubbed as cron would have mailed it.
    assert failures(output)["refused"] == proof_failure(
        app_user, "oauthops token cleanup failed: ValueError: Port could not be cast to integer value as '********'",
        "no cron line was written",
    )
    assert not Path(hosts["refused"]["token_cleanup_cron_file"]).exists()

    seed_tokens(db_env, "envfile")
    environment, (good,) = read_cron_file(hosts["good"]["token_cleanup_cron_file"])
    assert "--env-file %s" % project_env in good.command
    assert finish(start_as_cron(good, environment)) == (0, "", "")
    ((_timestamp, fields),) = log_entries(hosts["good"]["token_cleanup_log_file"])
    assert fields["total"] == 18

    # The project's file, read at each run, breaks after the install: the run fails at cron time, scrubbed too.
    changing_env.write_text(broken)
    environment, (broken,) = read_cron_file(hosts["broken"]["token_cleanup_cron_file"])
    rc, stdout, stderr = finish(start_as_cron(broken, environment))
    assert (rc, stdout) == (1, "")
    assert stderr == "oauthops token cleanup failed: ValueError: Port could not be cast to integer value as '********'\n"
    log_text = Path(hosts["broken"]["token_cleanup_log_file"]).read_text()
    assert "failed=true" in log_text and [piece for piece in secret_pieces if piece in log_text + stderr] == []
    for cron_file in (hosts["good"]["token_cleanup_cron_file"], hosts["broken"]["token_cleanup_cron_file"]):
        assert [piece for piece in secret_pieces if piece in Path(cron_file).read_text()] == []
