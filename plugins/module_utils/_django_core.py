# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every file of the Django side shares: the error a user can act on, and an operation's context.

The bottom floor of the Django side: it imports no other file of it, nothing from Ansible, and
nothing from Django, so every other file can import it (tests/unit/test_side_layout.py keeps it so).
"""

from __future__ import annotations


class OperationError(Exception):
    """A failure the user can act on; `kind` lets the Ansible side word it.

    Raised `from` the exception it explains (a settings module's KeyError, say), it keeps that
    exception's traceback for readers who ask for it (the modules' django_traceback at -vvv).
    """

    def __init__(self, kind: str, message: str, fields: dict | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.fields = fields or {}


class Context:
    """What every operation needs besides its parameters."""

    def __init__(self, database: str | None, check_mode: bool, no_log: bool = False) -> None:
        # The alias the task gave (None: follow the project's routers), and the one the operation
        # works on once it has chosen (_django_database.choose_database).
        self.requested = database
        self.database = database
        self.check_mode = check_mode
        # Whether Ansible keeps the task's result out of its output (the task is no_log): only then
        # may a result carry a secret the module generated.
        self.no_log = no_log
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def first_line(text) -> str:
    """The first line of a message, which is all a one-line answer can hold."""
    return (str(text).strip().splitlines() or [""])[0]


def database_error_message(exc: Exception) -> str:
    """One line for a database error: its type and the first line of its text."""
    return "database error (%s): %s" % (type(exc).__name__, first_line(exc) or type(exc).__name__)
