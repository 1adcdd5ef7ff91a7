"""The import rules of docs/architecture.md, checked on the source so a newcomer can trust the drawing.

Why a test: the layering (data -> scoring -> policy -> training/summarize -> evaluation -> pipelines) and
"no circle inside a package" are easy to break with one import placed inside a function, which nothing
fails on at import time. This walks every module of the library, the stages and the evaluation package
with ``ast`` -- module-level and function-level imports alike, ``from pkg import mod`` resolved to the
submodule -- builds the module graph and checks it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package name it installs as (pyproject's package-dir)
PACKAGE_DIRS = {"relsum": "relsum", "pipelines": "relsum.pipelines", "evaluation": "relsum.evaluation"}
CLI_MODULES = ("relsum.cli", "relsum.cli_stages")


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every .py under the three source folders."""
    found: dict[str, Path] = {}
    for folder, package in PACKAGE_DIRS.items():
        for file in sorted((root / folder).rglob("*.py")):
            parts = list(file.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = file
    return found


def _resolve(name: str, modules: set[str]) -> str | None:
    """The longest known module that ``name`` is or lies inside (an attribute of); None if external."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, source: str, modules: set[str],
               is_package: bool = False) -> list[tuple[str, str]]:
    """(imported module, imported name or "") for every import statement of ``source``, at any depth.

    ``from a.b import c`` is an import of ``a.b.c`` when that is a module, else of ``a.b`` (name ``c``);
    relative imports are resolved against ``module``. Only modules inside ``modules`` are returned.
    """
    found: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, modules)
                if target:
                    found.append((target, ""))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in modules:
                    found.append((full, ""))
                elif (target := _resolve(base, modules)) is not None:
                    found.append((target, alias.name))
    return found


def import_graph(root: Path = ROOT) -> tuple[dict[str, set[str]], dict[str, list[tuple[str, str]]]]:
    """(module -> modules it imports, module -> its (module, name) imports), over the whole tree."""
    files = module_files(root)
    names = set(files)
    detail = {m: imports_of(m, f.read_text(), names, f.name == "__init__.py") for m, f in files.items()}
    graph = {m: {t for t, _ in imps if t != m} for m, imps in detail.items()}
    return graph, detail


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a closed path a -> ... -> a) per strongly connected component with more than one
    module or a self-loop (Tarjan's algorithm, iterative so deep graphs do not hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                if len(component) > 1 or node in graph.get(node, ()):
                    components.append(component)
    return [_cycle_in(sorted(c), graph) for c in components]


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A concrete closed path through the first module of ``component`` (breadth-first, so shortest)."""
    members, start = set(component), component[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if child in members and child not in parent:
                    parent[child] = node
                    nxt.append(child)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in its component")  # pragma: no cover


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def room(module: str) -> str:
    """The package a module belongs to for the cycle rule: ``relsum.<name>`` (a subpackage or a loose
    top-level module such as ``relsum.cli``)."""
    return ".".join(module.split(".")[:2])


def split_cycles(cycles: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """(cycles inside one package, cycles that cross packages)."""
    inside = [c for c in cycles if len({room(m) for m in c}) == 1]
    return inside, [c for c in cycles if c not in inside]


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The package graph (see :func:`room`): a -> b when any module of a imports one of b."""
    rooms: dict[str, set[str]] = {}
    for module, deps in graph.items():
        rooms.setdefault(room(module), set()).update(room(t) for t in deps if room(t) != room(module))
    return rooms


def show(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(c) for c in cycles)


def forbidden(graph: dict[str, set[str]], sources: str, targets: tuple[str, ...],
              allow: tuple[str, ...] = ()) -> list[str]:
    """'a -> b' for each import from a module under ``sources`` into one under any of ``targets``."""
    return [f"{m} -> {t}" for m, deps in sorted(graph.items()) if within(m, sources) and m not in allow
            for t in sorted(deps) if any(within(t, p) for p in targets)]


def private_imports(detail: dict[str, list[tuple[str, str]]]) -> list[str]:
    """'a imports b._x' for each ``from b import _x`` (b another module; dunders are not private)."""
    return [f"{m} imports {t}.{name}" for m, imps in sorted(detail.items()) for t, name in imps
            if t != m and name.startswith("_") and not name.startswith("__")]


@pytest.fixture(scope="module")
def tree():
    return import_graph()


def test_the_walk_sees_function_level_and_submodule_imports(tree):
    """Guard the walker itself: a known function-level import and a known ``from pkg import module``."""
    graph, _ = tree
    assert len(graph) > 100
    assert "relsum.scoring.int8_static" in graph["relsum.scoring.fast"]  # inside build_runner
    assert "relsum.pipelines.build_pairs" not in graph["relsum.summarize.best_of"]


def test_no_import_cycle_inside_a_package(tree):
    inside, _ = split_cycles(find_cycles(tree[0]))
    assert not inside, "import cycles inside a package:\n" + show(inside)


def test_no_import_cycle_across_packages(tree):
    """Module cycles through several packages are forbidden too (none is left to allow)."""
    _, across = split_cycles(find_cycles(tree[0]))
    assert not across, "import cycles across packages:\n" + show(across)


def test_packages_import_each_other_in_one_direction(tree):
    """Coarser than module cycles: two packages may not import each other even through acyclic modules
    (the policy <-> training loop of issue 24 was of this kind)."""
    cycles = find_cycles(package_graph(tree[0]))
    assert not cycles, "packages that import each other:\n" + show(cycles)


def test_training_and_summarize_meet_only_in_policy(tree):
    graph, _ = tree
    bad = (forbidden(graph, "relsum.training", ("relsum.summarize",))
           + forbidden(graph, "relsum.summarize", ("relsum.training",)))
    assert not bad, "training and summarize import each other:\n" + "\n".join(bad)


def test_policy_imports_neither_training_nor_summarize(tree):
    bad = forbidden(tree[0], "relsum.policy", ("relsum.training", "relsum.summarize"))
    assert not bad, "relsum.policy must stay below training and summarize:\n" + "\n".join(bad)


def test_library_does_not_import_the_stages_or_the_cli(tree):
    graph = {m: deps for m, deps in tree[0].items()
             if not within(m, "relsum.pipelines") and not within(m, "relsum.evaluation")}
    cli = tuple(m for m in graph if m.startswith("relsum.cli"))  # relsum/cli*.py
    assert set(CLI_MODULES) <= set(cli)
    bad = forbidden(graph, "relsum", ("relsum.pipelines", *cli), allow=cli)
    assert not bad, "the library imports the stage layer or the CLI:\n" + "\n".join(bad)


def test_no_private_name_is_imported_from_another_module(tree):
    bad = private_imports(tree[1])
    assert not bad, "private names imported across modules (make them public):\n" + "\n".join(bad)


# --- each rule can fail: the same checks on synthetic input -------------------------------------------

def test_find_cycles_reports_a_closed_path_and_ignores_a_dag():
    dag = {"p.a": {"p.b", "p.c"}, "p.b": {"p.c"}, "p.c": set()}
    assert find_cycles(dag) == []
    looped = {**dag, "p.c": {"p.a"}, "q.x": {"q.x"}}
    cycles = find_cycles(looped)
    assert sorted(cycles) == [["p.a", "p.c", "p.a"], ["q.x", "q.x"]]
    across = {"relsum.a.x": {"relsum.b.y"}, "relsum.b.y": {"relsum.a.x"},
              "relsum.a.p": {"relsum.a.q"}, "relsum.a.q": {"relsum.a.p"}}
    inside, crossing = split_cycles(find_cycles(across))
    assert inside == [["relsum.a.p", "relsum.a.q", "relsum.a.p"]]
    assert crossing == [["relsum.a.x", "relsum.b.y", "relsum.a.x"]]
    no_module_cycle = {"relsum.a.x": {"relsum.b.y"}, "relsum.b.z": {"relsum.a.w"}}
    assert find_cycles(no_module_cycle) == []
    assert find_cycles(package_graph(no_module_cycle)) == [["relsum.a", "relsum.b", "relsum.a"]]


def test_the_walk_finds_imports_hidden_in_functions_and_relative_ones():
    modules = {"p", "p.a", "p.b", "p.c", "p.sub", "p.sub.d"}
    source = ("import p.a\n"
              "def f():\n    from p import b\n    from p.c import _helper, thing\n"
              "class K:\n    def g(self):\n        from .sub import d\n        import os\n")
    assert sorted(imports_of("p.x", source, modules)) == [
        ("p.a", ""), ("p.b", ""), ("p.c", "_helper"), ("p.c", "thing"), ("p.sub.d", "")]
    assert imports_of("p.sub.d", "from .. import a\nfrom . import _z\n", modules) == [
        ("p.a", ""), ("p.sub", "_z")]
    assert imports_of("p.sub", "from .d import x\n", modules, is_package=True) == [("p.sub.d", "x")]


def test_layer_and_private_rules_flag_synthetic_offenders():
    graph = {"relsum.training.t": {"relsum.summarize.s"}, "relsum.summarize.s": set(),
             "relsum.cli": {"relsum.pipelines.x"}, "relsum.data.d": {"relsum.cli_stages"}}
    assert forbidden(graph, "relsum.training", ("relsum.summarize",)) == [
        "relsum.training.t -> relsum.summarize.s"]
    assert forbidden(graph, "relsum", ("relsum.pipelines", *CLI_MODULES), allow=CLI_MODULES) == [
        "relsum.data.d -> relsum.cli_stages"]
    detail = {"p.a": [("p.b", "_x"), ("p.b", "__version__"), ("p.b", "y")], "p.b": []}
    assert private_imports(detail) == ["p.a imports p.b._x"]
