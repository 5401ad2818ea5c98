"""Real database servers for the tests: where to find one, and fresh databases on it.

discover("postgresql") or discover("mysql") returns a Server, from the first source that is set up:

1. OAUTHOPS_TEST_POSTGRES_URL / OAUTHOPS_TEST_MYSQL_URL, e.g. postgresql://user:pw@host:5432/ or
   mysql://root@127.0.0.1:3306/. When set, it is the only source: a typo should fail loudly, not
   quietly test another server.
2. The standard local port: 127.0.0.1:5432 as postgres, 127.0.0.1:3306 as root without a password.
3. PostgreSQL only: a throwaway cluster started from the installed binaries (initdb), on a free
   port in a temporary directory, stopped and removed when the process exits.

Otherwise it raises Unavailable, saying what each source answered. Drivers (psycopg, MySQLdb) are
imported only when needed, so this module loads anywhere. `python tests/dbservers.py` reports which
backends are reachable and how.
"""

from __future__ import annotations

import atexit
import dataclasses
import glob
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.parse

import leftovers

BACKENDS = ("postgresql", "mysql")
URL_VARIABLES = {"postgresql": "OAUTHOPS_TEST_POSTGRES_URL", "mysql": "OAUTHOPS_TEST_MYSQL_URL"}
URL_SCHEMES = {"postgresql": ("postgresql", "postgres"), "mysql": ("mysql", "mariadb")}
DEFAULTS = {"postgresql": ("127.0.0.1", 5432, "postgres"), "mysql": ("127.0.0.1", 3306, "root")}
CONNECT_TIMEOUT = 3  # seconds; an absent server should not stall the test session


class Unavailable(Exception):
    """No server of this backend can be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class Server:
    backend: str
    host: str
    port: int
    user: str
    password: str = ""
    source: str = ""  # how it was found, for humans

    def __str__(self) -> str:
        return f"{self.backend} at {self.host}:{self.port} as {self.user} ({self.source})"

    def connect(self):
        """An autocommit connection to the server's maintenance database (CREATE DATABASE needs it)."""
        if self.backend == "postgresql":
            import psycopg

            return psycopg.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                   dbname="postgres", autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        import MySQLdb

        connection = MySQLdb.connect(host=self.host, port=self.port, user=self.user, password=self.password,
                                     connect_timeout=CONNECT_TIMEOUT)
        connection.autocommit(True)
        return connection

    def _execute(self, sql: str) -> None:
        connection = self.connect()
        try:
            connection.cursor().execute(sql)
        finally:
            connection.close()

    def create_database(self, what: str) -> str:
        """Create an empty database named oauthops_TAG_WHAT_HEX (TAG: this process's, tests/leftovers.py,
        so that a database a killed session left is found and dropped); return the name."""
        if not re.fullmatch(r"[a-z][a-z0-9]*", what):
            raise ValueError(f"database label must be lower-case letters and digits, got {what!r}")
        name = f"{leftovers.database_prefix(what)}{secrets.token_hex(4)}"
        if self.backend == "postgresql":
            self._execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0')
            # Tests never need a commit to survive a crash of the server: no wait for the WAL flush
            # (a setting of this database only, for every connection to it).
            self._execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        else:
            # MariaDB's default latin1 would mangle non-ASCII names and redirect URIs.
            self._execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return name

    def database_names(self, prefix: str) -> list[str]:
        """The names of the databases on this server that start with prefix."""
        like = prefix.replace("_", "\\_") + "%"
        connection = self.connect()
        try:
            cursor = connection.cursor()
            if self.backend == "postgresql":
                cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [like])
            else:
                cursor.execute("SHOW DATABASES LIKE %s", [like])
            return [row[0] for row in cursor.fetchall()]
        finally:
            connection.close()

    def drop_database(self, name: str) -> None:
        """Drop the database, even when a crashed test left a connection open on it."""
        if self.backend == "postgresql":
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            self._execute(f"DROP DATABASE IF EXISTS `{name}`")

    def django_env(self, name: str) -> dict[str, str]:
        """Environment variables that point tests/django_project at database `name` on this server."""
        return {
            "OAUTHOPS_TEST_DB": self.backend,
            "OAUTHOPS_TEST_DB_NAME": name,
            "OAUTHOPS_TEST_DB_HOST": self.host,
            "OAUTHOPS_TEST_DB_PORT": str(self.port),
            "OAUTHOPS_TEST_DB_USER": self.user,
            "OAUTHOPS_TEST_DB_PASSWORD": self.password,
        }


DRIVERS = {"postgresql": "psycopg", "mysql": "MySQLdb"}


def _driver(backend: str):
    try:
        return __import__(DRIVERS[backend])
    except ImportError as error:
        raise Unavailable(f"{DRIVERS[backend]} is not importable by {sys.executable}: {error}") from error


def _reachable(server: Server) -> Server:
    """Return server if we can log in to it, else raise Unavailable with the driver's reason."""
    try:
        server.connect().close()
    except _driver(server.backend).Error as error:
        raise Unavailable(f"cannot connect to {server}: {str(error).strip()}") from error
    return server


