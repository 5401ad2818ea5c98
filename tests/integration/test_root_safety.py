"""Root against the application user: the token_cleanup role and the modules, tried as an attacker
on the application account would.

The role runs as root (these tests do); the job's user is the unprivileged test user, who plants
symbolic links with its own rights (setpriv). After every root run a victim file that the user may
not touch must keep its owner, mode and content, and a victim directory its listing.
"""

import contextlib
import grp
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import racing_module
from attacks import acl_granting_write, fingerprint, owned_by, plant_link
import cronjobs
from cronjobs import (
    KEPT_ROWS,
    as_user,
    failures,
    finish,
    host_root,
    inventory,
    log_entries,
    read_cron_file,
    seed_tokens,
    sqlite_database,
    start_as_cron,
    token_rows,
)
from provisioning import DJANGO_PROJECT, migrate, system_group, system_user

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason=(
    "these tests attack the role as it runs in production, as root against an unprivileged user "
    "(setpriv, chown, /etc-like victims); run as root, as CI does"
))


def job_vars(*args, **options):
    """cronjobs.job_vars without the role's proof of the job (token_cleanup_prove: false): what these tests attack
    is what root writes, removes and imports, which the proof (a run of the job as its user, in check mode) does
    not change; it costs a Django start per installed job. The proof has its own tests in test_roles.py (and
    runs in test_cron_daemon.py and the examples), among them that it runs as the user, never as root."""
    options.setdefault("prove", False)
    return cronjobs.job_vars(*args, **options)


def test_root_never_writes_or_removes_through_a_path_the_user_controls(
    role_playbook, app_user, app_python, scratch, victims
):
    base = host_root(scratch, "attack")
    hosts = {}

    # The application's own data directory as the job's directory, with links planted in it.
    app_data = owned_by(app_user, base / "lib" / "shop")
    plant_link(app_user, app_data / "cleanup.lock", victims["file"])
    plant_link(app_user, app_data / "oauthops_django_side", victims["dir"])
    hosts["own-directory"] = job_vars(base, "own-directory", app_user, app_python, directory=str(app_data))

    # A directory the user owns above the job's directory: the directory itself becomes a link.
    app_home = owned_by(app_user, base / "home")
    plant_link(app_user, app_home / "job", victims["dir"])
    hosts["own-parent"] = job_vars(base, "own-parent", app_user, app_python, directory=str(app_home / "job"))

    # The log file's directory, with the log file a link.
    app_logs = owned_by(app_user, base / "applog")
    plant_link(app_user, app_logs / "cleanup.log", victims["file"])
    hosts["own-log-dir"] = job_vars(base, "own-log-dir", app_user, app_python, log_file=str(app_logs / "cleanup.log"))

    # A directory of root's that the user's group may write.
    shared = base / "shared"
    shared.mkdir()
    os.chown(shared, 0, app_user.pw_gid)
    shared.chmod(0o775)
    hosts["group-writable"] = job_vars(base, "group-writable", app_user, app_python, directory=str(shared / "job"))

    # A sticky directory that everyone may write (/tmp): the user could create the job's directory first.
    sticky = base / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    hosts["sticky-missing"] = job_vars(base, "sticky-missing", app_user, app_python, directory=str(sticky / "job"))

    args = inventory(role_playbook.workdir / "inv.json", hosts)
    cron_dir = base / "cron.d"
    for state in ("present", "absent"):
        output = role_playbook.run("role_token_cleanup.yml", {"token_cleanup_state": state}, *args, expect_rc=2)
        reasons = {
            "own-directory": "%s is owned by %s" % (app_data, app_user.pw_name),
            "own-parent": "%s is owned by %s" % (app_home, app_user.pw_name),
            "own-log-dir": "%s is owned by %s" % (app_logs, app_user.pw_name),
            "group-writable": "%s is writable by its group" % shared,
            "sticky-missing": "%s is writable by everyone and %s does not exist yet" % (sticky, sticky / "job"),
        }
        for host, reason in reasons.items():
            assert "token_cleanup refuses to write as root through a path that %s can change: %s" % (
                app_user.pw_name, reason) in output, (host, state, output[-3000:])
        assert sorted(os.listdir(cron_dir)) == [], "a refused host got a cron file"
    # The planted links are still there, and nothing else appeared where root was refused.
    assert sorted(os.listdir(app_data)) == ["cleanup.lock", "oauthops_django_side"]
    assert os.listdir(app_home) == ["job"] and os.listdir(sticky) == [] and os.listdir(shared) == []


def test_in_the_role_s_layout_the_user_can_plant_nothing(
    role_playbook, app_user, app_python, scratch, victims, idle_database
):
    base = host_root(scratch, "layout")
    job = job_vars(base, "job", app_user, app_python, environment=idle_database)
    args = inventory(role_playbook.workdir / "inv.json", {"job": job})
    role_playbook.run("role_token_cleanup.yml", None, *args)
    directory = Path(job["token_cleanup_directory"])
    assert fingerprint(directory)[:2] == (0o750, 0)
    lock = directory / "cleanup.lock"
    assert stat.S_IMODE(os.stat(lock).st_mode) == 0o640 and os.stat(lock).st_uid == 0

    attempts = [
        ["ln", "-s", str(victims["file"]), str(directory / "planted")],
        ["mv", str(directory / "environment.json"), str(directory / "moved")],
        ["ln", "-sfn", str(victims["file"]), str(job["token_cleanup_log_file"])],
    ]
    for argv in attempts:
        completed = subprocess.run(as_user(app_user, argv), capture_output=True, text=True, check=False)
        assert completed.returncode != 0 and "Permission denied" in completed.stderr, argv

    role_playbook.run("role_token_cleanup.yml", None, *args)
    role_playbook.run("role_token_cleanup.yml", {"token_cleanup_state": "absent"}, *args)
    assert {name: os.listdir(base / name) for name in ("cron.d", "lib", "log")} == {"cron.d": [], "lib": [], "log": []}


