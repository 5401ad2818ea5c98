# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of oauth_application_info: runs the module, then answers `query` with JMESPath.

The expression is evaluated here, not in the module, so that jmespath is needed on the controller
(where Ansible users already have it, for json_query) and never on a managed host. It is compiled
before the module runs: a typo fails the task without touching the host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash

try:
    import jmespath
except ImportError:
    jmespath = None

MISSING_JMESPATH = (
    "the query option needs the jmespath Python library on the controller, for the Python that runs "
    "ansible-playbook (pip install jmespath)"
)


class QueryError(Exception):
    """One line for the task's msg."""


def one_line(exc):
    return " ".join(str(exc).split())


def quoted(expression):
    """The expression on one line, in double quotes whatever quotes it holds itself."""
    return json.dumps(expression, ensure_ascii=False)


def compile_query(expression):
    """The compiled expression, or QueryError with the one line that says why it is not one."""
    if jmespath is None:
        raise QueryError(MISSING_JMESPATH)
    try:
        return jmespath.compile(expression)
    except jmespath.exceptions.LexerError as exc:
        reason = "%s at column %s" % (exc.message, exc.lexer_position)
    except jmespath.exceptions.IncompleteExpressionError:
        reason = "incomplete expression"
    except jmespath.exceptions.ArityError as exc:
        reason = one_line(exc)
    except jmespath.exceptions.ParseError as exc:
        # str(exc) draws the expression over several lines; its parts make one.
        reason = "%s: unexpected %s %r at column %s" % (exc.msg, exc.token_type.lower(), exc.token_value, exc.lex_position)
    except jmespath.exceptions.JMESPathError as exc:
        reason = one_line(exc)
    raise QueryError("query %s is not a valid JMESPath expression: %s" % (quoted(expression), reason))


def plain(value):
    """`value` in plain JSON types. JMESPath checks a function's arguments by their types' exact names, and
    ansible-core 2.18 hands module results back as AnsibleUnsafeText: starts_with() would refuse every string."""
    return json.loads(json.dumps(value))


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp  # tmp no longer has any effect
        expression = self._task.args.get("query")
        compiled = None
        if expression is not None:
            if not isinstance(expression, str):
                return merge_hash(result, dict(failed=True, msg="query must be a string (a JMESPath expression)"))
            try:
                compiled = compile_query(str(expression))
            except QueryError as exc:
                return merge_hash(result, dict(failed=True, msg=str(exc)))

        result = merge_hash(result, self._execute_module(task_vars=task_vars))
        self._remove_tmp_path(self._connection._shell.tmpdir)
        if compiled is None or result.get("failed"):
            return result
        try:
            result["query_result"] = compiled.search(plain(result["applications"]))
        except jmespath.exceptions.JMESPathError as exc:
            result.update(failed=True, msg="query %s failed: %s" % (quoted(str(expression)), one_line(exc)))
        return result
