"""A managed host reached over real SSH: this machine, through its own sshd on a loopback port.

What a real deployment has, made here once and reused:
- a deploy user (`oauthops-deploy-test`) who logs in with a key and has passwordless sudo;
- an application user (`oauthops-app-test`, no login shell) who owns the Django project, its
  virtualenv (built on the system Python: pyenv's Pythons live in root's 0700 home, which other users
  cannot enter) and the SQLite database.
Per test session: a throwaway host key and client key, an sshd with its own config, and a directory
/srv/oauthops-hosts-XXXX that is removed at the end.

The sshd listens on two ports. On the second, the sessions' PATH is a copy of the system's without
`setfacl`: a host where the `acl` package is missing, without uninstalling it from a shared machine.
"""

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ansible_isolation
from cronjobs import as_user
import leftovers
from provisioning import DJANGO_PROJECT, REPO, delete_user, system_user, users_lock

# This session's own (tests/leftovers.py): oauthops-TAG-deploy, oauthops-TAG-app.
DEPLOY_USER = leftovers.name("deploy")
APP_USER = leftovers.name("app")
APP_HOME = Path("/srv") / APP_USER
SUDOERS = Path("/etc/sudoers.d") / DEPLOY_USER
SYSTEM_PYTHON = "/usr/bin/python3"
MKVENV = REPO / "tests" / "tools" / "mkvenv"
SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = "/run/sshd"  # sshd needs it; a machine whose own sshd runs has it, and keeps it
# What the application's virtualenv gets from PyPI: the newest Django for the system Python, and
# the DOT release whose clear_expired() the expected counts of cronjobs.py are written for.
APP_REQUIREMENTS = ("Django", "django-oauth-toolkit==3.4.1")
HOSTS = ("web1", "web2", "web3")
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
SETTINGS = "testproject.settings"
BIN = Path(sys.executable).parent


def run(argv, timeout=120, **kwargs):
    """subprocess.run that fails with the command's output."""
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if completed.returncode != 0:
        raise AssertionError("%s exited %s:\n%s%s" % (argv, completed.returncode, completed.stdout, completed.stderr))
    return completed.stdout


def missing_tools():
    return [tool for tool in (SSHD, "/usr/bin/sudo", "/usr/bin/setfacl") if not os.access(tool, os.X_OK)]


# -- the two users ----------------------------------------------------------------------------


@contextlib.contextmanager
def deploy_user():
    """The account Ansible logs in as: a key, a shell, and sudo without a password; removed afterwards,
    with its home and its sudo rule."""
    with users_lock():
        run(["useradd", "--user-group", "--create-home", "--shell", "/bin/bash", DEPLOY_USER])
        # useradd leaves the password locked, and without PAM sshd refuses a locked account even for
        # a key; '*' matches no password, so only the key lets anyone in.
        run(["usermod", "--password", "*", DEPLOY_USER])
    try:
        # sudo skips files with a dot in /etc/sudoers.d, so a half-written one is never read.
        draft = SUDOERS.with_name("." + SUDOERS.name)
        draft.write_text("%s ALL=(ALL:ALL) NOPASSWD: ALL\n" % DEPLOY_USER)
        draft.chmod(0o440)
        run(["visudo", "-c", "-q", "-f", str(draft)])
        draft.replace(SUDOERS)
        yield pwd.getpwnam(DEPLOY_USER)
    finally:
        SUDOERS.unlink(missing_ok=True)
        delete_user(DEPLOY_USER, remove_home=True)


@contextlib.contextmanager
def app_user():
    """The application's account: owns the project, runs the modules (become_user) and the cron job;
    removed afterwards, with its home.

    Its home is where a module run as this user keeps its temporary files (Ansible's remote_tmp,
    ~/.ansible/tmp): a become_user cannot write into the deploy user's temporary directory.
    """
    with system_user("app", "--user-group", "--create-home", "--home-dir", str(APP_HOME),
                     "--shell", "/usr/sbin/nologin", remove_home=True) as user:
        yield user


