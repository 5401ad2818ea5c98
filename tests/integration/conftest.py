"""Real ansible-playbook runs against tests/django_project on every backend.

Ansible's interpreter is a bare virtualenv without Django, so every module call
has to cross the bridge into the project's Python (the interpreter running
pytest, which has Django and DOT).
"""

import importlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bare_interpreter import bare_virtualenv
from provisioning import DJANGO_PROJECT, REPO, migrate, provisioned_database, selected_backends, uses_real_hasher

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
LIVESERVER = Path(__file__).resolve().parent / "liveserver.py"
# The interpreter the modules start for the Django side: --project-python, else this one (pytest_configure).
PROJECT_PYTHON = sys.executable


def pytest_configure(config):
    global PROJECT_PYTHON  # pylint: disable=global-statement
    chosen = config.getoption("project_python")
    if chosen:
        PROJECT_PYTHON = cronjobs.PROJECT_PYTHON = os.path.abspath(chosen)


@pytest.fixture(scope="session")
def collections_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("collections")
    namespace = root / "ansible_collections" / "oauthops"
    namespace.mkdir(parents=True)
    (namespace / "toolkit").symlink_to(REPO)
    return root


@pytest.fixture(scope="session")
def module_utils(collections_path):
    """The collection's plain-Python module_utils, imported in this process the way modules import them (for
    tests that call them hundreds of times, faster than any playbook could)."""
    sys.path.insert(0, str(collections_path))
    prefix = "ansible_collections.oauthops.toolkit.plugins.module_utils."
    return lambda name: importlib.import_module(prefix + name)


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory):
    """An interpreter that cannot import Django: Ansible runs modules with it."""
    return bare_virtualenv(tmp_path_factory.mktemp("bare") / "venv", sys.executable)


def pytest_generate_tests(metafunc):
    """A test that uses `database` runs on each backend --backend selects (default: all three); one marked
    one_backend, whose outcome the database cannot change, on SQLite only; one marked backends(...) on those
    of its backends that are selected."""
    if "database" not in metafunc.fixturenames or getattr(metafunc.module, "OWN_DATABASE_FIXTURE", False):
        return
    if any("database" in marker.args[0] for marker in metafunc.definition.iter_markers("parametrize")):
        return  # the test names its backends itself
    backends = selected_backends(metafunc.config)
    if metafunc.definition.get_closest_marker("one_backend"):
        backends = ["sqlite"]  # deselected below when --backend leaves SQLite out
    only = metafunc.definition.get_closest_marker("backends")
    if only:
        backends = [backend for backend in backends if backend in only.args] or list(only.args[:1])  # deselected below
    metafunc.parametrize("database", backends, indirect=True, scope="session")


