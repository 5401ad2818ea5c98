# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Django side's environment: the one rule of which variables hold secrets, env_file, and which
variable a failure found missing.

Used on both sides of the bridge: the Ansible side masks the `environment` option's secrets where
a module's arguments are printed and reads env_file's PYTHONPATH (django_bridge), the Django side
reads env_file into its environment, scrubs every secret from what it answers and names a variable
the settings needed and nobody set (_django_side, _django_cleanup_job). Plain Python: nothing from
Ansible or Django.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from urllib.parse import unquote

from ._django_core import OperationError

# The one rule of what an environment variable holds that is secret, for the modules (whose arguments
# show these values masked) and the scheduled job (which scrubs them from its lines). A name is secret
# when it contains one of these, in any case and anywhere (PGPASSWORD, APIKEY, DJANGO_SECRET_KEY):
SECRET_NAME_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "DSN")
# ...or when one of its words is one of these. Words are its runs of letters, split at '_', digits,
# other punctuation and camelCase humps (MYSQL_PWD, DB_PASS, REDIS_PASS2, dbPass): as substrings these
# would also mark PASSPORT_ID, COMPASS_URL, BYPASS_CACHE, PGPASSFILE (a path) or OLDPWD.
SECRET_NAME_PARTS = ("PASS", "PWD")
# Variables whose names match but that hold no secret: PWD is the shell's working directory (as a URL
# parameter, ODBC's and MySQL's PWD is a password).
NOT_SECRET_VARIABLES = ("PWD",)
NAME_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z][a-z]+|[a-z]+")
# scheme://user:password@host...: the password is everything between the first ':' after the
# scheme and the last '@' (an unencoded '/' or '@' in it is what confuses URL parsers).
URL_WITH_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:(?P<password>.+)@[^@]*$", re.DOTALL)
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://", re.DOTALL)
# A URL's query parameters (?password=..., &sslpassword=...): a parameter whose name is secret by the
# rule above holds a secret, as libpq's password and sslpassword do.
URL_PARAMETER = re.compile(r"[?&](?P<name>[^=&#?]*)=(?P<value>[^&#]*)")
# Pieces of a URL's password shorter than this are not masked on their own: masking every '42' of
# every message would garble ordinary output more than two characters of a password reveal.
SHORTEST_MASKED_PIECE = 4
MASK = "********"
ENV_FILE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# An environment file holds a few lines; what is larger is not one (a log, a dump, a wrong path).
ENV_FILE_MAX_BYTES = 1024 * 1024


def is_secret_name(name) -> bool:
    """Whether a URL parameter, or a variable (see is_secret), of this name holds a secret."""
    name = str(name)
    if any(word in name.upper() for word in SECRET_NAME_WORDS):
        return True
    return any(word.upper() in SECRET_NAME_PARTS for word in NAME_WORDS.findall(name))


def url_passwords(value: str) -> list:
    """The passwords a URL carries: in its userinfo, and in query parameters whose names are secret."""
    if not URL.match(value):
        return []
    found = []
    match = URL_WITH_PASSWORD.match(value)
    if match:
        found.append(match.group("password"))
    found.extend(
        parameter.group("value")
        for parameter in URL_PARAMETER.finditer(value)
        if parameter.group("value") and is_secret_name(unquote(parameter.group("name")))
    )
    return found


def is_secret(name, value) -> bool:
    """Whether the variable `name` set to `value` holds a secret: a secret name, or a URL with a password."""
    value = str(value)
    by_name = is_secret_name(name) and str(name).upper() not in NOT_SECRET_VARIABLES
    return bool(value) and (by_name or bool(url_passwords(value)))


def secret_values(environment: dict) -> list:
    """The values of `environment` that are secret, and the pieces of them an error may quote."""
    found = set()
    for name, value in environment.items():
        value = str(value)
        if not is_secret(name, value):
            continue
        found.add(value)
        for password in url_passwords(value):
            found.update((password, unquote(password)))
            found.update(piece for piece in re.split(r"[/?#@:]", password) if len(piece) >= SHORTEST_MASKED_PIECE)
    return sorted(found, key=len, reverse=True)


# Values under a secret name that are no secret worth a replace in every message: a number, a
# boolean word or a few characters (REFRESH_TOKEN_GRACE_SECONDS=0, TOKEN_LIMIT=1, SECRET_KEY_FALLBACK=true).
# Masking them would garble counts and words of ordinary messages; they still show masked where the
# module's arguments are printed.
PLAIN_VALUE = re.compile(r"^(\s*[-+]?[0-9.]*\s*|true|false|yes|no|on|off|none|null)$", re.IGNORECASE)