def as_app(user, argv, cwd="/", env=None, timeout=120):
    """Run argv as the application user with a clean environment, as a service of theirs would."""
    environ = {"HOME": user.pw_dir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    environ.update(env or {})
    command = as_user(user, ["env", "-i"] + ["%s=%s" % item for item in environ.items()] + list(argv))
    return run(command, timeout=timeout, cwd=cwd)


# -- the application's files ------------------------------------------------------------------


@dataclass
class AppSite:
    """The application user's tree: one virtualenv, one project copy per host, migrated databases."""

    root: Path
    user: pwd.struct_passwd

    @property
    def venv(self):
        return self.root / "venv"

    @property
    def python(self):
        return str(self.venv / "bin" / "python")

    def project(self, host):
        return self.root / host / "project"

    def build_venv(self):
        """The user builds it, with tests/tools/mkvenv and uv copied where they can run them but not change them.

        uv's cache is theirs (UV_CACHE_DIR in their home); MKVENV_PIP=1 builds with pip instead.
        """
        tools = self.root.parent / "tools"
        tools.mkdir(mode=0o755)
        mkvenv = tools / "mkvenv"
        shutil.copy(MKVENV, mkvenv)
        argv = [SYSTEM_PYTHON, str(mkvenv), str(self.venv), "--python", SYSTEM_PYTHON]
        env = {}
        if os.environ.get("MKVENV_PIP", "") not in ("", "0"):
            argv.append("--pip")
        else:
            uv = tools / "uv"
            shutil.copy(run([str(MKVENV), "--print-uv"]).strip(), uv)
            argv += ["--uv", str(uv)]
            env["UV_CACHE_DIR"] = os.path.join(self.user.pw_dir, ".cache", "uv")
        for path in tools.iterdir():
            path.chmod(0o755)
        as_app(self.user, argv + list(APP_REQUIREMENTS), env=env, timeout=600)
        return json.loads(as_app(self.user, [self.python, "-c", (
            "import json, platform, django, oauth2_provider; print(json.dumps({'python': platform.python_version(), "
            "'django': django.get_version(), 'dot': oauth2_provider.__version__}))")]))

    def copy_projects(self):
        ignore = shutil.ignore_patterns("__pycache__", "*.sqlite3")
        for host in HOSTS:
            shutil.copytree(DJANGO_PROJECT, self.project(host), ignore=ignore)
            self.chown(self.root / host)

    def manage(self, host, database, *args):
        """manage.py of one host's project, as the application user, on `database`."""
        return as_app(self.user, [self.python, "manage.py"] + list(args), cwd=self.project(host),
                      env=database_env(database))

    def new_directory(self, prefix):
        path = Path(tempfile.mkdtemp(prefix=prefix + "-", dir=self.root))
        self.chown(path)
        return path

    def chown(self, path):
        """The user owns `path` and everything in it; only they (and root) can enter it."""
        for directory, _dirs, files in os.walk(path):
            for entry in [directory] + [os.path.join(directory, name) for name in files]:
                os.chown(entry, self.user.pw_uid, self.user.pw_gid, follow_symlinks=False)
        Path(path).chmod(0o700)


def database_env(database):
    return {"OAUTHOPS_TEST_DB": "sqlite", "OAUTHOPS_TEST_DB_NAME": str(database)}


# -- sshd -------------------------------------------------------------------------------------


def free_ports(count):
    """Loopback ports nobody listens on (all bound at once, so they differ)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(contextlib.closing(socket.socket())) for _index in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


def path_without(directory, command, dirs=("/usr/local/bin", "/usr/bin", "/bin", "/usr/games")):
    """A directory of links to every command on sshd's default PATH except `command`."""
    directory.mkdir(mode=0o755)
    for source in dirs:
        if not os.path.isdir(source):
            continue
        for name in sorted(os.listdir(source)):
            link = directory / name
            if name != command and not os.path.lexists(link):
                link.symlink_to(os.path.join(source, name))
    return directory


@dataclass
class Sshd:
    """A running sshd and what a client needs to log in to it as the deploy user."""

    process: subprocess.Popen
    port: int
    noacl_port: int
    client_key: Path
    known_hosts: Path
    log: Path
    made_privsep_dir: bool = False

    def connection_vars(self, port):
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": port,
            "ansible_user": DEPLOY_USER,
            "ansible_ssh_private_key_file": str(self.client_key),
            "ansible_ssh_common_args": "-o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null "
                                       "-o StrictHostKeyChecking=yes -o IdentitiesOnly=yes" % self.known_hosts,
            # Interpreter discovery picks a broken pyenv shim on these machines.
            "ansible_python_interpreter": SYSTEM_PYTHON,
        }

    def stop(self):
        # Connections that Ansible's ControlPersist keeps open are sshd's children; ending them lets
        # the client side's master processes exit too.
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True,
                                  timeout=10, check=False).stdout.split()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.made_privsep_dir:
            with contextlib.suppress(OSError):  # not when another sshd has put something there since
                os.rmdir(PRIVSEP_DIR)