def test_root_never_writes_into_a_metrics_or_unit_directory_the_user_controls(
    role_playbook, app_user, app_python, scratch, victims, idle_database
):
    """The metrics directory is the one place the job's user writes (it renames its file in): root only creates it,
    in a directory of its own, gives it to the user, and removes it by descriptors. A metrics directory below one
    the user owns (here a link the user planted, to a victim directory), or an existing directory of root's (as
    node_exporter's shared textfile directory, with another exporter's file) is refused, present and absent; so is
    a systemd unit directory the user owns, with the service and the timer planted as links to victims."""
    base = host_root(scratch, "metrics-attack")
    app_home = owned_by(app_user, base / "home")
    plant_link(app_user, app_home / "metrics", victims["dir"])
    app_units = owned_by(app_user, base / "units")
    plant_link(app_user, app_units / "own-units.service", victims["file"])
    plant_link(app_user, app_units / "own-units.timer", victims["dir"] / "keep")
    shared = base / "textfile"
    shared.mkdir(mode=0o755)
    (shared / "apt.prom").write_text("apt_upgrades_pending 0\n")
    shared_before = fingerprint(shared)
    layout_dir = base / "lib" / "layout-metrics"
    hosts = {
        "own-parent": job_vars(base, "own-parent", app_user, app_python, environment=idle_database,
                               metrics_directory=str(app_home / "metrics")),
        "shared": job_vars(base, "shared", app_user, app_python, environment=idle_database,
                           metrics_directory=str(shared)),
        "layout": job_vars(base, "layout", app_user, app_python, environment=idle_database,
                           metrics_directory=str(layout_dir)),
        "own-units": job_vars(base, "own-units", app_user, app_python, environment=idle_database, scheduler="systemd",
                              systemd_unit_directory=str(app_units)),
    }
    args = inventory(role_playbook.workdir / "inv.json", hosts)
    refused = {
        "own-parent": "token_cleanup refuses to write as root through a path that %s can change: %s is owned by %s" % (
            app_user.pw_name, app_home, app_user.pw_name),
        "shared": "token_cleanup_metrics_directory %s exists and is not a directory of %s's: the job writes its "
                  "metrics into a directory of its own" % (shared, app_user.pw_name),
        "own-units": "token_cleanup refuses to write as root through a path that %s can change: %s is owned by %s" % (
            app_user.pw_name, app_units, app_user.pw_name),
    }

    def apply(state):
        output = role_playbook.run("role_token_cleanup.yml", {"token_cleanup_state": state}, *args, expect_rc=2)
        messages = failures(output)
        assert sorted(messages) == ["own-parent", "own-units", "shared"], output[-3000:]
        if state == "absent":
            refused["shared"] = "token_cleanup_metrics_directory %s holds more than this job's metrics (apt.prom)" % shared
        for host, message in refused.items():
            assert messages[host].startswith(message), (host, state, messages[host])
        assert fingerprint(shared) == shared_before
        assert sorted(os.listdir(base / "cron.d")) == (["layout"] if state == "present" else [])

    apply("present")
    assert fingerprint(layout_dir)[:3] == (0o755, app_user.pw_uid, app_user.pw_gid)
    assert os.listdir(layout_dir) == []
    # The user plants links where the job's file and its temporary file go, and cannot plant beside the directory.
    plant_link(app_user, layout_dir / "layout.prom", victims["file"])
    plant_link(app_user, layout_dir / ".layout.prom.x1y2z3.tmp", victims["dir"])
    planted = subprocess.run(as_user(app_user, ["ln", "-s", str(victims["dir"]), str(base / "lib" / "planted")]),
                             capture_output=True, text=True, check=False)
    assert planted.returncode != 0 and "Permission denied" in planted.stderr
    apply("present")
    assert sorted(os.listdir(layout_dir)) == [".layout.prom.x1y2z3.tmp", "layout.prom"]
    apply("absent")
    assert not os.path.lexists(layout_dir), "the job's metrics directory stayed"
    assert os.listdir(app_home) == ["metrics"] and os.path.islink(app_home / "metrics")
    assert sorted(os.listdir(app_units)) == ["own-units.service", "own-units.timer"]


