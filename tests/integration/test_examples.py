"""Docs are tests: every example a user can copy runs here, through ansible-playbook, against tests/django_project.

The examples: each module's EXAMPLES, every ```yaml block of README.md and of the roles' README.md, and the
example in each role's meta/argument_specs.yml (what `ansible-doc -t role` shows). They run as written, except for
the placeholders SUBSTITUTIONS and EXTRA_VARS fill (CONTRIBUTING.md lists them for authors), in the order the
documents give them, on one SQLite database per set of project settings (so a later example may use what an
earlier one declared, as a reader following the page would).

Three marks, written in the docs themselves where a reader sees them:
- `# Needs a project setting: TEXT` (a YAML comment) runs the top-level task or play it is in, and the unmarked ones
  after it (they may use what it registered), on a project with that setting; NEEDS says which test-project
  variables give it. Examples before any mark run on the plain project.
- `# Not run by the tests: REASON` (a YAML comment), or in Markdown `<!-- not run by the tests: REASON -->` on the
  line before the block: an example CI cannot run; the test reports it as skipped with the reason.
- A block whose first line is `# group_vars/NAME.yml` (or `host_vars/`) is an inventory file: the playbooks after it
  in the same section of the document run with it.

A block that is none of these and not a playbook or a list of tasks (a fragment) fails the test: mark it, or make it
a whole example.
"""

import ast
import grp
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from cronjobs import host_root
from provisioning import DJANGO_PROJECT, REPO, migrate