def scrub(text, secrets: list):
    """`text` with every secret replaced by a mask; longest first, so that a piece of one secret (or a
    shorter secret of another source) never splits a longer one and leaves its ends readable. Plain
    values (numbers, booleans, fewer than SHORTEST_MASKED_PIECE characters) are left alone."""
    if not isinstance(text, str):
        return text
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= SHORTEST_MASKED_PIECE and not PLAIN_VALUE.match(secret):
            text = text.replace(secret, MASK)
    return text


# What runs when os.environ[NAME] is looked up: a KeyError raised here means NAME is not set.
ENVIRON_LOOKUP = type(os.environ).__getitem__.__code__


def missing_variable(exc: BaseException):
    """The name of the environment variable whose absence caused `exc`, or None.

    That is a KeyError raised by os.environ[NAME] (or .pop(NAME)), or an error raised from or while
    handling one, as django-environ's env() raises ImproperlyConfigured from it and many settings
    modules' own helpers do; the chain is followed as Python prints it. A KeyError of any other
    mapping is not one: only its innermost frame being os.environ's lookup tells them apart.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        innermost = exc.__traceback__
        while innermost is not None and innermost.tb_next is not None:
            innermost = innermost.tb_next
        from_environ = innermost is not None and innermost.tb_frame.f_code is ENVIRON_LOOKUP
        if isinstance(exc, KeyError) and exc.args and from_environ:
            return str(exc.args[0])
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return None


def read_small_file(path: str, label: str, kind: str) -> str:
    """The UTF-8 text of the regular file `path` of at most ENV_FILE_MAX_BYTES; `label` names it in errors.

    A wrong path must fail, not hang or fill memory: /dev/zero never ends, a FIFO blocks its reader,
    and opening some devices has effects. So a path that is not a regular file is refused before it is
    opened, what was opened is checked again (fstat), so that a swap in between gains nothing, and the
    read stops one byte past the limit. Links are followed (/srv/app/.env -> shared/.env is common):
    what must be regular is the file read.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise OperationError(kind, "%s %s is not a regular file" % (label, path))
        fd = os.open(path, flags)
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise OperationError(kind, "%s %s is not a regular file" % (label, path))
            data = b""
            while opened.st_size <= ENV_FILE_MAX_BYTES and len(data) <= ENV_FILE_MAX_BYTES:
                chunk = os.read(fd, ENV_FILE_MAX_BYTES + 1 - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
    except OSError as exc:
        raise OperationError(kind, "cannot read %s %s (%s)" % (label, path, exc.strerror))
    if opened.st_size > ENV_FILE_MAX_BYTES or len(data) > ENV_FILE_MAX_BYTES:
        raise OperationError(kind, "%s %s is larger than 1 MiB" % (label, path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise OperationError(kind, "%s %s is not UTF-8 text" % (label, path))


def read_env_file(path: str) -> dict:
    """A KEY=value file as docker's env_file and systemd's EnvironmentFile hold them.

    Blank lines and lines starting with # or ; are skipped, an `export ` prefix is allowed, and a
    value wrapped in matching single or double quotes loses them. Errors name the line, never its text.
    """
    lines = read_small_file(path, "env_file", "env_file").splitlines()
    variables = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if name.startswith("export "):
            name = name[len("export "):].strip()
        if not equals or not ENV_FILE_NAME.match(name):
            raise OperationError("env_file", "env_file %s, line %d: expected NAME=value" % (path, number))
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        variables[name] = value
    return variables


def apply_env_file(path: str, keep: list) -> dict:
    """Export the variables of env_file, except those the environment option set (`keep`), which win.

    The interpreter has started already, so a PYTHONPATH of the file is added to sys.path here.
    """
    variables = read_env_file(path)
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if "DJANGO_SETTINGS_MODULE" in variables and settings_module and "DJANGO_SETTINGS_MODULE" not in keep:
        if variables["DJANGO_SETTINGS_MODULE"] != settings_module:
            raise OperationError(
                "env_file",
                "env_file %s sets DJANGO_SETTINGS_MODULE=%s, but the settings option says %s: give one of them"
                % (path, variables["DJANGO_SETTINGS_MODULE"], settings_module),
            )
    for name, value in variables.items():
        if name == "PYTHONPATH":
            sys.path.extend(entry for entry in value.split(os.pathsep) if entry and entry not in sys.path)
        elif name not in keep:
            os.environ[name] = value
    return variables
