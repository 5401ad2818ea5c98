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
    type: str
    default: default
  environment:
    description:
      - Extra environment variables for the Django side, for example a C(DATABASE_URL) that the settings read.
      - Values may be secrets; they are passed in the environment, never on a command line, and never logged.
    type: dict
    default: {}
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
requirements:
  - On the managed host, the interpreter chosen with O(virtualenv) or O(python) (or Ansible's own) must import
    Django and django-oauth-toolkit (C(oauth2_provider)) and the project's settings.
"""