def test_the_user_s_hard_links_to_its_job_files_stop_neither_install_nor_removal(
    role_playbook, app_user, app_python, scratch, victims, idle_database
):
    """The user links its own log and environment file into a directory of its own (and tries the lock, which
    fs.protected_hardlinks=1 forbids: it is root's) and makes them world-writable. The role still installs,
    updates and removes the job: the modes are set back in place (the user could have done it), a new
    environment is a new file renamed over the old name, and a removal unlinks the job's name only."""
    base = host_root(scratch, "links")
    job = job_vars(base, "job", app_user, app_python, environment=dict(idle_database, GENERATION="1"))
    args = inventory(role_playbook.workdir / "inv.json", {"job": job})
    role_playbook.run("role_token_cleanup.yml", None, *args)
    directory = Path(job["token_cleanup_directory"])
    files = {"log": Path(job["token_cleanup_log_file"]), "env": directory / "environment.json",
             "lock": directory / "cleanup.lock"}
    home = owned_by(app_user, base / "home")
    for name, path in files.items():
        subprocess.run(as_user(app_user, ["ln", "--", str(path), str(home / name)]), check=name != "lock")
    subprocess.run(as_user(app_user, ["chmod", "0666", str(files["log"]), str(files["env"])]), check=True)
    assert os.stat(files["log"]).st_nlink == os.stat(files["env"]).st_nlink == 2

    role_playbook.run("role_token_cleanup.yml", None, *args)
    assert [stat.S_IMODE(os.stat(files[name]).st_mode) for name in ("log", "env")] == [0o640, 0o600]
    assert os.path.samefile(files["log"], home / "log") and os.path.samefile(files["env"], home / "env")

    role_playbook.run("role_token_cleanup.yml", {"token_cleanup_environment": dict(idle_database, GENERATION="2")}, *args)
    assert json.loads(files["env"].read_text()) == dict(idle_database, GENERATION="2")
    assert json.loads((home / "env").read_text()) == dict(idle_database, GENERATION="1"), "the user's name kept the old file"
    assert os.stat(files["env"]).st_nlink == 1

    role_playbook.run("role_token_cleanup.yml", {"token_cleanup_state": "absent"}, *args)
    assert {name: os.listdir(base / name) for name in ("cron.d", "lib", "log")} == {"cron.d": [], "lib": [], "log": []}
    assert {"log", "env"} <= set(os.listdir(home)), "the user's own names stay"


@pytest.fixture(scope="session")
def gid0_user():
    with system_user("gid0", "--gid", "0", "--no-create-home", "--home-dir", "/nonexistent",
                     "--shell", "/usr/sbin/nologin") as user:
        yield user


INJECTIONS = [
    # (variable, value): each one alone must fail the role and leave the cron file as it was
    ("name", "job\n* * * * * root touch /injected\n#"),
    ("minute", "17\n"),
    ("minute", "*/0"),
    ("hour", "* root"),
    ("day", "#1"),
    ("month", "13"),
    ("weekday", "mon-fri"),
    ("mailto", "ops@example.com\n* * * * * root touch /injected"),
    ("settings", "testproject.settings\n* * * * * root touch /injected"),
    ("database", "default\n* * * * * root touch /injected"),
    ("pythonpath", ["/srv\n* * * * * root touch /injected"]),
    ("environment", {"A\nB": "x"}),
    ("user", "nobody\n* * * * * root touch /injected"),
    ("directory", "/var/lib/x\n* * * * * root touch /injected"),
]
ACCEPTED_SCHEDULES = [
    {"minute": "*/15", "hour": "8-18", "day": "1,15", "month": "jan", "weekday": "MON"},
    {"minute": "0,30", "hour": "10-20/5", "day": "*", "month": "1-12/3", "weekday": "0-7"},
]


def test_no_value_can_bend_the_cron_file(role_playbook, app_user, app_python, scratch, gid0_user, idle_database):
    base = host_root(scratch, "inject")
    good = job_vars(base, "job", app_user, app_python, environment=idle_database)
    args = inventory(role_playbook.workdir / "inv.json", {"job": good})
    role_playbook.run("role_token_cleanup.yml", None, *args)
    cron_file = Path(good["token_cleanup_cron_file"])
    installed = cron_file.read_bytes()

    hosts = {}
    for index, (variable, value) in enumerate(INJECTIONS):
        hosts["bad%d" % index] = dict(good, **{"token_cleanup_" + variable: value})
    hosts["gid0"] = dict(good, token_cleanup_user=gid0_user.pw_name)
    output = role_playbook.run(
        "role_token_cleanup.yml", None, *inventory(role_playbook.workdir / "bad.json", hosts), expect_rc=2
    )
    failed = {line.split()[0] for line in output.splitlines() if " failed=1 " in line}
    assert failed == set(hosts), (sorted(set(hosts) - failed), output[-4000:])
    assert cron_file.read_bytes() == installed
    assert "primary group 0" in output and "is not a cron minute field" in output
    assert not Path("/injected").exists()

    for index, schedule in enumerate(ACCEPTED_SCHEDULES):
        name = "sched%d" % index
        job = job_vars(base, name, app_user, app_python, environment=idle_database, **schedule)
        role_playbook.run("role_token_cleanup.yml", None, *inventory(role_playbook.workdir / "ok.json", {name: job}))
        _environment, (cron_job,) = read_cron_file(job["token_cleanup_cron_file"])
        assert cron_job.schedule == " ".join(schedule[field] for field in ("minute", "hour", "day", "month", "weekday"))


def test_backslashes_and_percent_signs_reach_the_job_as_written(role_playbook, app_user, app_python, scratch):
    base = host_root(scratch, "escape")
    db_env = sqlite_database(scratch, app_user)
    directory = base / "lib" / "a\\%b\\\\%c\\ d%"
    job = job_vars(base, "escape", app_user, app_python, directory=str(directory), environment=db_env)
    role_playbook.run("role_token_cleanup.yml", None, *inventory(role_playbook.workdir / "inv.json", {"j": job}))
    environment, (cron_job,) = read_cron_file(job["token_cleanup_cron_file"])
    assert cron_job.stdin == "", "a % of the path ended cron's command"
    seed_tokens(db_env, "escape")
    assert finish(start_as_cron(cron_job, environment)) == (0, "", "")
    ((_timestamp, fields),) = log_entries(job["token_cleanup_log_file"])
    assert fields["total"] == 18 and directory.is_dir()


