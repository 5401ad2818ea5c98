"""The layout of the Django side and of plugins/, read from the source with ast: no Django, no Ansible.

One list: the Django side is every plugins/module_utils/_django_*.py file. The bridge must import
each of them (AnsiballZ packs only what the bridge imports) and lists them in SIDE_FLOORS; the role
copies them by that glob; the unit tests' conftest ships them by it. These tests keep the three the
same set, and keep the floors of SIDE_FLOORS true: a side file imports only side files of lower
floors (so the graph has no cycle and every hop is a plain import), and nothing of Ansible. Across
plugins/, the import graph has no cycle and module_utils never imports a module or an action plugin.
"""

import ast

from conftest import SIDE_FILES
from provisioning import REPO

PLUGINS = REPO / "plugins"
MODULE_UTILS = PLUGINS / "module_utils"
BRIDGE = MODULE_UTILS / "django_bridge.py"
ROLE_VARS = REPO / "roles" / "token_cleanup" / "vars" / "main.yml"
COLLECTION = "ansible_collections.oauthops.toolkit"
SIDE_GLOB = "_django_*.py"


def side_names():
    return sorted(path.stem for path in MODULE_UTILS.glob(SIDE_GLOB))


def bridge_floors():
    """SIDE_FLOORS of the bridge, as lists of module names."""
    for node in ast.parse(BRIDGE.read_text()).body:
        if isinstance(node, ast.Assign) and [target.id for target in node.targets] == ["SIDE_FLOORS"]:
            return [[name.id for name in floor.elts] for floor in node.value.elts]
    raise AssertionError("no SIDE_FLOORS in %s" % BRIDGE)


def plugin_of(path):
    """'module_utils._django_side' for plugins/module_utils/_django_side.py."""
    return ".".join(path.relative_to(PLUGINS).with_suffix("").parts)


def imports(path):
    """(plugins this file imports, as plugin_of names; the other modules it imports, as written)."""
    package = plugin_of(path).rpartition(".")[0]
    prefix = COLLECTION + ".plugins."
    ours, others = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            ours.update(alias.name[len(prefix):] for alias in node.names if alias.name.startswith(prefix))
            others.update(alias.name for alias in node.names if not alias.name.startswith(prefix))
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:  # from . import x, from .x import y: plugins/ has no deeper packages
            module = package + ("." + node.module if node.module else "")
        elif node.module.startswith(prefix):
            module = node.module[len(prefix):]
        else:
            others.add(node.module)
            continue
        if (PLUGINS / module.replace(".", "/")).is_dir():  # from a package import its modules
            ours.update(module + "." + alias.name for alias in node.names)
        else:
            ours.add(module)
    return ours, others


def plugin_graph():
    return dict((plugin_of(path), imports(path)[0]) for path in sorted(PLUGINS.rglob("*.py")))


def a_cycle(graph):
    """One import cycle of `graph` as a list of names (first == last), or None."""
    state = {}

    def visit(name, path):
        state[name] = "open"
        for imported in sorted(graph.get(name, ())):
            if state.get(imported) == "open":
                return path[path.index(imported):] + [imported]
            if imported not in state:
                found = visit(imported, path + [imported])
                if found:
                    return found
        state[name] = "done"
        return None

    for name in sorted(graph):
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None


def test_one_list_of_the_files_shipped_to_the_django_side():
    floors = [name for floor in bridge_floors() for name in floor]
    assert sorted(floors) == side_names(), "SIDE_FLOORS in django_bridge.py must list every %s once" % SIDE_GLOB
    imported = sorted(name.rpartition(".")[2] for name in imports(BRIDGE)[0] if name.startswith("module_utils._django_"))
    assert imported == side_names(), "django_bridge.py must import every %s (AnsiballZ ships only those)" % SIDE_GLOB
    assert sorted(name[:-len(".py")] for name in SIDE_FILES) == side_names()
    role_glob = "query('ansible.builtin.fileglob', role_path ~ '/../../plugins/module_utils/%s')" % SIDE_GLOB
    assert role_glob in ROLE_VARS.read_text(), "the token_cleanup role must copy %s" % SIDE_GLOB


def floor_violations(floors, imports_of):
    """What breaks the floors: an import of a file that is not on a lower floor (or not on any)."""
    floor_of = dict((name, number) for number, floor in enumerate(floors) for name in floor)
    wrong = []
    for number, floor in enumerate(floors):
        for name in floor:
            wrong += [
                "%s (floor %d) imports %s (floor %s)" % (name, number, imported, floor_of.get(imported, "none"))
                for imported in sorted(imports_of[name])
                if floor_of.get(imported, number) >= number
            ]
    return wrong


def test_a_side_file_imports_only_side_files_of_lower_floors_and_nothing_of_ansible():
    floors = bridge_floors()
    found = dict((name, imports(MODULE_UTILS / (name + ".py"))) for floor in floors for name in floor)
    imports_of = dict((name, set(imported.replace("module_utils.", "", 1) for imported in ours))
                      for name, (ours, _others) in found.items())
    assert floor_violations(floors, imports_of) == []
    assert [(name, sorted(others)) for name, (_ours, others) in found.items() if any(
        module.split(".")[0] == "ansible" for module in others)] == []


def test_the_plugins_import_graph_has_no_cycle_and_module_utils_imports_no_plugin():
    graph = plugin_graph()
    assert "module_utils._django_side" in graph["module_utils._django_cleanup_job"]  # the parser sees relative imports
    assert a_cycle(graph) is None, "import cycle: %s" % " -> ".join(a_cycle(graph))
    upward = ["%s imports %s" % (name, imported) for name, imported_names in sorted(graph.items())
              for imported in sorted(imported_names) if name.startswith("module_utils.")
              and not imported.startswith("module_utils.")]
    assert upward == []


def test_the_checks_see_a_cycle_and_a_broken_floor():
    assert a_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert a_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    floors = [["core"], ["env", "migrations"], ["side"]]
    assert floor_violations(floors, {"core": set(), "env": {"core"}, "migrations": {"core"}, "side": {"env"}}) == []
    assert floor_violations(floors, {"core": {"side"}, "env": {"migrations"}, "migrations": set(), "side": {"bridge"}}) == [
        "core (floor 0) imports side (floor 2)",
        "env (floor 1) imports migrations (floor 1)",
        "side (floor 2) imports bridge (floor none)",
    ]
