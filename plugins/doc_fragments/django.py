# -*- coding: utf-8 -*-
# Copyright: oauthops.toolkit contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  project_path:
    description:
      - Directory of the Django project (the one holding C(manage.py)).
      - The Django side runs with this as its working directory and first entry of C(sys.path).
      - A directory without C(manage.py) is accepted (a project installed as a package may have none); when the
        settings module is then not found, the error says that this directory has no C(manage.py).
    type: path
  settings:
    description:
      - Dotted path of the settings module, exported as E(DJANGO_SETTINGS_MODULE).
      - Required unless O(environment) sets E(DJANGO_SETTINGS_MODULE) or the host environment does.
    type: str
  virtualenv:
    description:
      - Virtual environment of the project; the Django side runs with its C(bin/python).
      - Mutually exclusive with O(python). Without both, the module's own interpreter is used.
    type: path
  python:
    description:
      - Python interpreter that can import Django, django-oauth-toolkit and the project.
      - Mutually exclusive with O(virtualenv).
    type: path
  pythonpath:
    description:
      - Extra directories put on the Django side's E(PYTHONPATH), after O(project_path).
    type: list
    elements: path
    default: []
  database:
    description:
      - Alias in the project's C(DATABASES) to work on.
      - Left out, the module works where the project's C(DATABASE_ROUTERS) send the models it touches, which is
        where DOT's own code goes. For the application modules that is the application model's database (for
        reading in M(oauthops.toolkit.oauth_application_info), for writing in the others); for
        M(oauthops.toolkit.oauth_token_cleanup) it is the database of DOT's token and grant models, which must be
        one. Without routers it is V(default). An application's owner is looked up where the routers send the
        user model, with the application as hint, as Django does when DOT reads it.
      - Given, it wins; the task warns when the routers send those models elsewhere, naming both.
      - The result's RV(database) says which alias the module worked on. The pre-flight check looks there for the
        migrations and the tables, and names the C(manage.py migrate --database ALIAS) to run.
    type: str
  environment:
    description:
      - Extra environment variables for the Django side, for example C(DJANGO_DEBUG) or a C(DATABASE_URL) that the
        settings read. They win over O(env_file).
      - Values are shown like any option's, and no value ever alters what the module returns; counts, booleans
        and messages are the same whatever the variables are named or hold.
      - Secret values (see below) are masked where the module's arguments are shown (the invocation line logged
        to syslog or the journal, and C(invocation.module_args) at C(-vvv)), and scrubbed from error
        messages relayed from Django, the settings or the database driver. Unlike C(no_log), the rest of the
        result is left as it is, so that a secret-named V(1) or V(true) cannot garble a count or a boolean.
      - A secret is the value of a variable whose name contains C(PASSWORD), C(PASSWD), C(SECRET), C(TOKEN),
        C(KEY), C(CREDENTIAL) or C(DSN) in any case, anywhere (C(PGPASSWORD), C(DJANGO_SECRET_KEY)), or has
        C(PASS) or C(PWD) as one of its words, split at C(_), digits, other punctuation and camelCase humps
        (C(DB_PASS), C(MYSQL_PWD), C(dbPass); not C(PASSPORT_ID), C(COMPASS_URL), C(PGPASSFILE), nor the shell's
        C(PWD)). A URL that carries a password is secret under any name, in its user part
        (C(postgres://user:pw@host/db)) or in a query parameter whose name is secret by the same rule
        (C(?password=), C(?sslpassword=)). Of a URL, the whole URL, the password and its pieces of 4 characters
        or more are masked.
      - Values reach the Django side in its environment, never on a command line.
      - E(PYTHONPATH) is added after the module's own paths and O(pythonpath); E(DJANGO_SETTINGS_MODULE) and
        E(VIRTUAL_ENV) must agree with O(settings) and O(virtualenv) when those are given.
      - Secrets that need not pass through Ansible at all belong in O(env_file).
    type: dict
    default: {}
  env_file:
    version_added: 0.2.0
    description:
      - A file on the managed host with C(NAME=value) lines, the format of docker's C(env_file) and systemd's
        C(EnvironmentFile), which the Django side reads itself before it loads the settings. Its values never
        pass through Ansible; those under secret names (see O(environment)) are scrubbed from every message.
      - Blank lines and lines starting with C(#) or C(;) are skipped, an C(export) prefix is allowed, and a value
        in matching quotes loses them. O(environment) wins over the file for a variable both set; a
        E(PYTHONPATH) of the file is added to C(sys.path).
      - Only a regular file of at most 1 MiB is read (a link to one is fine). Anything else fails the task before
        the settings load, in one line such as C(env_file /dev/zero is not a regular file) or
        C(env_file /srv/app/.env is larger than 1 MiB).
      - It must be readable by the user the Django side runs as (see C(become_user), and the notes for a module
        run as root). Under root, a file another user can change is never read as root.
    type: path
attributes:
  action_group:
    description: Part of the action group C(oauthops.toolkit.django), to set the shared options once with C(module_defaults).
    support: full
    membership:
      - oauthops.toolkit.django
notes:
  - The module starts the project's Python once per task and talks to it over stdin and stdout;
    nothing is passed on a command line.
  - All options of this fragment can be set once for every module of the collection with
    C(module_defaults) and the action group C(group/oauthops.toolkit.django).
  - Run as root, the module first works out who else can change what the Django side would load, since all of it
    is code, settings included. That is the interpreter, the virtualenv and what its C(.pth) files add,
    O(project_path), O(pythonpath), the E(PYTHONPATH) of O(environment) and of the host, O(env_file) and the
    E(PYTHONPATH) it sets, with every file and link in them and every directory above them. Owners, group and
    world write bits and POSIX ACLs count; a group counts as its members.
  - When nobody but root can change any of it, the Django side runs as root. When exactly one other user can
    (the project's owner, say), it runs as that user, with privileges dropped before the project's interpreter
    starts; RV(django_user) names that user, who must be able to run the interpreter and read O(env_file), and a
    warning names it with the fix (C(become_user) of that user, which also skips the check).
    When more users can (two owners, a group of several members, a directory everyone may write), the task
    fails and names the paths. The fix is to give the files to one user and run the task as that user
    (C(become_user)), as the README's section on running as the application user describes.
  - A failure is one line in C(msg). A settings module that fails to import names what is missing (an environment
    variable, with O(environment) and O(env_file) as the fix; a package the interpreter lacks; the module itself)
    and the line of the settings that needed it. The Django side's traceback, when there is one, is returned as
    C(django_traceback) at C(-vvv) only.
requirements:
  - On the managed host, the interpreter chosen with O(virtualenv) or O(python) (or Ansible's own) must import
    Django and django-oauth-toolkit (C(oauth2_provider)) and the project's settings.
"""