def test_a_root_run_never_locks_the_job_out_and_leaves_nothing_beside_the_database(
    role_playbook, app_user, app_python, scratch, victims
):
    base = host_root(scratch, "rootrun")
    db_env = sqlite_database(scratch, app_user)
    database = Path(db_env["OAUTHOPS_TEST_DB_NAME"])
    # 0.1.0's lock file beside the database, planted as a link to a file root must not create.
    plant_link(app_user, str(database) + ".oauthops-cleanup.lock", victims["dir"] / "nologin")
    job = job_vars(base, "rootrun", app_user, app_python, environment=db_env)
    args = inventory(role_playbook.workdir / "inv.json", {"j": job})
    role_playbook.run("role_token_cleanup.yml", None, *args)
    environment, (cron_job,) = read_cron_file(job["token_cleanup_cron_file"])

    seed_tokens(db_env, "rootrun-module")
    output = role_playbook.run("module_token_cleanup.yml", {"db_env": db_env})  # the module, as root
    assert "deleted 18 expired or revoked token rows" in output
    seed_tokens(db_env, "rootrun-job")
    root_job = subprocess.run(["/bin/sh", "-c", cron_job.command], capture_output=True, text=True, check=False)
    assert (root_job.returncode, root_job.stdout, root_job.stderr) == (0, "", "")  # the job's command, as root

    seed_tokens(db_env, "rootrun-cron")
    assert finish(start_as_cron(cron_job, environment)) == (0, "", ""), "the user's run after root's failed"
    assert token_rows(db_env) == {model: 3 * rows for model, rows in KEPT_ROWS.items()}
    assert sorted(os.listdir(database.parent)) == sorted([database.name, database.name + ".oauthops-cleanup.lock"])
    assert [fields["total"] for _timestamp, fields in log_entries(job["token_cleanup_log_file"])] == [18, 18]

    missing = dict(db_env, OAUTHOPS_TEST_DB_NAME=str(database.parent / "typo.sqlite3"))
    output = role_playbook.run("module_token_cleanup.yml", {"db_env": missing}, expect_rc=2)
    assert "the SQLite database %s of database 'default' does not exist" % missing["OAUTHOPS_TEST_DB_NAME"] in output, output
    assert not Path(missing["OAUTHOPS_TEST_DB_NAME"]).exists()


def test_a_healthy_job_is_silent_whatever_the_project_prints(role_playbook, app_user, app_python, scratch):
    base = host_root(scratch, "noisy")
    db_env = sqlite_database(scratch, app_user)
    noisy = dict(db_env, OAUTHOPS_TEST_NOISY_SETTINGS="1")
    doomed_env = sqlite_database(scratch, app_user)  # gone after the install
    doomed = Path(doomed_env["OAUTHOPS_TEST_DB_NAME"])
    hosts = {
        "noisy": job_vars(base, "noisy", app_user, app_python, environment=noisy),
        "broken": job_vars(base, "broken", app_user, app_python, environment=dict(doomed_env, OAUTHOPS_TEST_NOISY_SETTINGS="1")),
    }
    role_playbook.run("role_token_cleanup.yml", None, *inventory(role_playbook.workdir / "inv.json", hosts))
    doomed.unlink()

    seed_tokens(db_env, "noisy")
    environment, (cron_job,) = read_cron_file(hosts["noisy"]["token_cleanup_cron_file"])
    assert finish(start_as_cron(cron_job, environment)) == (0, "", "")
    ((_timestamp, fields),) = log_entries(hosts["noisy"]["token_cleanup_log_file"])
    assert fields["total"] == 18 and fields["complete"] is True
    # Python's default filters hide the DeprecationWarning and show the UserWarning: counted, and quoted.
    assert fields["warnings"] >= 1 and fields["warning"] == "noisy settings: a UserWarning at import"

    environment, (cron_job,) = read_cron_file(hosts["broken"]["token_cleanup_cron_file"])
    rc, stdout, stderr = finish(start_as_cron(cron_job, environment))
    assert (rc, stdout) == (1, "") and stderr.count("\n") == 1
    assert stderr.startswith("oauthops token cleanup failed: the SQLite database %s " % doomed)
    ((_timestamp, fields),) = log_entries(hosts["broken"]["token_cleanup_log_file"])
    assert fields["failed"] is True