# Placeholders in the examples and what the tests put in their place (the replacement's {names} are filled per
# run: see Setting). CONTRIBUTING.md's "Doc examples" lists them for authors (test_the_substitutions_are_documented).
SUBSTITUTIONS = [
    # (the placeholder as CONTRIBUTING.md names it, regular expression, replacement)
    ("/srv/shop/venv", r"/srv/shop/venv\b", "{venv}"),  # the project's virtualenv, one the job's user can run too
    ("/srv/shop/.env", r"/srv/shop/\.env\b", "{env_file}"),  # an env_file with the test database's variables
    ("/srv/shop", r"/srv/shop\b", "{project_path}"),  # tests/django_project
    ("shop.settings.production", r"\bshop\.settings\.production\b", "testproject.settings"),
    ("/var/lib/shop-jobs", r"/var/lib/shop-jobs\b", "{host_root}/lib/shop-jobs"),  # root's directories: stand-ins
    ("/var/log/shop-jobs.log", r"/var/log/shop-jobs\.log\b", "{host_root}/log/shop-jobs.log"),
    ("user: shop", r"(?m)^(\s*(?:- )?)(user|owner|token_cleanup_user): shop\b", r"\1\2: {app_user}"),  # system user
    ("group: shop", r"(?m)^(\s*)group: shop\b", r"\1group: {app_group}"),  # and its group
    # The tests already run as the project's owner: a become to it, or to root, is dropped.
    ("become", r"(?m)^\s*(ansible_)?become(_user)?: .*\n", ""),
]
# Variables the examples take from the vault or the inventory (extra vars; the role's paths go to a scratch tree
# of stand-ins for /etc/cron.d, /var/lib and /var/log, as in test_roles.py).
EXTRA_VARS = {
    "vault_shop_web_client_secret": "examples-shop-web-S3cret",
    "vault_reports_client_secret": "examples-reports-S3cret",
    "vault_shop_database_url": "sqlite://{database}",  # the test project reads it where no OAUTHOPS_TEST_DB is set
    "shop_environment": {"DJANGO_SECRET_KEY": "examples-not-a-secret-key"},
    "shop_oauth_clients": [
        {"client_id": "shop-web", "client_type": "confidential", "authorization_grant_type": "authorization-code",
         "redirect_uris": ["https://shop.example.com/oauth/callback"], "client_secret": "examples-shop-web-S3cret"},
    ],
    "token_cleanup_cron_file": "{host_root}/cron.d/oauthops-token-cleanup",
    "token_cleanup_directory": "{host_root}/lib/oauthops-token-cleanup",
    "token_cleanup_log_file": "{host_root}/log/oauthops-token-cleanup.log",
    "token_cleanup_systemd_unit_directory": "{host_root}/systemd/etc/systemd/system",
    "token_cleanup_logrotate_directory": "{host_root}/logrotate.d",
}
# A Markdown page's lists of tasks assume what its first examples show: the shared options set once, with the action
# group's module_defaults. (A module's EXAMPLES give them in every example: users copy those one by one.)
SHARED_DEFAULTS = """\
  module_defaults:
    group/oauthops.toolkit.django:
      project_path: /srv/shop
      virtualenv: /srv/shop/venv
      settings: shop.settings.production
"""
# The owners the examples name, created in each database before the first example (pk 12 for `user: 12`).
OWNERS = ["admin", "alice"]
OWNER_BY_PK = 12
# A project setting an example says it needs -> the test project's variables that give it
# (tests/django_project/testproject/settings.py).
NEEDS = {
    'OAUTH2_PROVIDER["ALLOWED_REDIRECT_URI_SCHEMES"] = ["https", "com.example.shop"]':
        {"OAUTHOPS_TEST_REDIRECT_SCHEMES": "https,com.example.shop"},
    "OAUTH2_PROVIDER_APPLICATION_MODEL, a model of the project's own with a partner_code field":
        {"OAUTHOPS_TEST_SWAPPED_APPLICATION": "1"},
    # {directory}: the example's database directory. Both databases are migrated, as the routers want.
    "DATABASE_ROUTERS that keep oauth2_provider on a database of its own, 'oauth'":
        {"OAUTHOPS_TEST_OAUTH_DB_NAME": "{directory}/oauth.sqlite3"},
}
NEEDS_MARK = re.compile(r"#\s*Needs a project setting:\s*(?P<setting>.+?)\s*$", re.M)
SKIP_MARK = re.compile(r"#\s*Not run by the tests:\s*(?P<reason>.+?)\s*$", re.M)
MARKDOWN_SKIP = re.compile(r"<!--\s*not run by the tests:\s*(?P<reason>.+?)\s*-->", re.I | re.S)
INVENTORY_FILE = re.compile(r"^#\s*(?P<path>(?:group|host)_vars/[\w.-]+\.ya?ml)\b")
# trusted_file's examples write as root into a user's tree: test_trusted_file.py runs them, with its attacks.
RUN_ELSEWHERE = {"modules/trusted_file": "tests/integration/test_trusted_file.py::test_the_examples_run"}


@dataclass
class Example:
    """One runnable piece of a document: a playbook, or tasks (wrapped in a play on localhost)."""
    source: str  # file:line
    text: str
    kind: str  # "playbook" or "tasks" (see problem())
    needs: tuple = ()
    inventory_files: dict = field(default_factory=dict)
    shared_defaults: bool = False  # tasks of a Markdown page: in a play with SHARED_DEFAULTS


@dataclass
class Document:
    name: str  # modules/oauth_application, README.md, ...
    examples: list
    skipped: list  # (source, reason)


