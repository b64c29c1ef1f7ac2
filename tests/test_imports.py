"""
The package's structure, read from its source with ``ast``: other objects' private state is reached through one adapter
only, and the imports of ``sb3_mlsh`` and ``mlsh_envs`` (those inside functions too) form no cycle and point one way.
"""

import ast
import pathlib
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: The import name of each package, and its folder.
PACKAGES = {"sb3_mlsh": ROOT / "sb3_mlsh", "mlsh_envs": ROOT / "envs"}

#: The one module that may touch SB3's private attributes (those with no public API), and how many distinct ones.
ADAPTER = pathlib.Path("sb3_mlsh", "common", "sb3_internals.py")
MAX_ADAPTER_ATTRIBUTES = 6

#: Names with a leading underscore that are documented public API (``os._exit``: exit without cleanup handlers).
PUBLIC_UNDERSCORE_NAMES = {("os", "_exit")}

ATTRIBUTE_FUNCTIONS = ("getattr", "setattr", "hasattr", "delattr")

#: The layers of ``sb3_mlsh``, lowest first: a module imports modules of its own layer or of lower ones only. The
#: package's ``__init__`` and the ``python -m sb3_mlsh.train``-style shims are the top.
LAYERS = (
    ("sb3_mlsh.common", "sb3_mlsh.distributed"),
    ("sb3_mlsh.mlsh",),
    ("sb3_mlsh.cli",),
    ("sb3_mlsh",),
)


def _python_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(path for path in folder.rglob("*.py") if "__pycache__" not in path.parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_own(node: ast.expr) -> bool:
    """Whether ``node`` is the object whose own state a method may touch: ``self``, ``cls`` or ``super()``."""
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _private_name_argument(call: ast.Call) -> str | None:
    """:return: ``"_name"`` of ``getattr(x, "_name")`` (or set-, has-, delattr) on another object than ``self``, ``cls`` or
    ``super()``; None for any other call."""
    if not (isinstance(call.func, ast.Name) and call.func.id in ATTRIBUTE_FUNCTIONS and len(call.args) >= 2):
        return None
    owner, name = call.args[:2]
    if isinstance(name, ast.Constant) and isinstance(name.value, str) and _is_private(name.value) and not _is_own(owner):
        return name.value
    return None


def private_accesses(tree: ast.AST) -> Iterator[tuple[int, str, str]]:
    """
    :param tree: A module's syntax tree.
    :return: ``(line, attribute, source)`` of each private attribute read, written or deleted on another object than
        ``self``, ``cls`` or ``super()``: as ``x._name``, as ``getattr(x, "_name")`` (and set-, has-, delattr), and
        as a private name imported from another module.
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and not _is_own(node.value):
            if (ast.unparse(node.value), node.attr) not in PUBLIC_UNDERSCORE_NAMES:
                yield node.lineno, node.attr, ast.unparse(node)
        elif isinstance(node, ast.Call) and (name := _private_name_argument(node)) is not None:
            yield node.lineno, name, ast.unparse(node)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if _is_private(alias.name):
                    yield node.lineno, alias.name, ast.unparse(node)


def test_private_state_is_reached_only_through_the_adapter():
    outside, adapter = [], {}
    for path in _python_files(PACKAGES["sb3_mlsh"]):
        relative = path.relative_to(ROOT)
        for line, attribute, source in private_accesses(ast.parse(path.read_text(), str(path))):
            if relative == ADAPTER:
                adapter.setdefault(attribute, f"{relative}:{line}: {source}")
            else:
                outside.append(f"{relative}:{line}: {source}")
    assert not outside, (
        f"Private attributes of other objects reached outside {ADAPTER} (use the object's public API, a public method "
        "of MLSH, or a function of the adapter):\n" + "\n".join(outside)
    )
    assert len(adapter) <= MAX_ADAPTER_ATTRIBUTES, (
        f"{ADAPTER} reaches {len(adapter)} distinct private attributes, more than {MAX_ADAPTER_ATTRIBUTES}:\n"
        + "\n".join(adapter.values())
    )


# --------------------------------------------------------------------------------------------------------------- imports


def package_modules() -> dict[str, tuple[pathlib.Path, bool]]:
    """:return: Each module of the packages by dotted name (a package by its own name), with its file and whether it is a
    package ``__init__``."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in _python_files(folder):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(module: str, is_package: bool, tree: ast.AST) -> Iterator[str]:
    """
    :return: The dotted names that ``module`` imports anywhere (in functions too; not under ``if TYPE_CHECKING:``,
        which never runs): ``a.b`` for ``import a.b``, ``a.b.c`` for ``from a.b import c`` (its resolution to a module or
        to a name of ``a.b`` is the caller's), relative imports resolved, and the literal argument of
        ``importlib.import_module("a.b")`` / ``__import__("a.b")``.
    """
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: None if is_package else -1]
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            yield from (f"{source}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.args[0].value


def import_graph() -> dict[str, set[str]]:
    """
    The modules of ``sb3_mlsh`` and ``mlsh_envs``, each with the modules of both packages it imports.

    A package counts as its ``__init__``: ``from sb3_mlsh.mlsh import MLSH`` is an edge to ``sb3_mlsh.mlsh``, whose own
    imports are its edges; ``from sb3_mlsh.mlsh import bank`` (a submodule) is an edge to ``sb3_mlsh.mlsh.bank``. So a
    submodule that imports a name from its own package's ``__init__``, which imports the submodule, makes a cycle. The
    parent packages that Python initialises before any module of theirs are not edges: every module would otherwise sit
    in a cycle with a package ``__init__`` that imports it.
    """
    modules = package_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, (path, is_package) in modules.items():
        for name in imported_names(module, is_package, ast.parse(path.read_text(), str(path))):
            while name and name not in modules:  # a name in a module (or a module outside both packages)
                name = name.rpartition(".")[0]
            if name and name != module:
                graph[module].add(name)
    return graph


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """:return: The components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """:return: One cycle through the component's first module, as the modules along it (the first repeated last)."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for target in sorted(graph[node] & members):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                frontier.append(target)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover  (a component always has one)


def test_strongly_connected_components_name_the_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert strongly_connected_components(graph) == [["a", "b", "c"]]
    assert _cycle_in(["a", "b", "c"], graph) == ["a", "b", "c", "a"]
    assert strongly_connected_components({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    cycles = [" -> ".join(_cycle_in(component, graph)) for component in strongly_connected_components(graph)]
    assert not cycles, "Import cycles (imports inside functions count):\n" + "\n".join(cycles)


def _layer(module: str) -> int:
    matches = [
        (len(prefix), level)
        for level, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1]


def test_sb3_mlsh_and_mlsh_envs_meet_through_gymnasium_ids_and_layers_point_down():
    # mlsh_envs builds on gymnasium alone; sb3_mlsh knows its task families by their gymnasium ids only (TaskSampler
    # has gymnasium import the module that registers an id), so that neither package's imports need the other.
    graph = import_graph()
    across = [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if module.split(".")[0] != target.split(".")[0]
    ]
    assert not across, "Imports between sb3_mlsh and mlsh_envs:\n" + "\n".join(across)
    upward = [
        f"{module} -> {target}"
        for module, targets in sorted(graph.items())
        if module.startswith("sb3_mlsh")
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert not upward, f"Imports of a higher layer (layers, lowest first: {LAYERS}):\n" + "\n".join(upward)
