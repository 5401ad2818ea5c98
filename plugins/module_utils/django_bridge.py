# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible side of the bridge to a Django project.

The module runs under Ansible's interpreter, which usually cannot import the
project. `DjangoBridge.call()` writes the Django side (the `_django_*` files of
this directory) into a package in the module's temporary directory, starts the
project's Python on it, sends one JSON request on stdin (so secrets never reach
the process list) and turns the JSON answer into a result or one readable
`fail_json`.

Under root it first finds out who else can change what that Python would load
(_code_trust): nobody, and it runs as root; exactly one user, and it runs as
that user, privileges dropped before the project's interpreter starts; anyone
more, and the task is refused.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import inspect
import json
import os
import pwd
import shutil
import sys
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.oauthops.toolkit.plugins.module_utils import (
    _code_trust,
    _django_application_set,
    _django_applications,
    _django_cleanup,
    _django_cleanup_job,
    _django_cleanup_rules,
    _django_core,
    _django_database,
    _django_env,
    _django_migrations,
    _django_revoke,
    _django_secrets,
    _django_side,
)

SIDE_PACKAGE = "oauthops_django_side"
# The Django side is every plugins/module_utils/_django_*.py file: what the bridge ships on each run,
# what the token_cleanup role copies (by that glob) and what the unit tests import. They are imported
# above so that AnsiballZ packs them. By floor, bottom up: a file imports only files of lower floors,
# and nothing of Ansible or of this file. tests/unit/test_side_layout.py checks the set and the floors.
SIDE_FLOORS = (
    (_django_core, _django_cleanup_rules),  # OperationError, Context; which rows DOT's clear_expired() deletes
    # environment, env_file, the one secret rule; the pre-flight migrations check; client secrets hashed in a pool
    (_django_env, _django_migrations, _django_secrets),
    (_django_database,),  # which alias an operation works on: the one given, else the routers' choice
    (_django_cleanup,),  # oauth_token_cleanup's engine: batches, set-based deletes, the lock
    (_django_revoke,),  # oauth_token_revoke: DOT's revoke() of what a selection names, on the cleanup's engine
    (_django_applications,),  # oauth_application(_info), whose revoke_tokens revokes as oauth_token_revoke does
    (_django_application_set,),  # oauth_applications: oauth_application's plan for a whole set
    (_django_side,),  # the modules' entry point: read the request, set Django up, OPERATIONS, answer
    (_django_cleanup_job,),  # the scheduled job's entry point, which the role's cron line runs
)
SIDE_MODULES = tuple(module for floor in SIDE_FLOORS for module in floor)
# `python -c` puts its working directory, the project, first on sys.path; the shipped package goes
# before it, so that nothing of that name in the project can stand in for it.
BOOTSTRAP = "import sys; sys.path.insert(0, %r); from " + SIDE_PACKAGE + "._django_side import main; main()"
# Run by the module's own interpreter in isolated mode (-I: no PYTHON* variables, no user site, not
# its working directory on sys.path), so that nothing of the project runs before the privileges are
# dropped: argv is the uid, then the project's interpreter and its arguments. The environment, stdin
# and the working directory pass through execve; a failure answers as the Django side would.
DROP_PRIVILEGES = """
import json, os, pwd, sys
user = pwd.getpwuid(int(sys.argv[1]))
os.initgroups(user.pw_name, user.pw_gid)
os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
if os.getresuid() != (user.pw_uid,) * 3 or os.getresgid() != (user.pw_gid,) * 3:
    raise SystemExit("could not become %s" % user.pw_name)
env = dict(os.environ, HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
try:
    os.execve(sys.argv[2], sys.argv[2:], env)
except OSError as exc:
    message = "%s cannot start %s (%s)" % (user.pw_name, sys.argv[2], exc.strerror)
    json.dump({"ok": False, "error": {"kind": "run_as", "message": message}}, sys.stdout)
"""


def django_argument_spec():
    """Options every module of the collection shares (doc fragment: oauthops.toolkit.django)."""
    return dict(
        project_path=dict(type="path"),
        settings=dict(type="str"),
        virtualenv=dict(type="path"),
        python=dict(type="path"),
        pythonpath=dict(type="list", elements="path", default=[]),
        database=dict(type="str"),
        # Not no_log: Ansible would mask every occurrence of every value in every result (a "0" turns
        # every count into a mask). DjangoModule masks the secret values where the arguments are printed.
        environment=dict(type="dict", default={}, no_log=False),
        env_file=dict(type="path"),
    )


