"""The package is acyclic and layered (sepalm_espnet.LAYERS), imports inside functions included.

The modules are read, not imported: the graph is every `import` / `from ... import` of a
sepalm_espnet module anywhere in a file's syntax tree.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

import sepalm_espnet

PACKAGE = "sepalm_espnet"
ROOT = Path(sepalm_espnet.__file__).resolve().parent


def module_files() -> Dict[str, Path]:
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def defining_module(name: str) -> str:
    """The module `name` is or lies in (`pkg.mod.Class` -> `pkg.mod`)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imported_modules(module: str) -> Set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names]  # a submodule or a name in `base`
        else:
            continue
        imported |= {defining_module(name) for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")}
    return imported - {module}


GRAPH = {module: imported_modules(module) for module in MODULES}
LAYER_NAMES = [name for name, _ in sepalm_espnet.LAYERS]


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest entry that is `module` or a package above it."""
    matches = [
        (len(entry), index)
        for index, (_, entries) in enumerate(sepalm_espnet.LAYERS)
        for entry in entries
        if module == entry or module.startswith(entry + ".")
    ]
    return max(matches)[1]


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle as [a, b, ..., a], or [] (depth-first search)."""
    state: Dict[str, str] = {}
    stack: List[str] = []

    def visit(module: str) -> List[str]:
        state[module] = "open"
        stack.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return stack[stack.index(imported):] + [imported]
            if imported not in state:
                cycle = visit(imported)
                if cycle:
                    return cycle
        stack.pop()
        state[module] = "done"
        return []

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return []


def test_the_graph_sees_function_level_and_from_imports():
    assert "sepalm_espnet.tasks.loading" in GRAPH["sepalm_espnet.synthesizer.t2s"]  # inside a function
    assert "sepalm_espnet.zoo" in GRAPH["sepalm_espnet.pipeline"]  # `from sepalm_espnet import zoo`
    assert "sepalm_espnet.pipeline" in GRAPH["sepalm_espnet.inference"]


def test_cycles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_a_higher_layer():
    violations = [
        f"{module} ({LAYER_NAMES[layer_of(module)]}) imports {imported} ({LAYER_NAMES[layer_of(imported)]})"
        for module, imports in sorted(GRAPH.items())
        for imported in sorted(imports)
        if layer_of(imported) > layer_of(module)
    ]
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize("module, layer", [
    ("sepalm_espnet.synthesizer.t2s_model", "model"),
    ("sepalm_espnet.synthesizer.t2s", "runtime"),
    ("sepalm_espnet.tasks.loading", "tasks"),
    ("sepalm_espnet.zoo", "zoo"),
    ("sepalm_espnet.inference", "api"),
    ("sepalm_espnet.bin.sepalm_separate", "bin"),
])
def test_layers_are_assigned_as_documented(module, layer):
    assert LAYER_NAMES[layer_of(module)] == layer
    assert LAYER_NAMES == ["model", "tasks", "zoo", "runtime", "pipeline", "api", "bin"]


def test_layer_entries_name_existing_modules():
    entries = [entry for _, names in sepalm_espnet.LAYERS for entry in names]
    assert [entry for entry in entries if entry not in MODULES] == []
    assert len(entries) == len(set(entries))


def test_inference_has_no_lazy_attribute_hook():
    """`from sepalm_espnet.inference import SepALM` is a plain import, not a module __getattr__."""
    tree = ast.parse(MODULES["sepalm_espnet.inference"].read_text(encoding="utf-8"))
    assert not [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"]
    from sepalm_espnet import inference, pipeline

    assert inference.SepALM is pipeline.SepALM and inference.SeparatedSpeaker is pipeline.SeparatedSpeaker