def _from_url(backend: str, url: str) -> Server:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in URL_SCHEMES[backend] or not parts.hostname:
        raise Unavailable(f"{URL_VARIABLES[backend]}={url!r} is not a {URL_SCHEMES[backend][0]}://user@host:port/ URL")
    host, port, user = DEFAULTS[backend]
    return Server(backend, parts.hostname, parts.port or port, urllib.parse.unquote(parts.username or user),
                  urllib.parse.unquote(parts.password or ""), f"from {URL_VARIABLES[backend]}")


def _postgres_binary(name: str) -> str | None:
    """The newest installed PostgreSQL server binary; Debian keeps them off PATH."""
    installed = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    installed.sort(key=lambda path: [int(part) for part in re.findall(r"\d+", path)])
    return installed[-1] if installed else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _throwaway_postgres() -> Server:
    """Start a private PostgreSQL cluster for this process (about a second) and remove it at exit."""
    initdb = _postgres_binary("initdb")
    if not initdb:
        raise Unavailable("no initdb found on PATH or under /usr/lib/postgresql/*/bin")
    pg_ctl = os.path.join(os.path.dirname(initdb), "pg_ctl")
    workdir = tempfile.mkdtemp(prefix="oauthops-postgres-")
    data, log = os.path.join(workdir, "data"), os.path.join(workdir, "log")
    as_owner = []
    if os.geteuid() == 0:
        # initdb and postgres refuse to run as root: run them as the postgres system user.
        as_owner = ["runuser", "-u", "postgres", "--"]
        try:
            shutil.chown(workdir, "postgres")
        except LookupError as error:
            shutil.rmtree(workdir)
            raise Unavailable("running as root and there is no 'postgres' user to run initdb as") from error
    port = _free_port()
    commands = [
        [initdb, "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8"],
        [pg_ctl, "-D", data, "-l", log, "-o", f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1", "-w", "start"],
    ]
    for command in commands:
        # check=False: on failure we raise Unavailable with the output and the server log instead.
        result = subprocess.run(as_owner + command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                check=False)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            if os.path.exists(log):
                with open(log, encoding="utf-8") as log_file:
                    detail += "\n" + log_file.read().strip()
            _remove_cluster(as_owner, pg_ctl, data, workdir)
            raise Unavailable(f"throwaway cluster failed: {' '.join(command)}: {detail}")
    _throwaway.append((as_owner, pg_ctl, data, workdir))
    return Server("postgresql", "127.0.0.1", port, "postgres", "", f"throwaway cluster in {workdir}")


def _remove_cluster(as_owner: list[str], pg_ctl: str, data: str, workdir: str) -> None:
    if os.path.exists(os.path.join(data, "postmaster.pid")):
        subprocess.run(as_owner + [pg_ctl, "-D", data, "-m", "immediate", "-w", "stop"],
                       capture_output=True, stdin=subprocess.DEVNULL, check=False)  # best effort at exit
    shutil.rmtree(workdir, ignore_errors=True)


_discovered: dict[str, Server | Unavailable] = {}
_throwaway: list[tuple] = []


@atexit.register
def close() -> None:
    """Stop and remove the throwaway cluster this process started, if any (at exit, or before a session's
    check that it leaves no process behind)."""
    if _throwaway:
        _discovered.pop("postgresql", None)
    while _throwaway:
        _remove_cluster(*_throwaway.pop())


def existing(backend: str) -> Server | None:
    """The server a URL variable or the standard local port gives, if reachable; never a throwaway one."""
    try:
        return _configured(backend)
    except Unavailable:
        return None


def discover(backend: str) -> Server:
    """A reachable server for backend ("postgresql" or "mysql"); raises Unavailable if there is none.

    The answer is kept for the life of the process, so a session starts at most one throwaway cluster.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend not in _discovered:
        try:
            _discovered[backend] = _discover(backend)
        except Unavailable as unavailable:
            _discovered[backend] = unavailable
    found = _discovered[backend]
    if isinstance(found, Unavailable):
        raise found
    return found


def _configured(backend: str) -> Server:
    """Sources 1 and 2: the URL variable's server, else the standard local port's; raises Unavailable."""
    _driver(backend)  # no driver, no point in looking for (or starting) a server
    url = os.environ.get(URL_VARIABLES[backend])
    if url:
        return _reachable(_from_url(backend, url))
    host, port, user = DEFAULTS[backend]
    return _reachable(Server(backend, host, port, user, "", "standard local port"))


def _discover(backend: str) -> Server:
    try:
        return _configured(backend)
    except Unavailable as local:
        if os.environ.get(URL_VARIABLES[backend]):
            raise
        if backend != "postgresql":
            raise Unavailable(f"{local}; set {URL_VARIABLES[backend]} to use another server") from None
        try:
            return _reachable(_throwaway_postgres())
        except Unavailable as throwaway:
            raise Unavailable(f"{local}; {throwaway}; set {URL_VARIABLES[backend]} to use another server") from None


def main() -> int:
    """Report each backend and prove it works by creating and dropping a database."""
    missing = 0
    for backend in BACKENDS:
        try:
            server = discover(backend)
            name = server.create_database("selfcheck")
            server.drop_database(name)
        except Unavailable as reason:
            missing += 1
            print(f"{backend}: UNAVAILABLE: {reason}")
        else:
            print(f"{backend}: ok, {server}; created and dropped {name}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