DJANGO_MUTUALLY_EXCLUSIVE = [("virtualenv", "python")]


# Variables the bridge itself sets for the Django side; PYTHONPATH is merged instead.
BRIDGE_VARIABLES = {"DJANGO_SETTINGS_MODULE": "settings", "VIRTUAL_ENV": "virtualenv"}


# How Ansible shows a no_log value in module arguments; the environment's secrets look the same.
MASKED_VALUE = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def shown_params(params):
    """The module's arguments as they are printed: the secret values of `environment` masked."""
    environment = params.get("environment")
    if not isinstance(environment, dict):
        return params
    shown = dict(params)
    shown["environment"] = dict(
        (name, MASKED_VALUE if _django_env.is_secret(name, value) else value) for name, value in environment.items()
    )
    return shown


class DjangoModule(AnsibleModule):
    """AnsibleModule that masks the secret values of the `environment` option where its arguments are printed.

    Neither no_log on the option nor its secret values in no_log_values: Ansible would then mask every
    occurrence of them in all the module returns, and a TOKEN_LIMIT of "1" turns every count holding a 1
    into a mask. The arguments are printed in two places, both masked here: the invocation line logged
    to the journal or syslog, and `invocation.module_args` (shown at -vvv). Failure text relayed from the
    Django side's process (msg, stderr) is scrubbed of the secrets, as the Django side scrubs its own.
    """

    def _log_invocation(self):
        self._forget_blank_no_log_values()
        params = self.params
        self.params = shown_params(params)
        try:
            super(DjangoModule, self)._log_invocation()
        finally:
            self.params = params

    def _return_formatted(self, kwargs):
        self._forget_blank_no_log_values()
        # ansible-core 2.18 returns the invocation always, 2.19 and later when the controller asks for it;
        # both keep an invocation the module gives.
        kwargs.setdefault("invocation", {"module_args": shown_params(getattr(self, "params", None) or {})})
        super(DjangoModule, self)._return_formatted(kwargs)

    def fail_json(self, msg, **kwargs):
        environment = (getattr(self, "params", None) or {}).get("environment")
        secrets = _django_env.secret_values(environment) if isinstance(environment, dict) else []
        msg = _django_env.scrub(msg, secrets)
        if "stderr" in kwargs:
            kwargs["stderr"] = _django_env.scrub(kwargs["stderr"], secrets)
        super(DjangoModule, self).fail_json(msg=msg, **kwargs)

    def _forget_blank_no_log_values(self):
        """A client_secret of whitespace is refused, not kept: as a no_log value, Ansible would mask every
        space or line break of the refusal and of everything else the module prints."""
        self.no_log_values = set(value for value in self.no_log_values if value.strip())


def write_side_package(directory):
    """Write the Django side as an importable package below `directory`."""
    package = os.path.join(directory, SIDE_PACKAGE)
    if not os.path.isdir(package):
        os.makedirs(package)
    with open(os.path.join(package, "__init__.py"), "w") as handle:
        handle.write("")
    for side_module in SIDE_MODULES:
        name = side_module.__name__.rpartition(".")[2] + ".py"
        with open(os.path.join(package, name), "w") as handle:
            handle.write(inspect.getsource(side_module))
    return package


def readable_side_package():
    """The Django side in a fresh directory of root's that the user it runs as can read, not change
    (the module's own temporary directory is root's alone); None when another user could change the
    way to it (a TMPDIR of theirs). The caller removes it."""
    directory = tempfile.mkdtemp(prefix="oauthops-django-side-")
    package = write_side_package(directory)
    for path in (directory, package):
        os.chmod(path, 0o755)
    for name in os.listdir(package):
        os.chmod(os.path.join(package, name), 0o644)
    if not _code_trust.CodeControllers().add_tree(directory):
        shutil.rmtree(directory)
        return None
    return directory


class RunAs:
    """The user the Django side runs as, and why (under root)."""

    def __init__(self, entry, reason):
        self.entry = entry
        self.reason = reason


