"""A project with two databases whose DATABASE_ROUTERS keep DOT on the 'oauth' alias (testproject/routers.py),
on SQLite and PostgreSQL: the modules, the cleanup (against DOT's own cleartokens) and the cron job's line,
without `database`, go where the routers send DOT, as DOT does.

Each backend gets two such projects: one migrated on both databases (`manage.py migrate` and `migrate --database
oauth`, as the routers' documentation has it: `migrate` alone records DOT's migrations on 'default' and creates no
table there), and one whose 'oauth' database was never migrated.
"""

import contextlib
import os
import subprocess

import pytest
from cronjobs import KEPT_ROWS, seed_tokens, token_rows
from conftest import PROJECT_PYTHON, ship_side
from provisioning import DJANGO_PROJECT, provisioned_database

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def manage(env, *args, stdin=None):
    completed = subprocess.run(
        [PROJECT_PYTHON, "manage.py", *args], cwd=DJANGO_PROJECT, env=dict(os.environ, **env),
        input=stdin, capture_output=True, text=True, check=False,
    )
    assert completed.returncode == 0, "manage.py %s:\n%s%s" % (" ".join(args), completed.stdout, completed.stderr)
    return completed.stdout


@contextlib.contextmanager
def routed_project(backend, workdir, migrated=True):
    """The environment of a two-database project (both databases fresh), migrated as the routers want."""
    with provisioned_database(backend, workdir / "default") as default, \
            provisioned_database(backend, workdir / "oauth") as oauth:
        env = dict(default, OAUTHOPS_TEST_OAUTH_DB_NAME=oauth["OAUTHOPS_TEST_DB_NAME"], OAUTHOPS_TEST_FAST_HASHER="1")
        manage(env, "migrate", "--verbosity", "0")
        if migrated:
            manage(env, "migrate", "--database", "oauth", "--verbosity", "0")
        yield env


def make_user(env, alias, username):
    manage(env, "shell", "--no-imports", "-c",
           "from django.contrib.auth import get_user_model; "
           "get_user_model()._default_manager.db_manager(%r).create(username=%r)" % (alias, username))


@pytest.fixture
def projects(database, tmp_path):
    for label in ("routed", "unmigrated"):
        (tmp_path / label / "default").mkdir(parents=True)
        (tmp_path / label / "oauth").mkdir()
    with routed_project(database["backend"], tmp_path / "routed") as routed, \
            routed_project(database["backend"], tmp_path / "unmigrated", migrated=False) as unmigrated:
        yield routed, unmigrated


def test_a_routed_project_without_database(playbook, projects, tmp_path):
    routed, unmigrated = projects
    make_user(routed, "oauth", playbook.prefix + "-alice")
    make_user(routed, "default", playbook.prefix + "-bob")
    seed_tokens(routed, playbook.prefix + "-module")
    playbook.database = dict(routed, backend=playbook.database["backend"])
    playbook.run("routers.yml", {"unmigrated_env": unmigrated})
    assert token_rows(routed) == KEPT_ROWS

    # DOT's own cleartokens on the same backlog leaves the same rows.
    seed_tokens(routed, playbook.prefix + "-dot")
    manage(routed, "cleartokens")
    assert token_rows(routed) == {model: 2 * rows for model, rows in KEPT_ROWS.items()}

    # The cron job's line without --database (the role adds none unless token_cleanup_database is set).
    side = ship_side(tmp_path / "side")
    seed_tokens(routed, playbook.prefix + "-job")
    for engine in ("oauthops", "cleartokens"):
        line = run_job(side, routed, "--engine", engine, "--check")
        assert (line["engine"], line["database"], line["check_mode"], line["total"]) == (engine, "oauth", "true", "18")
    line = run_job(side, routed)
    assert (line["database"], line["total"], line["complete"]) == ("oauth", "18", "true")
    assert token_rows(routed) == {model: 3 * rows for model, rows in KEPT_ROWS.items()}

    failed = subprocess.run(job_command(side), cwd=side, capture_output=True, text=True, check=False,
                            env=job_env(unmigrated))
    assert failed.returncode == 1
    assert failed.stderr.startswith(
        "oauthops token cleanup failed: oauth2_provider migrations not applied on database 'oauth' (oauth2_provider."
    ), failed.stderr
    assert failed.stderr.endswith("): run manage.py migrate --database oauth\n"), failed.stderr


def job_env(env):
    """A bare environment, as cron's, plus the test project's database variables."""
    return dict(env, PATH=os.environ["PATH"])


def job_command(side, *args):
    """The role's cron line without --database (cwd: the shipped side's directory, as the role's is)."""
    return [PROJECT_PYTHON, "-m", "oauthops_django_side._django_cleanup_job", "--project-path", str(DJANGO_PROJECT),
            "--settings", "testproject.settings", *args]


def run_job(side, env, *args):
    completed = subprocess.run(job_command(side, *args), cwd=side, capture_output=True, text=True,
                               check=False, env=job_env(env))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    timestamp, *pairs = completed.stdout.split()
    assert timestamp and completed.stderr == ""
    return dict(pair.split("=", 1) for pair in pairs)
