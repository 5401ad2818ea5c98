"""One cell of the version matrix, run by tests/tools/run-matrix (`make matrix`).

`pytest tests/integration` does not collect this file (its name does not match test_*.py): it needs a
cell's three interpreters. pytest runs in the cell's project virtualenv (its Django and DOT), as
tests/integration runs in the dev one, so the integration fixtures apply unchanged and this
interpreter is the project Python that the modules and the cron job start. The cell names the other
two: the controller's ansible-playbook (--ansible-playbook) and the interpreter Ansible runs the
modules with (--target-python, a bare virtualenv without Django). The database is SQLite.

What the cleanup should delete is never written down per DOT release: the seeded database is copied,
DOT's own `manage.py cleartokens` (clear_expired()) runs on the copy, and the module and the
installed cron job must then leave every table exactly as the copy is, having reported, per token
model, what DOT deleted.
"""

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from cronjobs import (
    PROJECT_PYTHON,
    finish,
    host_root,
    inventory,
    job_vars,
    log_entries,
    read_cron_file,
    seed_tokens,
    sqlite_database,
    start_as_cron,
    tree,
)
from bare_interpreter import bare_virtualenv
from provisioning import DJANGO_PROJECT, migrate, provisioned_database
from secret_leaks import check_masking

# The database fixture below is this file's own: SQLite, not one per --backend.
OWN_DATABASE_FIXTURE = True

TOKEN_TABLES = {
    "AccessToken": "oauth2_provider_accesstoken",
    "RefreshToken": "oauth2_provider_refreshtoken",
    "IDToken": "oauth2_provider_idtoken",
    "Grant": "oauth2_provider_grant",
}
# The cleanup's categories per token model, as the module and the job's log line report them.
CATEGORIES = {
    "AccessToken": ["access_tokens"],
    "RefreshToken": ["revoked_refresh_tokens", "orphaned_refresh_tokens", "expired_refresh_tokens"],
    "IDToken": ["id_tokens"],
    "Grant": ["grants"],
}


# -- the cell's interpreters and database, in place of the integration ones ---------------------


@pytest.fixture(scope="session", autouse=True)
def cell(pytestconfig):
    """The cell's controller (--ansible-playbook) and target interpreter (--target-python)."""
    controller, target = pytestconfig.getoption("ansible_playbook"), pytestconfig.getoption("target_python")
    if not (controller and target):
        pytest.fail("matrix_cell.py runs inside a cell of tests/tools/run-matrix (make matrix), which passes "
                    "--ansible-playbook and --target-python", pytrace=False)
    CELL.update(ansible_playbook=controller, target_python=target)
    return CELL


CELL = {}


@pytest.fixture(scope="session")
def bare_python(cell, tmp_path_factory):
    """A bare virtualenv of the cell's target interpreter (its Python, nothing else), with the bytecode cache
    for Ansible's zipped modules that the integration tests' bare interpreter has (conftest.bare_virtualenv)."""
    probe = subprocess.run([cell["target_python"], "-c", "import django"], capture_output=True, check=False)
    assert probe.returncode != 0, "the target interpreter must not see Django"
    return bare_virtualenv(tmp_path_factory.mktemp("bare") / "venv", cell["target_python"])


@pytest.fixture(scope="session")
def database(tmp_path_factory):
    with provisioned_database("sqlite", tmp_path_factory.mktemp("sqlite")) as env:
        migrate(env)
        yield dict(env, backend="sqlite")


@pytest.fixture
def playbook(playbook, cell):
    playbook.ansible_playbook = cell["ansible_playbook"]
    return playbook


@pytest.fixture
def role_playbook(role_playbook, cell):
    role_playbook.ansible_playbook = cell["ansible_playbook"]
    return role_playbook


# -- what DOT's clear_expired() leaves -----------------------------------------------------------


def table_rows(path):
    """Every row of every table of a SQLite database."""
    with contextlib.closing(sqlite3.connect("file:%s?mode=ro" % path, uri=True)) as connection:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: sorted(connection.execute('SELECT * FROM "%s"' % table).fetchall(), key=repr) for table in tables}


