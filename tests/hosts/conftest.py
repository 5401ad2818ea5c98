"""Fixtures of the hosts tests: playbooks from the installed tarball, over real SSH, as the deploy user,
becoming the application user (modules) or root (roles). The machinery is in sshhosts.py."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# cronjobs.py (cron's way of reading and starting a job) lives with the integration tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

import leftovers  # noqa: E402  pylint: disable=wrong-import-position
import sshhosts  # noqa: E402  pylint: disable=wrong-import-position

versions = {}


def pytest_terminal_summary(terminalreporter):
    if os.geteuid() != 0:
        terminalreporter.write_line("WARNING: the hosts tests were NOT RUN: they need root", red=True, bold=True)
    if versions:
        terminalreporter.write_line(
            "hosts: the application's virtualenv ran Python %(python)s, Django %(django)s, DOT %(dot)s" % versions
        )


@pytest.fixture(scope="session")
def session_root():
    """/srv/oauthops-TAG-hosts-XXXX: root's, readable by all; the application's tree is inside, and the
    stand-ins for /etc/cron.d, /var/lib and /var/log that the role's jobs go to."""
    missing = sshhosts.missing_tools()
    if missing:
        pytest.fail("missing %s: apt-get install -y --no-install-recommends openssh-server sudo acl" % missing)
    root = Path(tempfile.mkdtemp(prefix=leftovers.name("hosts") + "-", dir="/srv"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


@pytest.fixture(scope="session")
def deploy_user():
    with sshhosts.deploy_user() as user:
        yield user


@pytest.fixture(scope="session")
def app_user():
    with sshhosts.app_user() as user:
        yield user


@pytest.fixture(scope="session")
def app_site(session_root, app_user):
    """The application user's virtualenv (system Python) and one project copy per host."""
    site = sshhosts.AppSite(session_root / "app", app_user)
    site.root.mkdir()
    site.chown(site.root)
    versions.update(site.build_venv())
    site.copy_projects()
    return site


@pytest.fixture(scope="session")
def migrated_database(app_site):
    """A migrated SQLite database that each test copies (migrating takes seconds, copying none)."""
    directory = app_site.new_directory("template")
    database = directory / "db.sqlite3"
    app_site.manage("web1", database, "migrate", "--verbosity", "0")
    return database


@pytest.fixture
def database(app_site, migrated_database, request):
    """A fresh database of the application user's, shared by every host of the test."""
    directory = app_site.new_directory(request.node.originalname.replace("_", "-")[:40])
    database = directory / "db.sqlite3"
    shutil.copy(migrated_database, database)
    app_site.chown(directory)
    return database


@pytest.fixture
def env_files(app_site, database):
    """Each host's env_file (the application user's, 0600): the database's name lives there."""
    files = {}
    for host in sshhosts.HOSTS:
        path = Path(database).parent / ("%s.env" % host)
        path.write_text("".join("%s=%s\n" % item for item in sshhosts.database_env(database).items()))
        os.chown(path, app_site.user.pw_uid, app_site.user.pw_gid)
        path.chmod(0o600)
        files[host] = str(path)
    return files


@pytest.fixture(scope="session")
def sshd(session_root, deploy_user, tmp_path_factory):  # pylint: disable=unused-argument
    server = sshhosts.start_sshd(tmp_path_factory.mktemp("sshd"), session_root)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def installed_collection(tmp_path_factory):
    return sshhosts.install_collection(tmp_path_factory.mktemp("collection"))


@pytest.fixture(scope="session")
def control_path_dir():
    """Short: ssh's ControlPersist socket path (this, a hash and a temporary suffix) must stay below 108 bytes."""
    path = tempfile.mkdtemp(prefix="oauthops-cp-")
    yield path
    shutil.rmtree(path)


@pytest.fixture
def ansible(installed_collection, sshd, control_path_dir, tmp_path):
    return sshhosts.Ansible(installed_collection, sshd, control_path_dir, tmp_path)