def start_sshd(workdir, public_dir):
    """sshd -D with its own config, host key and ports; the deploy user's key is its only way in."""
    host_key = workdir / "ssh_host_ed25519_key"
    client_key = workdir / "deploy_key"
    for key in (host_key, client_key):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "oauthops-hosts-test", "-f", str(key)])
    # sshd reads authorized keys with the user's privileges, and checks that no one else can change
    # the file or a directory above it: a root-owned file in a root-owned directory.
    authorized_keys = public_dir / "authorized_keys"
    shutil.copy(str(client_key) + ".pub", authorized_keys)
    authorized_keys.chmod(0o644)
    noacl_path = path_without(public_dir / "noacl-bin", "setfacl")
    port, noacl_port = free_ports(2)
    config = workdir / "sshd_config"
    config.write_text("\n".join([
        "ListenAddress 127.0.0.1",
        "Port %d" % port,
        "Port %d" % noacl_port,
        "HostKey %s" % host_key,
        "PidFile %s" % (workdir / "sshd.pid"),
        "UsePAM no",
        "AuthorizedKeysFile %s" % authorized_keys,
        "AllowUsers %s" % DEPLOY_USER,
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        "Subsystem sftp internal-sftp",
        "Match LocalPort %d" % noacl_port,
        "    SetEnv PATH=%s" % noacl_path,
        "",
    ]))
    made_privsep_dir = not os.path.isdir(PRIVSEP_DIR)
    if made_privsep_dir:
        os.mkdir(PRIVSEP_DIR, 0o755)
    run([SSHD, "-t", "-f", str(config)], timeout=30)
    log = workdir / "sshd.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=output, stderr=subprocess.STDOUT)
    public_key = Path(str(host_key) + ".pub").read_text().split()[:2]
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text("".join("[127.0.0.1]:%d %s\n" % (p, " ".join(public_key)) for p in (port, noacl_port)))
    sshd = Sshd(process, port, noacl_port, client_key, known_hosts, log, made_privsep_dir)
    deadline = time.monotonic() + 30
    while not all(listening(p) for p in (port, noacl_port)):
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                sshd.stop()
            raise AssertionError("sshd did not start listening on %d and %d:\n%s" % (port, noacl_port, log.read_text()))
        time.sleep(0.1)
    return sshd


def listening(port):
    with contextlib.closing(socket.socket()) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# -- the collection, from its tarball ------------------------------------------------------------


def install_collection(workdir):
    """Build the tarball from this checkout and install it into an empty collections path."""
    dist = workdir / "dist"
    run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(dist), str(REPO)], timeout=300)
    (tarball,) = dist.glob("oauthops-toolkit-*.tar.gz")
    installed = workdir / "installed"
    env = ansible_env(installed)
    run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "-p", str(installed), str(tarball)],
        timeout=300, env=env)
    listing = json.loads(run([str(BIN / "ansible-galaxy"), "collection", "list", "--format", "json",
                              "oauthops.toolkit"], env=env))
    assert list(listing) == [str(installed / "ansible_collections")], "another copy of the collection is visible"
    return installed


def ansible_env(collections_path, **extra):
    # A developer's settings must not change what the tests prove: the suite's Ansible settings only.
    env, _ignored = ansible_isolation.environment(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(collections_path),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        **extra,
    )
    return env


class Ansible:
    """ansible-playbook from the installed collection, over SSH, as the deploy user."""

    def __init__(self, collections_path, sshd, control_path_dir, workdir):
        self.collections_path = collections_path
        self.sshd = sshd
        self.control_path_dir = control_path_dir
        self.workdir = workdir

    def inventory(self, groups, port=None, name="inventory.json"):
        """groups: {group: {host: variables}}; every host is this machine, reached through sshd."""
        path = self.workdir / name
        path.write_text(json.dumps({"all": {
            "vars": self.sshd.connection_vars(port or self.sshd.port),
            "children": {group: {"hosts": hosts} for group, hosts in groups.items()},
        }}))
        return str(path)

    def playbook(self, playbook, inventory, *args, pipelining, extra_vars=None, expect_rc=0, timeout=300):
        variables = self.workdir / "extra-vars.json"
        variables.write_text(json.dumps(extra_vars or {}))
        env = ansible_env(
            self.collections_path,
            ANSIBLE_PIPELINING=str(pipelining),
            ANSIBLE_LOCAL_TEMP=str(self.workdir / "ansible-local"),
            ANSIBLE_SSH_CONTROL_PATH_DIR=self.control_path_dir,
        )
        command = [str(BIN / "ansible-playbook"), "-i", inventory, "-e", "@%s" % variables, str(playbook)] + list(args)
        completed = subprocess.run(command, env=env, cwd=self.workdir, capture_output=True, text=True,
                                   timeout=timeout, check=False)
        output = completed.stdout + completed.stderr
        assert completed.returncode == expect_rc, "%s exited %s:\n%s" % (playbook, completed.returncode, output)
        return output