def module_examples(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "EXAMPLES":
            return ast.literal_eval(node.value), node.lineno
    raise AssertionError("%s has no EXAMPLES" % path)


def top_level_items(text):
    """The text split at its top-level list items (`- ` at column 0), each with the comments before it."""
    lines = text.splitlines(True)
    starts = [number for number, line in enumerate(lines) if line.startswith("- ")]
    if not starts:
        return [(0, text)]
    items, begin = [], 0
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(lines)
        # Comment lines right before an item belong to it, not to the item above.
        cut = end
        while index + 1 < len(starts) and cut > start + 1 and lines[cut - 1].lstrip().startswith("#"):
            cut -= 1
        items.append((begin, "".join(lines[begin:cut])))
        begin = cut
    return items


def split_by_needs(text, source_path, first_line):
    """The items of a YAML list grouped into examples: an item with a needs mark starts one, and the unmarked
    items after it (which may use what it registered) join it."""
    runs = []
    for offset, chunk in top_level_items(text):
        needs = tuple(sorted(match.group("setting") for match in NEEDS_MARK.finditer(chunk)))
        if runs and (runs[-1][1] == needs or not needs):
            runs[-1][2].append(chunk)
        else:
            runs.append((first_line + offset, needs, [chunk]))
    return [Example("%s:%d" % (source_path, line), "".join(chunks), None, needs) for line, needs, chunks in runs]


def problem(example):
    """Why the example cannot run as it is, or None; sets its kind (playbook or tasks)."""
    unknown = [need for need in example.needs if need not in NEEDS]
    if unknown:
        return "%s: a setting test_examples.py does not know how to give: %s (add it to NEEDS)" % (
            example.source, unknown)
    data = yaml.safe_load(example.text)
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        example.kind = "playbook" if any("hosts" in item for item in data) else "tasks"
        return None
    return ("%s: neither a playbook, a list of tasks nor an inventory file (# group_vars/NAME.yml on its first line);"
            " make it a whole example, or mark it `Not run by the tests: REASON`:\n%s" % (example.source, example.text))


def document_from_yaml(text, source_path, first_line):
    skip = SKIP_MARK.search(text)
    if skip:
        return [], [("%s:%d" % (source_path, first_line), skip.group("reason"))]
    return split_by_needs(text, source_path, first_line), []


def module_documents():
    for path in sorted((REPO / "plugins" / "modules").glob("*.py")):
        name = "modules/" + path.stem
        text, line = module_examples(path)
        examples, skipped = document_from_yaml(text.lstrip("\n"), path.relative_to(REPO), line)
        yield Document(name, examples, skipped)


def markdown_documents():
    paths = [REPO / "README.md"] + sorted((REPO / "roles").glob("*/README.md"))
    for path in paths:
        text = path.read_text()
        relative = path.relative_to(REPO)
        examples, skipped, inventory_files = [], [], {}
        fences = r"^(?P<heading>#{1,3} [^\n]*)$|^(?P<indent> *)```(?P<lang>\w*)\n(?P<body>.*?)^(?P=indent)```"
        for match in re.finditer(fences, text, re.S | re.M):
            if match.group("heading"):
                if match.group("heading").startswith("## "):
                    inventory_files = {}  # an inventory file serves the playbooks of its own section
                continue
            if match.group("lang") not in ("yaml", "yml"):
                continue
            body = textwrap.dedent(match.group("body"))  # a block in a list item is indented
            line = text.count("\n", 0, match.start()) + 2
            source = "%s:%d" % (relative, line)
            before = text[:match.start()].rstrip()
            comment = before[before.rfind("<!--"):] if before.endswith("-->") else ""
            skip = MARKDOWN_SKIP.fullmatch(comment)
            if skip:
                skipped.append((source, " ".join(skip.group("reason").split())))
                continue
            inventory_file = INVENTORY_FILE.match(body)
            if inventory_file:
                inventory_files[inventory_file.group("path")] = body
                continue
            found, marked = document_from_yaml(body, relative, line)
            for example in found:
                example.inventory_files = dict(inventory_files)
                example.shared_defaults = True
            examples += found
            skipped += marked
        yield Document(str(relative), examples, skipped)


def role_spec_documents():
    """The example each role's meta/argument_specs.yml gives ansible-doc (`examples`), where it is not its README's
    playbook verbatim (tests/unit/test_role_examples.py requires that it is, so the README's run covers it)."""
    for path in sorted((REPO / "roles").glob("*/meta/argument_specs.yml")):
        relative = path.relative_to(REPO)
        readme = (path.parent.parent / "README.md").read_text()
        for entry, spec in yaml.safe_load(path.read_text())["argument_specs"].items():
            name = "%s (%s)" % (relative, entry)
            example = spec.get("examples")
            if not example:
                yield Document(name, [], [(name, "no example: add one")])
            elif "```yaml\n%s```" % example not in readme:
                examples, skipped = document_from_yaml(example, relative, 1)
                yield Document(name, examples, skipped)


DOCUMENTS = list(module_documents()) + list(markdown_documents()) + list(role_spec_documents())


# -- running them ---------------------------------------------------------------------------------


class Setting:
    """What a run of the examples fills the placeholders with, and a database per set of project settings."""

    def __init__(self, runner, app_user, app_python, scratch):
        self.runner = runner
        self.app_user = app_user
        self.venv = str(Path(app_python).parent.parent)
        self.scratch = scratch
        self.host_root = host_root(scratch, "examples")
        (self.host_root / "lib" / "shop-jobs").mkdir(mode=0o755)
        (self.host_root / "systemd" / "etc" / "systemd" / "system").mkdir(mode=0o755, parents=True)
        (self.host_root / "logrotate.d").mkdir(mode=0o755)
        self.databases = {}

    def database(self, needs):
        """A migrated SQLite database the job's user can write, for the project with these settings, its owners
        created; and the env_file that points the project at it."""
        if needs not in self.databases:
            # In a directory of the job's user, as SQLite writes beside the file (cronjobs.sqlite_database).
            directory = Path(tempfile.mkdtemp(dir=self.scratch, prefix="examples-sqlite-"))
            variables = {}
            for need in needs:
                variables.update((name, value.format(directory=directory)) for name, value in NEEDS[need].items())
            env = dict(variables, OAUTHOPS_TEST_DB="sqlite", OAUTHOPS_TEST_DB_NAME=str(directory / "shop.sqlite3"))
            migrate(env)
            if "OAUTHOPS_TEST_OAUTH_DB_NAME" in env:
                migrate(env, database="oauth")
            create_owners(env)
            env_file = directory / "shop.env"
            env_file.write_text("".join("%s=%s\n" % item for item in sorted(env.items())) + "DJANGO_DEBUG=0\n")
            env_file.chmod(0o644)
            for path in [directory, env_file] + list(directory.glob("*.sqlite3")):
                os.chown(path, self.app_user.pw_uid, self.app_user.pw_gid)
            self.databases[needs] = (env, str(env_file))
        return self.databases[needs]

    def values(self, needs):
        env, env_file = self.database(needs)
        return {"venv": self.venv, "env_file": env_file, "project_path": str(DJANGO_PROJECT),
                "host_root": str(self.host_root), "app_user": self.app_user.pw_name,
                "app_group": grp.getgrgid(self.app_user.pw_gid).gr_name,
                "database": env["OAUTHOPS_TEST_DB_NAME"]}


def create_owners(env):
    script = (
        "from django.conf import settings\n"
        "from django.contrib.auth import get_user_model\n"
        "for alias in settings.DATABASES:\n"
        "    users = get_user_model()._default_manager.db_manager(alias)\n"
        "    for name in %r: users.create_user(**{get_user_model().USERNAME_FIELD: name})\n"
        "    users.create_user(pk=%d, **{get_user_model().USERNAME_FIELD: 'carol'})\n" % (OWNERS, OWNER_BY_PK)
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=DJANGO_PROJECT,
                   env=dict(os.environ, **env), check=True, capture_output=True)


def fill(text, values):
    for _placeholder, pattern, replacement in SUBSTITUTIONS:
        text = re.sub(pattern, replacement.format(**values), text)
    return text


def fill_vars(value, values):
    if isinstance(value, str):
        return value.format(**values)
    if isinstance(value, list):
        return [fill_vars(item, values) for item in value]
    if isinstance(value, dict):
        return {key: fill_vars(item, values) for key, item in value.items()}
    return value


def write_run(example, values, workdir, number):
    """The example as a playbook, and an inventory whose groups (every `hosts:` the example names) hold localhost."""
    text = fill(example.text, values)
    if example.kind == "tasks":
        indented = "".join("    " + line if line.strip() else line for line in text.splitlines(True))
        text = "- name: Example from %s\n  hosts: localhost\n  gather_facts: false\n%s  tasks:\n%s" % (
            example.source, fill(SHARED_DEFAULTS, values) if example.shared_defaults else "", indented)
    directory = workdir / ("run-%02d" % number)
    directory.mkdir()
    playbook = directory / "playbook.yml"
    playbook.write_text(text)
    groups = sorted({play["hosts"] for play in yaml.safe_load(text) if play.get("hosts") not in (None, "localhost", "all")})
    inventory = directory / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(json.dumps({"all": {"children": {
        group: {"hosts": {"localhost": None}} for group in groups}}}))
    for path, content in example.inventory_files.items():
        (inventory / path).parent.mkdir(exist_ok=True)
        (inventory / path).write_text(fill(content, values))
    return playbook, inventory


@pytest.fixture(scope="module")
def setting(role_playbook_module, app_user, app_python, scratch):
    return Setting(role_playbook_module, app_user, app_python, scratch)


@pytest.fixture(scope="module")
def role_playbook_module(collections_path, bare_python, tmp_path_factory):
    from conftest import PlaybookRunner  # pylint: disable=import-outside-toplevel
    return PlaybookRunner(collections_path, bare_python, {"backend": "none"}, tmp_path_factory.mktemp("examples"),
                          "examples")


RUN_HERE = [document for document in DOCUMENTS if document.name not in RUN_ELSEWHERE]
MARKED = [(source, reason) for document in RUN_HERE for source, reason in document.skipped] + [
    ("%s's EXAMPLES" % name, "run by " + test) for name, test in RUN_ELSEWHERE.items()]


@pytest.mark.parametrize("source, reason", MARKED, ids=[source for source, _reason in MARKED])
def test_an_example_marked_not_run(source, reason):
    """Reported, never silent: the suite lists each with its reason."""
    assert reason != "no example: add one", "%s has no example" % source
    pytest.skip("%s is not run by test_examples.py: %s" % (source, reason))


@pytest.mark.parametrize("document", RUN_HERE, ids=[document.name for document in RUN_HERE])
def test_the_examples_run(document, setting):
    assert document.examples or document.skipped, "%s holds no example" % document.name
    problems = [problem(example) for example in document.examples]
    assert not any(problems), "\n".join(filter(None, problems))
    workdir = setting.runner.workdir
    for number, example in enumerate(document.examples, len(list(workdir.glob("run-*"))) + 1):
        values = setting.values(example.needs)
        env, _env_file = setting.database(example.needs)
        playbook, inventory = write_run(example, values, workdir, number)
        extra = fill_vars(EXTRA_VARS, values)
        command, environ = setting.runner.command(str(playbook), extra, ["-i", str(inventory)], environ=env)
        completed = subprocess.run(command, env=environ, capture_output=True, text=True, check=False)
        output = completed.stdout + completed.stderr
        assert completed.returncode == 0, "the example at %s fails as written:\n%s\n--- output:\n%s" % (
            example.source, fill(example.text, values), output[-4000:])
        assert "[DEPRECATION WARNING]" not in output, output


def test_the_substitutions_are_documented():
    """CONTRIBUTING.md's "Doc examples" names every placeholder, variable and setting the harness fills."""
    text = (REPO / "CONTRIBUTING.md").read_text()
    section = text.split("\n## Doc examples\n", 1)[1].split("\n## ", 1)[0]
    names = [placeholder for placeholder, _pattern, _replacement in SUBSTITUTIONS] + list(EXTRA_VARS) + list(NEEDS)
    missing = [name for name in names if "`%s`" % name not in section]
    assert not missing, "CONTRIBUTING.md's Doc examples does not name: %s" % missing