def pytest_collection_modifyitems(config, items):
    """Mark the tests that use a test database `database`, so that `-m database` / `-m "not database"` split
    the per-backend tests from the ones that run once (tests/tools/suite runs them as separate jobs); and
    leave out the one_backend tests when --backend leaves SQLite out, and a backends(...) test where none of
    its backends is selected."""
    selected = selected_backends(config)
    kept, deselected = [], []
    for item in items:
        if "database" in getattr(item, "fixturenames", ()):
            item.add_marker("database")
        only = item.get_closest_marker("backends")
        backend = getattr(item, "callspec", None) and item.callspec.params.get("database")
        left_out = ("sqlite" not in selected and item.get_closest_marker("one_backend")) or (
            only and backend not in selected)
        (deselected if left_out else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def database(request, tmp_path_factory):
    with provisioned_database(request.param, tmp_path_factory.mktemp(request.param)) as env:
        migrate(env)
        yield dict(env, backend=request.param)


class LiveServer:
    """tests/django_project answering HTTP on a loopback port (see the live_server fixture)."""

    def __init__(self, process, log_path):
        self.process = process
        self.log_path = log_path
        self.base_url = None

    def url(self, path):
        return self.base_url + path

    def log_tail(self, lines=30):
        """The server's last request lines and errors, for a failing test's message."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "server log (%s), last lines:\n%s" % (self.log_path, "\n".join(text.splitlines()[-lines:]))

    def wait_until_served(self, port_file, timeout=30):
        """Bounded: the server wrote its port and its protected view refuses an anonymous request."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail("the live server exited with %s\n%s" % (self.process.returncode, self.log_tail()))
            if port_file.exists():
                self.base_url = "http://127.0.0.1:%s" % port_file.read_text()
                try:
                    urllib.request.urlopen(self.url("/api/hello/"), timeout=2)
                except urllib.error.HTTPError as exc:
                    if exc.code in (401, 403):
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        pytest.fail("the live server did not answer within %s s\n%s" % (timeout, self.log_tail()))

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def live_server(database, tmp_path_factory):
    """The test project served on a free loopback port, on the session's database of this backend (the one
    the playbooks write), by the project's Python; stopped at the end of the session, before the database
    is dropped."""
    workdir = tmp_path_factory.mktemp("live-server-%s" % database["backend"])
    port_file = workdir / "port"
    log_path = workdir / "server.log"
    env = dict(os.environ, **{key: value for key, value in database.items() if key.startswith("OAUTHOPS_")})
    # The server verifies what the playbooks stored: MD5 hashes, and PBKDF2 ones where a test is real_hasher
    # (the fast list verifies both; new hashes would be MD5, but the server makes none).
    env["OAUTHOPS_TEST_FAST_HASHER"] = "1"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [PROJECT_PYTHON, str(LIVESERVER), str(port_file)],
            cwd=DJANGO_PROJECT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(process, log_path)
    try:
        server.wait_until_served(port_file)
        yield server
    finally:
        server.stop()


def ship_side(directory):
    """The Django side laid out as the bridge ships it and the token_cleanup role copies it: the package
    oauthops_django_side of every plugins/module_utils/_django_*.py, in `directory` (returned)."""
    package = directory / "oauthops_django_side"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for path in (REPO / "plugins" / "module_utils").glob("_django_*.py"):
        (package / path.name).write_text(path.read_text())
    return directory


@pytest.fixture
def unmigrated_database(database, tmp_path_factory):
    """A second, empty database on the same backend."""
    with provisioned_database(database["backend"], tmp_path_factory.mktemp("empty")) as env:
        yield env


class PlaybookRunner:
    # The controller beside this interpreter; a cell of the version matrix names another.
    ansible_playbook = str(Path(sys.executable).parent / "ansible-playbook")

    def __init__(self, collections_path, bare_python, database, workdir, prefix, real_hasher=False):
        self.collections_path = collections_path
        self.bare_python = bare_python
        self.database = database
        self.workdir = workdir
        self.prefix = prefix
        self.real_hasher = real_hasher

    def django_env(self):
        """The project's environment: the database, and MD5 for new client secrets unless the test is
        marked real_hasher (a playbook passes it on as the modules' `environment`)."""
        env = {key: value for key, value in self.database.items() if key.startswith("OAUTHOPS_")}
        if not self.real_hasher:
            env["OAUTHOPS_TEST_FAST_HASHER"] = "1"
        return env

    @staticmethod
    def project_path():
        return str(DJANGO_PROJECT)

    @staticmethod
    def project_python():
        return PROJECT_PYTHON

    def command(self, playbook, extra_vars, args, environ=None):
        """The ansible-playbook command line and its environment."""
        variables = {
            "project_path": str(DJANGO_PROJECT),
            "project_python": PROJECT_PYTHON,
            "db_env": self.django_env(),
            "prefix": self.prefix,
            "workdir": str(self.workdir),
            "backend": self.database["backend"],
        }
        variables.update(extra_vars or {})
        vars_file = self.workdir / "vars.json"
        vars_file.write_text(json.dumps(variables))
        env = dict(
            os.environ,
            ANSIBLE_COLLECTIONS_PATH=str(self.collections_path),
            ANSIBLE_PYTHON_INTERPRETER=self.bare_python,
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_RETRY_FILES_ENABLED="0",
            ANSIBLE_LOCAL_TEMP=str(self.workdir / "ansible-local"),
            **(environ or {}),
        )
        command = [
            self.ansible_playbook,
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            "@%s" % vars_file,
            str(PLAYBOOKS / playbook),
        ] + list(args)
        return command, env

    def run(self, playbook, extra_vars=None, *args, expect_rc=0, environ=None):
        command, env = self.command(playbook, extra_vars, args, environ)
        completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        output = completed.stdout + completed.stderr
        assert completed.returncode == expect_rc, "%s exited %s:\n%s" % (playbook, completed.returncode, output)
        return output

    def start(self, playbook, extra_vars=None, *args):
        """The playbook, started: for tests that watch it while it runs."""
        command, env = self.command(playbook, extra_vars, args)
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def playbook(collections_path, bare_python, database, tmp_path, request):
    prefix = request.node.originalname.replace("_", "-")
    return PlaybookRunner(collections_path, bare_python, database, tmp_path, prefix,
                          uses_real_hasher(request.node, database["backend"]))


@pytest.fixture(scope="module")
def module_playbook(collections_path, bare_python, database, tmp_path_factory, request):
    """A runner shared by a test module's tests, for what they set up once per backend (prefix: the module's
    name without test_, e.g. live-clients)."""
    prefix = request.module.__name__.rpartition(".")[2].replace("test_", "", 1).replace("_", "-")
    return PlaybookRunner(collections_path, bare_python, database, tmp_path_factory.mktemp(prefix), prefix,
                          uses_real_hasher(request.node, database["backend"]))


@pytest.fixture
def role_playbook(collections_path, bare_python, tmp_path, request):
    """A runner for playbooks that need no test database of their own (the roles' behaviour)."""
    prefix = request.node.originalname.replace("_", "-")
    return PlaybookRunner(collections_path, bare_python, {"backend": "none"}, tmp_path, prefix,
                          uses_real_hasher(request.node, None))


# The token_cleanup jobs' user, interpreter and scratch space, shared by the role tests; root's victims.
from attacks import victims  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position
import cronjobs  # noqa: E402  pylint: disable=wrong-import-position
from cronjobs import app_python, app_user, idle_database, job_database, scratch  # noqa: E402,F401  pylint: disable=unused-import,wrong-import-position
