"""Imports between rnn_tasks' modules go one way: the graph read from the source has no
cycle, and the pure-torch layers import nothing of the Lightning side (docs/architecture.md)."""

import ast
from collections import defaultdict
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "rnn_tasks"
FOLDERS = ("nn", "text", "data", "tasks")


def unit(module: str) -> str:
    """A module's unit in the graph: a folder of the package counts as one."""
    parts = module.split(".")[1:]
    if not parts:
        return "rnn_tasks"
    return parts[0] + "/" if parts[0] in FOLDERS else parts[0]


def imports_between_units() -> dict[str, set[str]]:
    graph = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:  # from .x import y / from .. import __version__
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            elif (node.module or "").startswith("rnn_tasks"):
                names = [node.module]
            else:
                continue
            for name in names:
                if name != "rnn_tasks.__version__" and unit(name) != unit(module):
                    graph[unit(module)].add(unit(name))
    return graph


def test_imports_between_modules_have_no_cycle():
    graph = imports_between_units()
    assert graph["train"] >= {"tasks/", "guards", "resume"}  # the reader sees imports
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as err:
        raise AssertionError(f"an import cycle: {' -> '.join(err.args[1])}") from None


def test_the_pure_torch_layers_import_only_each_other():
    graph = imports_between_units()
    pure = {"nn/", "models", "text/", "generation", "inference", "specs", "files"}
    for unit_name in pure:
        assert graph.get(unit_name, set()) <= pure, (unit_name, graph.get(unit_name))