def test_the_shipped_django_side_wins_over_a_package_of_that_name_in_the_project(role_playbook, app_user, scratch):
    project = Path(scratch) / "shadowing-project"
    shutil.copytree(DJANGO_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    impostor = project / "oauthops_django_side"
    impostor.mkdir()
    (impostor / "__init__.py").write_text("")
    (impostor / "_django_side.py").write_text("def main():\n    raise SystemExit('the project shadowed the bridge')\n")
    db_env = sqlite_database(scratch, app_user)
    output = role_playbook.run("module_token_cleanup.yml", {"db_env": db_env, "project_path": str(project)})
    assert "deleted 0 expired or revoked token rows" in output


def test_path_trust_info_follows_links_and_knows_hard_links_and_acls(role_playbook, app_user, scratch, tmp_path):
    base = host_root(scratch, "trust")
    app_group = grp.getgrgid(app_user.pw_gid).gr_name
    (base / "root-file").write_text("x")
    os.link(base / "root-file", base / "hard-link")
    (base / "user-file").write_text("x")
    os.chown(base / "user-file", app_user.pw_uid, app_user.pw_gid)
    os.link(base / "user-file", base / "user-hard-link")  # the user's own file: any change, the user could make
    (base / "loop").symlink_to(base / "loop")
    os.symlink(owned_by(app_user, base / "app-dir"), base / "root-link-to-app-dir")  # a link of root's
    other = base / "other-owner"
    other.mkdir()
    os.chown(other, 1, 1)  # daemon: not the application user, but not root either
    acl_dirs = {}
    for name, entries in {
        "acl-user": ["-m", "u:%s:rwx" % app_user.pw_name],
        "acl-masked": ["-m", "u:%s:rwx,m::r-x" % app_user.pw_name],
        "acl-group": ["-m", "g:%s:rwx" % app_group],
        "acl-default": ["-d", "-m", "u:%s:rwx" % app_user.pw_name],
    }.items():
        acl_dirs[name] = base / name
        acl_dirs[name].mkdir(mode=0o755)
        subprocess.run(["setfacl"] + entries + [str(acl_dirs[name])], check=True)
    user, group = app_user.pw_name, app_group
    paths = {
        str(base / "lib" / "new" / "file"): (None, None),
        str(base / "link-at-the-end"): ("%s is a symbolic link", "%s is a symbolic link"),
        str(base / "hard-link"): (
            "%s has 2 hard links and belongs to root, not to " + user + ": a change in place of its content, owner or "
            "mode would reach its other names too",
            "%s has 2 hard links and belongs to root: a change in place of its content, owner or mode would reach its "
            "other names too",
        ),
        str(base / "user-hard-link"): (None, None),
        str(base / "root-link-to-app-dir" / "file"): ("%s is owned by " + app_user.pw_name,) * 2,
        str(base / "loop" / "file"): ("%s is part of a symbolic link loop",) * 2,
        str(base / "root-file" / "file"): ("%s is not a directory",) * 2,
        str(other / "file"): (None, "%s is owned by daemon"),
        str(acl_dirs["acl-user"] / "file"): ("%s grants " + user + " write access through an ACL entry",) * 2,
        str(acl_dirs["acl-masked"] / "file"): (None, None),
        str(acl_dirs["acl-group"] / "file"): (
            "%s grants group " + group + " write access through an ACL entry, which " + user + " is in",
            "%s grants group " + group + " write access through an ACL entry",
        ),
        str(acl_dirs["acl-default"] / "file"): (
            "%s grants " + user + " write access through a default ACL entry (to what is created in it)",) * 2,
    }
    os.symlink("/etc/passwd", base / "link-at-the-end")
    role_playbook.run("path_trust.yml", {"paths": list(paths), "app_user": app_user.pw_name})
    answers = json.loads((role_playbook.workdir / "answers.json").read_text())
    subjects = {
        str(base / "link-at-the-end"): base / "link-at-the-end",
        str(base / "hard-link"): base / "hard-link",
        str(base / "root-link-to-app-dir" / "file"): base / "app-dir",
        str(base / "loop" / "file"): base / "loop",
        str(base / "root-file" / "file"): base / "root-file",
        str(other / "file"): other,
    }
    subjects.update((str(directory / "file"), directory) for directory in acl_dirs.values())
    for column, who in enumerate(("user", "everyone")):
        expected = {path: reasons[column] % subjects[path] for path, reasons in paths.items() if reasons[column]}
        assert {entry["path"]: entry["reason"] for entry in answers[who]} == expected, who
        assert {entry["path"]: entry.get("hard_links") for entry in answers[who] if "hard_links" in entry} == {
            str(base / "hard-link"): 2}


# -- the modules under root: whose privileges the project's code runs with ---------------------

# Modules that Django, DOT, oauthlib and requests try to import at start-up and that are not installed in
# the test virtualenv (a finder on sys.meta_path sees the attempts): the last entry of sys.path that has
# them wins, so a directory appended there serves them. Each records who ran it, then fails as a missing
# module does, so that the run goes on as without it.
PLANTED_MODULES = ("blinker", "bcrypt", "colorama", "pywatchman")
RECORDER = (
    "import os as _os\n"
    "with open(%r, 'a') as _record:\n"
    "    _record.write('%%s %%d\\n' %% (__name__, _os.geteuid()))\n"
)
REFUSAL = (
    "refusing to run the Django side as root: more than one user can change what it would load (%s); make one user "
    "(or root) the only one who can change the project, its virtualenv, pythonpath and env_file, and run the task as "
    "that user (become_user: %s)"
)


def dropped_to(user, reason):
    """The warning of a root run that dropped to `user`."""
    return (
        "the Django side runs as {0}, not as root: {0} is the only user besides root who can change what it loads "
        "({1}); set become_user: {0} on the task, which also skips root's check of every file it loads"
    ).format(user.pw_name, reason)


@pytest.fixture
def root_project(scratch):
    """A copy of the test project that root owns and everyone can read, as a system-wide install."""
    project = Path(tempfile.mkdtemp(dir=scratch, prefix="project-"))
    project.chmod(0o755)
    shutil.copytree(DJANGO_PROJECT, project, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    yield project
    shutil.rmtree(project)


@pytest.fixture(scope="session")
def pair_group(app_user):
    """A group whose members are the application user and daemon (uid 1): two users who can write what it can."""
    with system_group("pair", [app_user.pw_name, "daemon"]) as group:
        yield group


def chown_tree(path, user):
    for directory, _dirs, files in os.walk(path):
        for name in [None] + files:
            os.lchown(os.path.join(directory, name) if name else directory, user.pw_uid, user.pw_gid)


def plant_recorders(user, directory, record):
    """The user's directory `directory`, with modules named after start-up's optional imports."""
    owned_by(user, directory)
    for name in PLANTED_MODULES:
        source = RECORDER % str(record) + "raise ImportError('%s: planted by the application user')\n" % name
        subprocess.run(as_user(user, ["tee", str(directory / (name + ".py"))]), input=source, text=True,
                       stdout=subprocess.DEVNULL, check=True)


def who_ran(record):
    """{(module, euid)} of the planted code that ran."""
    if not record.exists():
        return set()
    return {(line.split()[0], int(line.split()[1])) for line in record.read_text().splitlines()}


def run_modules(role_playbook, project, python, db_env, environ=None, **options):
    """oauth_application_info and oauth_application, as root; their results."""
    variables = dict(project_path=str(project), project_python=python, db_env=db_env, **options)
    role_playbook.run("run_as.yml", variables, environ=environ)
    return json.loads((role_playbook.workdir / "results.json").read_text())


def not_owned_by(user, path):
    return sorted(str(entry) for entry in [Path(path)] + list(Path(path).rglob("*")) if entry.lstat().st_uid != user.pw_uid)


@pytest.mark.parametrize("route", ["user-env-file", "root-env-file", "pythonpath", "sudo-home"])
def test_root_never_imports_what_the_user_planted_on_sys_path(role_playbook, app_user, app_python, scratch,
                                                              root_project, route):
    """The audit: a root-owned project and interpreter; the user's directory reaches sys.path through the
    user's env_file, through root's env_file, through pythonpath, or as the user site-packages of a HOME
    that sudo kept (an interpreter outside a virtualenv imports them, root or not)."""
    base = host_root(scratch, "planted")
    home = owned_by(app_user, base / "home")
    record = home / "ran.log"
    subprocess.run(as_user(app_user, ["touch", str(record)]), check=True)
    db_env = sqlite_database(scratch, app_user)
    options, environ = {}, None
    if route == "sudo-home":
        if (Path(app_python).parent.parent / "pyvenv.cfg").exists():
            pytest.skip("the user's interpreter is a virtualenv's, which has no user site-packages")
        user_site = home / ".local" / "lib" / ("python%d.%d" % sys.version_info[:2])
        subprocess.run(as_user(app_user, ["mkdir", "-p", str(user_site)]), check=True)
        plant_recorders(app_user, user_site / "site-packages", record)
        environ = {"HOME": str(home), "ANSIBLE_REMOTE_TMP": str(role_playbook.workdir / "remote-tmp")}
    else:
        plant_recorders(app_user, home / "lib", record)
    if route == "pythonpath":
        options["extra_pythonpath"] = [str(home / "lib")]
    elif route != "sudo-home":
        env_file = home / ".env" if route == "user-env-file" else base / "project.env"
        env_file.write_text("PYTHONPATH=%s\n" % (home / "lib"))
        if route == "user-env-file":
            os.chown(env_file, app_user.pw_uid, app_user.pw_gid)
            env_file.chmod(0o600)
        options["env_file"] = str(env_file)

    results = run_modules(role_playbook, root_project, app_python, db_env, environ, **options)

    ran = who_ran(record)
    # Run as the user, the Django side has the user's own HOME, without planted modules in it.
    assert {euid for _module, euid in ran} == (set() if route == "sudo-home" else {app_user.pw_uid}), ran
    for name in ("read", "written"):
        assert not results[name].get("failed"), results[name].get("msg")
        assert results[name]["django_user"] == app_user.pw_name
    assert results["written"]["changed"] is True
    assert not_owned_by(app_user, Path(db_env["OAUTHOPS_TEST_DB_NAME"]).parent) == []


@pytest.mark.parametrize("module", ["testproject/settings.py", "testapp/models.py"])
def test_root_never_runs_project_code_the_user_can_change(role_playbook, app_user, app_python, scratch, root_project,
                                                          module):
    """One file of an otherwise root-owned project is the user's: its settings, or a module they import."""
    record = owned_by(app_user, host_root(scratch, "record") / "record") / "ran.log"
    target = root_project / module
    os.chown(target, app_user.pw_uid, app_user.pw_gid)
    subprocess.run(as_user(app_user, ["tee", "-a", str(target)]), input="\n" + RECORDER % str(record), text=True,
                   stdout=subprocess.DEVNULL, check=True)

    results = run_modules(role_playbook, root_project, app_python, sqlite_database(scratch, app_user))

    ran = who_ran(record)
    assert {euid for _module, euid in ran} == {app_user.pw_uid}, ran
    assert [results[name].get("django_user") for name in ("read", "written")] == [app_user.pw_name] * 2, results


@pytest.mark.parametrize("layout", ["two-owners", "group-of-two", "everyone"])
def test_root_refuses_a_project_that_several_users_can_change(role_playbook, app_user, app_python, scratch,
                                                              root_project, pair_group, layout):
    record = host_root(scratch, "record") / "ran.log"
    with open(root_project / "testproject" / "settings.py", "a") as settings:
        settings.write("\n" + RECORDER % str(record))
    testapp = root_project / "testapp"
    if layout == "two-owners":
        chown_tree(root_project, app_user)
        os.chown(root_project / "testproject" / "urls.py", 1, 1)
        reasons = "%s is owned by %s; %s is owned by daemon" % (
            root_project, app_user.pw_name, root_project / "testproject" / "urls.py")
        suggested = app_user.pw_name
    elif layout == "group-of-two":
        os.chown(testapp, 0, pair_group.gr_gid)
        testapp.chmod(0o775)
        reasons = "%s is writable by its group %s, whose members are daemon, %s" % (testapp, pair_group.gr_name, app_user.pw_name)
        suggested = "the user who should own it"
    else:
        testapp.chmod(0o1757)  # sticky or not: anyone can add a module to it
        reasons = "%s is writable by everyone" % testapp
        suggested = "the user who should own it"

    results = run_modules(role_playbook, root_project, app_python, sqlite_database(scratch, app_user))

    assert not record.exists(), "the project's code ran"
    for name in ("read", "written"):
        assert results[name]["failed"] is True
        assert results[name]["msg"] == REFUSAL % (reasons, suggested)


def test_a_root_run_on_the_user_s_sqlite_project_leaves_nothing_of_root_s(role_playbook, app_user, app_python,
                                                                          root_project):
    """SQLite beside the code: whatever root left (journals, __pycache__) would lock the user's own runs out."""
    db_env = {"OAUTHOPS_TEST_DB": "sqlite", "OAUTHOPS_TEST_DB_NAME": str(root_project / "db.sqlite3")}
    migrate(db_env)
    chown_tree(root_project, app_user)

    results = run_modules(role_playbook, root_project, app_python, db_env)

    assert not_owned_by(app_user, root_project) == []
    assert [results[name].get("django_user") for name in ("read", "written")] == [app_user.pw_name] * 2, results
    assert results["written"]["changed"] is True
    warning = dropped_to(app_user, "%s is owned by %s" % (root_project, app_user.pw_name))
    assert [results[name].get("warnings") for name in ("read", "written")] == [[warning]] * 2
    seeded = subprocess.run(
        as_user(app_user, [app_python, "manage.py", "oauthops_seed_tokens", "after-root"]),
        cwd=root_project, env=dict(os.environ, **db_env), capture_output=True, text=True, check=False,
    )
    assert seeded.returncode == 0, seeded.stderr


def test_a_root_run_says_which_interpreter_the_user_cannot_start(role_playbook, app_user, scratch, root_project):
    """Root can start an interpreter behind a directory of its own (mode 0700), the user it drops to cannot."""
    chown_tree(root_project, app_user)
    private = Path(tempfile.mkdtemp(dir=scratch, prefix="private-"))  # mode 0700
    python = private / "python"
    python.symlink_to(sys.executable)

    results = run_modules(role_playbook, root_project, str(python), sqlite_database(scratch, app_user))

    warning = dropped_to(app_user, "%s is owned by %s" % (root_project, app_user.pw_name))
    for name in ("read", "written"):
        assert (results[name]["failed"], results[name]["warnings"]) == (True, [warning])
        assert results[name]["msg"] == (
            "{0} cannot start {1} (Permission denied): point virtualenv or python at an interpreter {0} can run"
        ).format(app_user.pw_name, python)


# The user's side of the race, run with the system Python (the user cannot run pyenv's): swap `logs` and
# `logs.link` (its own link to the victim directory) with one atomic renameat2(RENAME_EXCHANGE), as fast as
# it can, whenever it may write the directory; until the stop file appears, or the bounds. Prints
# "tries swaps". The test holds it stopped (SIGSTOP) except while root writes (see Swapper), so that it
# burns a core only while its swaps can meet a write.
SWAPPER = r"""
import ctypes, os, sys, time
directory, victim, stop, max_tries, seconds = sys.argv[1:]
libc = ctypes.CDLL(None, use_errno=True)
os.chdir(directory)
deadline = time.process_time() + float(seconds)
tries = swaps = 0
linked = False
while tries < int(max_tries) and time.process_time() < deadline and not os.path.exists(stop):
    tries += 1
    if not linked:
        try:
            os.symlink(victim, "logs.link")
            linked = True
        except PermissionError:
            continue
    if libc.renameat2(-100, b"logs", -100, b"logs.link", 2) == 0:
        swaps += 1
print(tries, swaps)
"""
RACE_SECONDS = 60  # the bound of each side (the swapper's: CPU seconds); root's writes end long before
RACE_ROUNDS = 10  # of each of the three writes through ansible-playbook (about 20 s)
IN_PROCESS_ROUNDS = 300  # of each of the three writes, straight into the module's code


class RootWroteThroughTheSwap(AssertionError):
    pass


class Swapper:
    """The user's swapper process, held stopped (SIGSTOP) but while root writes (tests/integration/
    racing_module.py): around the in-process writes (racing), and in each of the playbook's modules from the
    moment it has its arguments to its end (interpreter). While it runs it spins as fast as ever; stopped,
    it leaves logs as it was (the link or the directory, as when it spins) and costs nothing while Ansible
    starts Python and imports the module, which is nearly all of a task's time."""

    def __init__(self, process):
        self.pid = process.pid

    @contextlib.contextmanager
    def racing(self):
        """The swapper running, and on a CPU already when root starts writing."""
        assert racing_module.run_swapper(self.pid), "the swapper got no CPU"
        try:
            yield
        finally:
            racing_module.stop_swapper(self.pid)

    def interpreter(self, python, directory):
        """(a module interpreter for the playbook: `python` running racing_module.py, its gate log). The
        swapper is this process's child, not yet waited for: its pid cannot be another process's. The
        module's own end stops it; the wrapper stops it too, should the process end otherwise."""
        gate_log = directory / "racing-modules.log"
        wrapper = directory / "python-racing"
        wrapper.write_text('#!/bin/sh\n"%s" "%s" %d "%s" "$@"\nstatus=$?\nkill -STOP %d\nexit $status\n'
                           % (python, racing_module.__file__, self.pid, gate_log, self.pid))
        wrapper.chmod(0o755)
        return str(wrapper), gate_log


@pytest.mark.parametrize("writer", [
    "trusted_file",
    pytest.param("builtin", marks=pytest.mark.xfail(raises=RootWroteThroughTheSwap, strict=True, reason=(
        "ansible.builtin.file and copy resolve the path again for each write: follow=false spares only the "
        "last component, and the swapped directory is the one before it"))),
])
def test_a_directory_swapped_while_root_writes_never_redirects_a_write(
    role_playbook, module_utils, app_user, scratch, writer
):
    """The user may write jobs/ only while a root thread has an ACL entry granting it (flipped on and off
    every few milliseconds: a check that passed, then a permission that came back). Meanwhile the user
    swaps jobs/logs for its link to a victim directory whenever it can, and root writes into jobs/logs
    over and over: a log and an environment file handed to the user, and a removal. Root must write into
    the real logs/ or refuse; the victim directory and its files never change."""
    base = host_root(scratch, "race")
    jobs = base / "srv" / "jobs"
    (jobs / "logs").mkdir(parents=True)
    (jobs / "logs" / "stale").write_text("stale\n")
    victim = base / "etc"
    victim.mkdir()
    for name in ("cleanup.log", "environment.json", "stale"):
        (victim / name).write_text("root's %s\n" % name)
        (victim / name).chmod(0o600)
    untouched = fingerprint(victim)
    stop_file = base / "stop"
    stop_flipping = threading.Event()
    path_trust = module_utils("_path_trust")

    def flip_acl():
        grant = acl_granting_write(app_user.pw_uid)
        while not stop_flipping.is_set():
            os.setxattr(jobs, path_trust.ACL_ACCESS, grant)
            time.sleep(0.002)
            os.removexattr(jobs, path_trust.ACL_ACCESS)
            jobs.chmod(0o755)
            time.sleep(0.002)

    flipper = threading.Thread(target=flip_acl, daemon=True)
    flipper.start()
    swapper = subprocess.Popen(
        as_user(app_user, ["/usr/bin/python3", "-c", SWAPPER, str(jobs), str(victim), str(stop_file),
                           "50000000", str(RACE_SECONDS)]),
        cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    racer = Swapper(swapper)
    answers = []
    try:
        deadline = time.monotonic() + 10
        while not os.path.lexists(jobs / "logs.link") and time.monotonic() < deadline:
            time.sleep(0.01)
        racing_module.stop_swapper(racer.pid)
        if writer == "trusted_file":
            with racer.racing():
                answers += write_in_process(module_utils, app_user, jobs / "logs")
        interpreter, gate_log = racer.interpreter(role_playbook.bare_python, role_playbook.workdir)
        role_playbook.run("race_writes.yml", {
            "writer": writer, "logs": str(jobs / "logs"), "app_user": app_user.pw_name, "rounds": RACE_ROUNDS,
            "secret": "secret\n", "ansible_python_interpreter": interpreter,
        })
        answers += json.loads((role_playbook.workdir / "answers.json").read_text())
    finally:
        stop_file.touch()
        os.kill(racer.pid, signal.SIGCONT)
        stdout, stderr = swapper.communicate(timeout=RACE_SECONDS + 30)
        stop_flipping.set()
        flipper.join(10)
    tries, swaps = map(int, stdout.split())
    print("race (%s): the user swapped %d times in %d tries; root made %d writes, %d refused"
          % (writer, swaps, tries, len(answers), len([answer for answer in answers if answer])))
    assert swaps > 100, "the user swapped only %d times in %d tries: no race happened (%s)" % (swaps, tries, stderr)
    writes = [line for line in gate_log.read_text().splitlines() if str(jobs / "logs") in line]
    assert len(writes) >= 3 * RACE_ROUNDS and all(line.startswith("racing ") for line in writes), \
        "every module writing into logs must run while the swapper runs:\n%s" % "\n".join(writes)
    if fingerprint(victim) != untouched:
        raise RootWroteThroughTheSwap("root wrote through the swapped directory:\n%s\nnow:\n%s"
                                      % (untouched, fingerprint(victim)))
    reasons = {re.sub(r"^refusing to (write|remove) %s/\S+: " % re.escape(str(jobs)), "", answer)
               for answer in answers if answer}
    assert reasons <= {
        "%s grants %s write access through an ACL entry" % (jobs, app_user.pw_name),
        "%s is a symbolic link owned by %s" % (jobs / "logs", app_user.pw_name),
        "%s was replaced while root opened it" % (jobs / "logs"),  # the ACL went between two steps
    }, reasons
    if writer == "trusted_file":
        # Both outcomes happened: the race was on while root wrote, and root still wrote where it meant to.
        assert "" in answers and len(reasons) >= 2, (len(answers), reasons)


def write_in_process(module_utils, app_user, logs):
    """The module's three writes, IN_PROCESS_ROUNDS times each: what each one answered ('' for done)."""
    trusted_file = module_utils("_trusted_file")
    user = module_utils("_path_trust").UntrustedUser(app_user.pw_name)
    requests = [
        trusted_file.Request(str(logs / "cleanup.log"), "file", user, False, owner=app_user.pw_uid, mode=0o640),
        trusted_file.Request(str(logs / "environment.json"), "file", user, False, owner=app_user.pw_uid, mode=0o600,
                             content=b"secret\n", secret=True),
        trusted_file.Request(str(logs / "stale"), "absent", user, False),
    ]
    answers = []
    for _round in range(IN_PROCESS_ROUNDS):
        for request in requests:
            try:
                request.run()
                answers.append("")
            except trusted_file.TrustedFileError as exc:
                answers.append(str(exc))
    return answers
