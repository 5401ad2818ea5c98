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
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import inspect
import json
import os
import sys

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.oauthops.toolkit.plugins.module_utils import (
    _django_application_set,
    _django_applications,
    _django_cleanup,
    _django_cleanup_rules,
    _django_side,
)

SIDE_PACKAGE = "oauthops_django_side"
SIDE_MODULES = (_django_side, _django_applications, _django_application_set, _django_cleanup, _django_cleanup_rules)
# `python -c` puts its working directory, the project, first on sys.path; the shipped package goes
# before it, so that nothing of that name in the project can stand in for it.
BOOTSTRAP = "import sys; sys.path.insert(0, %r); from " + SIDE_PACKAGE + "._django_side import main; main()"


def django_argument_spec():
    """Options every module of the collection shares (doc fragment: oauthops.toolkit.django)."""
    return dict(
        project_path=dict(type="path"),
        settings=dict(type="str"),
        virtualenv=dict(type="path"),
        python=dict(type="path"),
        pythonpath=dict(type="list", elements="path", default=[]),
        database=dict(type="str", default="default"),
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
        (name, MASKED_VALUE if _django_side.is_secret(name, value) else value) for name, value in environment.items()
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
        secrets = _django_side.secret_values(environment) if isinstance(environment, dict) else []
        msg = _django_side.scrub(msg, secrets)
        if "stderr" in kwargs:
            kwargs["stderr"] = _django_side.scrub(kwargs["stderr"], secrets)
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
        return python

    def environment(self):
        extra = dict((str(key), str(value)) for key, value in self.params["environment"].items())
        for name, option in BRIDGE_VARIABLES.items():
            if name in extra and self.params[option] and extra[name] != self.params[option]:
                self.module.fail_json(
                    msg="environment sets %s=%s, but the %s option says %s: give one of them"
                    % (name, extra[name], option, self.params[option])
                )
        # The shipped package's directory first, then the task's paths, then the host's.
        paths = [self.module.tmpdir] + list(self.params["pythonpath"])
        paths += [extra.pop("PYTHONPATH", ""), os.environ.get("PYTHONPATH", "")]
        env = {"PYTHONPATH": os.pathsep.join(path for path in paths if path), "PYTHONUNBUFFERED": "1"}
        if self.params["settings"]:
            env["DJANGO_SETTINGS_MODULE"] = self.params["settings"]
        if self.params["virtualenv"]:
            env["VIRTUAL_ENV"] = self.params["virtualenv"]
        env.update(extra)
        return env

    def call(self, op, params):
        """Run `op` on the Django side; return its result or fail the task."""
        project_path = self.params["project_path"]
        if project_path and not os.path.isdir(project_path):
            self.module.fail_json(msg="project_path %s is not a directory" % project_path)
        python = self.interpreter()
        write_side_package(self.module.tmpdir)
        request = {
            "op": op,
            "params": params,
            "check_mode": self.module.check_mode,
            "database": self.params["database"],
            "env_file": self.params["env_file"],
            "environment_keys": sorted(str(key) for key in self.params["environment"]),
        }
        rc, out, err = self.module.run_command(
            [python, "-c", BOOTSTRAP % self.module.tmpdir],
            data=json.dumps(request),
            cwd=project_path or None,
            environ_update=self.environment(),
        )
        try:
            response = json.loads(out)
        except ValueError:
            last_line = (err.strip().splitlines() or ["no output"])[-1]
            self.module.fail_json(
                msg="the Django side did not answer under %s (rc %s): %s" % (python, rc, last_line),
                stderr=err,
                rc=rc,
            )
        if not response.get("ok"):
            error = response.get("error") or {}
            details = dict(error_kind=error.get("kind"), field_errors=error.get("fields") or {})
            if error.get("traceback"):
                details["django_traceback"] = error["traceback"]
            self.module.fail_json(msg=error.get("message") or "the Django side failed", **details)
        result = response["result"]
        for warning in result.pop("warnings", []):
            self.module.warn(warning)
        return result