def cleared_by_dot(db_env, workdir):
    """(every row DOT's clear_expired() leaves, the rows it deleted per token model), from a copy."""
    original = db_env["OAUTHOPS_TEST_DB_NAME"]
    copy = Path(workdir) / "cleared-by-dot.sqlite3"
    shutil.copyfile(original, copy)
    subprocess.run(
        [PROJECT_PYTHON, "manage.py", "cleartokens"],
        cwd=DJANGO_PROJECT, env=dict(os.environ, **dict(db_env, OAUTHOPS_TEST_DB_NAME=str(copy))), check=True,
    )
    before, after = table_rows(original), table_rows(copy)
    deleted = {model: len(before[table]) - len(after[table]) for model, table in TOKEN_TABLES.items()}
    assert sum(deleted.values()) > 0, "the seeded backlog gave clear_expired() nothing to delete"
    return after, deleted


def per_model(counts):
    return {model: sum(counts[name] for name in names) for model, names in CATEGORIES.items()}


def assert_rows_left_as_by_dot(db_env, left_by_dot):
    actual = table_rows(db_env["OAUTHOPS_TEST_DB_NAME"])
    differing = {
        table: (len(actual.get(table, [])), len(rows))
        for table, rows in left_by_dot.items()
        if actual.get(table) != rows
    }
    assert not differing, "tables that differ from clear_expired()'s (rows here, rows there): %s" % differing
    assert set(actual) == set(left_by_dot)


# -- the cell's tests ---------------------------------------------------------------------------


def test_application_lifecycle(playbook):
    """create, rerun unchanged declaring the secret, hash_client_secret false in check mode (refused before DOT
    2.4, which hashes every secret), check-mode update, update, info, absent (twice)."""
    playbook.run("lifecycle.yml", {"dot_version": version("django-oauth-toolkit")})


def test_application_set(playbook):
    """oauth_applications and its exclusive mode on this stack (without self-registration before DOT 3.4.0); a
    declared secret's rerun is unchanged, without a warning."""
    playbook.run("application_set.yml", {"web_secret": playbook.prefix + "-web-secret"})


def controller_version():
    """(major, minor) of the cell's ansible-core, from `ansible-playbook --version` ("ansible-playbook [core 2.18.1]")."""
    completed = subprocess.run([CELL["ansible_playbook"], "--version"], capture_output=True, text=True, check=True)
    return tuple(int(part) for part in re.search(r"core (\d+)\.(\d+)", completed.stdout).groups())


def test_masking_where_every_result_carries_the_module_arguments(playbook):
    """ansible-core 2.18 returns the module arguments with every result (-vvv shows them) and logs them to
    syslog: the environment's secrets are masked in both, and masking changes no count, boolean or message.
    Later releases return them only when asked; tests/integration/test_environment.py covers those."""
    if controller_version() >= (2, 19):
        pytest.skip("ansible-core %d.%d: tests/integration/test_environment.py checks masking there" % controller_version())
    check_masking(playbook)


def test_token_cleanup_deletes_what_clear_expired_deletes(playbook):
    db_env = playbook.django_env()
    seed_tokens(db_env, playbook.prefix)
    left_by_dot, dot_deleted = cleared_by_dot(db_env, playbook.workdir)
    playbook.run("cleanup_like_dot.yml", {"dot_deleted": dot_deleted, "dot_version": version("django-oauth-toolkit")})
    assert_rows_left_as_by_dot(db_env, left_by_dot)


def test_the_installed_cron_job_deletes_what_clear_expired_deletes(role_playbook, app_user, app_python, scratch):
    db_env = sqlite_database(scratch, app_user)
    base = host_root(scratch, "matrix")
    job = job_vars(base, "cleanup", app_user, app_python, environment=db_env, batch_size=3)
    hosts = inventory(role_playbook.workdir / "inv.json", {"cleanup": job})
    role_playbook.run("role_token_cleanup.yml", None, *hosts)
    environment, (cron_job,) = read_cron_file(job["token_cleanup_cron_file"])

    seed_tokens(db_env, role_playbook.prefix)
    left_by_dot, dot_deleted = cleared_by_dot(db_env, role_playbook.workdir)
    assert finish(start_as_cron(cron_job, environment)) == (0, "", ""), "a successful run prints nothing"
    ((_timestamp, fields),) = log_entries(job["token_cleanup_log_file"])
    assert (fields["engine"], fields["complete"], fields["total"]) == ("oauthops", True, sum(dot_deleted.values()))
    assert per_model(fields) == dot_deleted
    assert "warnings" not in fields, fields
    assert_rows_left_as_by_dot(db_env, left_by_dot)

    role_playbook.run("role_token_cleanup.yml", {"token_cleanup_state": "absent"}, *hosts)
    assert tree(base) == ["cron.d", "lib", "log"], "state=absent left files behind"
