"""No import cycles inside gpt_tui, read from the source so no module has to be imported.

Every ``import`` and ``from ... import`` of a gpt_tui module counts, wherever it
sits (top level, inside a function, under ``TYPE_CHECKING``): a deferred import
still ties the two modules together, it only hides the cycle until run time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gpt_tui

PACKAGE_DIR = Path(gpt_tui.__file__).resolve().parent

# Cycles that are still being taken apart: the no-cycles test lets them pass, and
# test_known_cycles_are_listed_only_while_they_hold fails once one is gone.
KNOWN_CYCLES: dict[frozenset[str], str] = {}


def module_files(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> source file, for every module and package under ``root``."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The gpt_tui modules ``module`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                # ``import a.b.c`` binds a module; the deepest part that is one of ours is the edge.
                parts = alias.name.split(".")
                for end in range(len(parts), 0, -1):
                    name = ".".join(parts[:end])
                    if name in known:
                        found.add(name)
                        break
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                child = f"{source}.{alias.name}"
                if child in known:  # ``from gpt_tui.engine import runs`` imports the module runs
                    found.add(child)
                elif source in known:
                    found.add(source)
    found.discard(module)
    return found


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    modules = module_files(root)
    known = set(modules)
    return {name: _imported(name, path, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def _path_round(graph: dict[str, set[str]], component: list[str]) -> str:
    """One concrete loop through ``component``, ``a -> b -> a``, for the failure message."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & members):
            if target == start:
                loop = [start]
                while node != start:
                    loop.append(node)
                    node = parents[node]
                return " -> ".join([start] + loop[:0:-1] + [start])
            if target not in parents:
                parents[target] = node
                queue.append(target)
    return " <-> ".join(component)


def test_cycle_finder_sees_direct_and_longer_loops() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert cycles(graph) == [["a", "b", "c"], ["d", "e"]]
    assert _path_round(graph, ["a", "b", "c"]) == "a -> b -> c -> a"
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_reads_every_kind_of_import(tmp_path: Path) -> None:
    pkg = tmp_path / "gpt_tui"
    (pkg / "engine").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "__init__.py").write_text("")
    (pkg / "engine" / "runs.py").write_text("from . import model\n")
    (pkg / "engine" / "model.py").write_text("def f():\n    from gpt_tui.engine.runs import X\n")
    (pkg / "engine" / "loss.py").write_text("from ..engine import runs\nimport gpt_tui.engine.model as m\n")
    (pkg / "cli.py").write_text("from gpt_tui.engine import loss, runs\nfrom gpt_tui.errors import UserError\n")
    graph = import_graph(pkg)
    assert graph["gpt_tui.engine.runs"] == {"gpt_tui.engine.model"}
    assert graph["gpt_tui.engine.model"] == {"gpt_tui.engine.runs"}
    assert graph["gpt_tui.engine.loss"] == {"gpt_tui.engine.runs", "gpt_tui.engine.model"}
    assert graph["gpt_tui.cli"] == {"gpt_tui.engine.loss", "gpt_tui.engine.runs"}
    assert cycles(graph) == [["gpt_tui.engine.model", "gpt_tui.engine.runs"]]


def test_gpt_tui_has_no_import_cycles() -> None:
    graph = import_graph()
    assert "gpt_tui.engine.model" in graph["gpt_tui.engine.trainer"]  # the source was read
    unexpected = [c for c in cycles(graph) if frozenset(c) not in KNOWN_CYCLES]
    assert not unexpected, "import cycles:\n" + "\n".join(
        f"{', '.join(c)} (e.g. {_path_round(graph, c)})" for c in unexpected
    )


def test_known_cycles_are_listed_only_while_they_hold() -> None:
    """An entry in KNOWN_CYCLES goes as soon as its cycle is gone, so the list never hides a new one."""
    graph = import_graph()
    found = [set(c) for c in cycles(graph)]
    gone = [sorted(c) for c in KNOWN_CYCLES if not any(c <= f for f in found)]
    assert not gone, f"no longer cycles, remove them from KNOWN_CYCLES: {gone}"


def test_option_tables_load_without_torch() -> None:
    """Forms and parsers list presets and check sampling settings before any model exists."""
    code = (
        "import sys\n"
        "import gpt_tui.engine.presets, gpt_tui.engine.sampling_config, gpt_tui.engine.text_stream\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