class DjangoBridge:
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def interpreter(self):
        if self.params["python"]:
            python = self.params["python"]
        elif self.params["virtualenv"]:
            python = os.path.join(self.params["virtualenv"], "bin", "python")
        else:
            return sys.executable
        if not os.access(python, os.X_OK):
            self.module.fail_json(msg="python interpreter %s does not exist or is not executable" % python)
        # Root checks the interpreter it starts: the one path, whatever the working directory.
        return os.path.abspath(python) if os.geteuid() == 0 else python

    def environment(self, side_directory, run_as=None):
        extra = dict((str(key), str(value)) for key, value in self.params["environment"].items())
        for name, option in BRIDGE_VARIABLES.items():
            if name in extra and self.params[option] and extra[name] != self.params[option]:
                self.module.fail_json(
                    msg="environment sets %s=%s, but the %s option says %s: give one of them"
                    % (name, extra[name], option, self.params[option])
                )
        # The shipped package's directory first, then the task's paths, then the host's.
        paths = [side_directory] + list(self.params["pythonpath"])
        paths += [extra.pop("PYTHONPATH", ""), os.environ.get("PYTHONPATH", "")]
        env = {"PYTHONPATH": os.pathsep.join(path for path in paths if path), "PYTHONUNBUFFERED": "1"}
        if run_as:
            env["PYTHONDONTWRITEBYTECODE"] = "1"  # the shipped package's directory is not its to write
        if self.params["settings"]:
            env["DJANGO_SETTINGS_MODULE"] = self.params["settings"]
        if self.params["virtualenv"]:
            env["VIRTUAL_ENV"] = self.params["virtualenv"]
        env.update(extra)
        return env

    def run_as(self, python):
        """Under root, who the Django side must run as: None for root itself, when nobody else can
        change what it would load; else the one user who can (a RunAs). Refuses every other case.

        What it would load: the interpreter, the virtualenv (with what its .pth files add),
        project_path, pythonpath, what its environment points Python and the loader at (PYTHONPATH of
        environment and of the host, PYTHONHOME, LD_LIBRARY_PATH, LD_PRELOAD, the user site-packages
        of HOME outside a virtualenv), env_file and, when only root can change env_file, the
        PYTHONPATH it sets (never read otherwise)."""
        controllers = _code_trust.CodeControllers()
        workdir = os.path.abspath(self.params["project_path"]) if self.params["project_path"] else None
        trees = [workdir] if workdir else []
        controllers.add_file(python)
        environment = dict((str(key), str(value)) for key, value in self.params["environment"].items())
        child_environment = dict(os.environ, **environment)
        virtualenv = self.params["virtualenv"] or _code_trust.virtualenv_of(python)
        if virtualenv:
            virtualenv = os.path.abspath(virtualenv)
            if controllers.add_tree(virtualenv):
                trees += _code_trust.site_paths(virtualenv)
                if _code_trust.includes_system_site(virtualenv):
                    trees += _code_trust.user_site_paths(controllers, child_environment)
        else:
            trees += _code_trust.user_site_paths(controllers, child_environment)
        trees += list(self.params["pythonpath"])
        trees += (environment.get("PYTHONPATH", "") + os.pathsep + os.environ.get("PYTHONPATH", "")).split(os.pathsep)
        trees += _code_trust.loader_paths(child_environment)
        env_file = self.params["env_file"]
        if env_file and (os.path.isabs(env_file) or workdir):
            env_file = os.path.join(workdir or "/", env_file)
            if os.path.exists(env_file) and not os.path.isfile(env_file):
                # Refused before its owners count: a device or FIFO (/dev/zero) is nobody's code to drop to.
                self.module.fail_json(msg="env_file %s is not a regular file" % self.params["env_file"])
            if controllers.add_file(env_file):
                try:
                    trees += _django_env.read_env_file(env_file).get("PYTHONPATH", "").split(os.pathsep)
                except _django_core.OperationError:
                    pass  # the Django side reads it again and says what is wrong with it
        for tree in trees:
            # A relative entry is relative to the Django side's working directory: project_path, or
            # without it a directory of the bridge's own, where nothing else is.
            if tree and (os.path.isabs(tree) or workdir):
                controllers.add_tree(os.path.join(workdir or "/", tree))
        if controllers.shared or len(controllers.users) > 1:
            reasons = list(controllers.users.values()) + controllers.shared
            suggested = pwd_name(next(iter(controllers.users), None)) or "the user who should own it"
            self.module.fail_json(
                msg="refusing to run the Django side as root: more than one user can change what it would load "
                "(%s); make one user (or root) the only one who can change the project, its virtualenv, pythonpath "
                "and env_file, and run the task as that user (become_user: %s)" % ("; ".join(reasons), suggested)
            )
        if not controllers.users:
            return None
        uid, reason = list(controllers.users.items())[0]
        try:
            return RunAs(pwd.getpwuid(uid), reason)
        except KeyError:
            self.module.fail_json(
                msg="refusing to run the Django side as root: %s, and no user has that uid to run it as; give it to "
                "the project's user (chown) and run the task as that user (become_user)" % reason
            )

    def call(self, op, params):
        """Run `op` on the Django side; return its result or fail the task."""
        project_path = self.params["project_path"]
        if project_path and not os.path.isdir(project_path):
            self.module.fail_json(msg="project_path %s is not a directory" % project_path)
        python = self.interpreter()
        is_root = os.geteuid() == 0
        run_as = self.run_as(python) if is_root else None
        django_user = run_as.entry.pw_name if run_as else pwd_name(os.geteuid())
        if run_as:
            # Said before the run, so that a failure (an env_file root could read and this user cannot) shows it too.
            self.module.warn(
                "the Django side runs as %s, not as root: %s is the only user besides root who can change what it "
                "loads (%s); set become_user: %s on the task, which also skips root's check of every file it loads"
                % (django_user, django_user, run_as.reason, django_user)
            )
            side_directory = readable_side_package()
            if side_directory is None:
                self.module.fail_json(
                    msg="the temporary directory %s is not root's alone: point TMPDIR at a directory only root can "
                    "change" % tempfile.gettempdir()
                )
            command = [sys.executable, "-I", "-c", DROP_PRIVILEGES, str(run_as.entry.pw_uid), python]
        else:
            side_directory = self.module.tmpdir
            write_side_package(side_directory)
            command = [python]
        request = {
            "op": op,
            "params": params,
            "check_mode": self.module.check_mode,
            # Ansible's _ansible_no_log: the task's no_log (or no_target_syslog, which it cannot tell apart).
            "no_log": self.module.no_log,
            "database": self.params["database"],
            "project_path": project_path,
            "env_file": self.params["env_file"],
            "environment_keys": sorted(str(key) for key in self.params["environment"]),
        }
        try:
            rc, out, err = self.module.run_command(
                command + ["-c", BOOTSTRAP % side_directory],
                data=json.dumps(request),
                # Under root, without project_path, not the module's working directory (the login user's,
                # say) but the shipped package's: python -c puts its working directory on sys.path.
                cwd=project_path or (side_directory if is_root else None),
                environ_update=self.environment(side_directory, run_as),
                expand_user_and_vars=False,
            )
        finally:
            if run_as:
                shutil.rmtree(side_directory, ignore_errors=True)
        try:
            response = json.loads(out)
        except ValueError:
            last_line = (err.strip().splitlines() or ["no output"])[-1]
            self.module.fail_json(
                msg="the Django side did not answer under %s (rc %s): %s" % (python, rc, last_line),
                stderr=err,
                rc=rc,
                django_user=django_user,
            )
        if not response.get("ok"):
            error = response.get("error") or {}
            details = dict(error_kind=error.get("kind"), field_errors=error.get("fields") or {}, django_user=django_user)
            # Ansible prints every key of a failed result: the traceback would drown the one-line msg.
            if error.get("traceback") and self.module._verbosity >= 3:
                details["django_traceback"] = error["traceback"]
            message = error.get("message") or "the Django side failed"
            if error.get("kind") == "run_as":
                message += ": point virtualenv or python at an interpreter %s can run" % django_user
            self.module.fail_json(msg=message, **details)
        result = response["result"]
        for warning in result.pop("warnings", []):
            self.module.warn(warning)
        result["django_user"] = django_user
        return result


def pwd_name(uid):
    """The name of user `uid`, or None."""
    try:
        return pwd.getpwuid(uid).pw_name if uid is not None else None
    except KeyError:
        return None
