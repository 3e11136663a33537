"""Imports in fastgru/ and kernels/ (installed as fastgru.kernels) run one way: from higher layers
to lower ones, with no circle between modules.

The walker parses every module's source with ``ast`` (nothing is imported), takes every import
statement, those inside functions too, and resolves it to the fastgru modules it names: relative
imports against the importing module's package, ``from pkg import name`` to the submodule
``pkg.name`` where one exists, else to the submodule ``pkg/__init__.py`` imports ``name`` from
(a re-export), else to ``pkg`` itself (its ``__init__``). Dynamic imports
(``launchers/loader.py``'s ``importlib.import_module`` of kernel modules) are not seen; they go
down, from the launchers to the kernels, by construction.

What a cycle means here: module A names something of module B and B names something of A, directly
or through others, whether the import runs at import time or is deferred into a function. A
deferred import keeps Python from failing on a half-initialised module, but neither module can be
read, tested or placed in a layer without the other, so a deferred circle is still a circle. The
one kind of edge left out is a package's ``__init__`` importing its own submodules: that is a
re-export (the package's public namespace), not a dependency of one job on another.

Every import must also go to the same or a lower layer of ``LAYERS`` below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The layer order, bottom first: (layer, module-name prefixes, what lives there). A module belongs
# to the layer of the longest prefix that names it or a package above it.
LAYERS = (
    ("kernels", ("fastgru.kernels",),
     "@triton.jit kernels and their helpers: triton and each other only"),
    ("base", ("fastgru.backend", "fastgru.gpu", "fastgru.reference", "fastgru.testing"),
     "which implementation runs, the GPU's facts, the reference math, the numerics contract"),
    ("launchers", ("fastgru.launchers",),
     "allocate outputs, plan and build each kernel launch; the TF32 rule"),
    ("ops", ("fastgru.ops",),
     "torch.library custom ops, their fake implementations and autograd; the op guard"),
    ("functional", ("fastgru.functional",),
     "the public functions: checks, layout, autocast, the backend choice; ONNX export forms"),
    ("nn", ("fastgru.nn",),
     "the nn.Modules, convert() and explain()"),
    ("interop", ("fastgru.interop",),
     "weights to and from Keras and ONNX (builds nn modules)"),
    ("app", ("fastgru", "fastgru.__main__", "fastgru.bench", "fastgru.examples"),
     "the package's namespace, python -m fastgru, its benchmark harness, the examples"),
)


def module_files(root: Path = REPO) -> dict[str, Path]:
    """Module name -> source file for every module of fastgru/ and kernels/ under ``root``."""
    found = {}
    for top, package in ((root / "fastgru", "fastgru"), (root / "kernels", "fastgru.kernels")):
        for path in sorted(top.rglob("*.py")):
            parts = list(path.relative_to(top).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(name: str, modules) -> str | None:
    """The longest prefix of the dotted ``name`` that is a known module (None outside fastgru)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _statements(module: str, path: Path):
    """(base module, names) of each import in ``path``, relative ones resolved: ``import a.b``
    gives ("a.b", ()), ``from .x import y`` (in package p) ("p.x", ("y",))."""
    package = module if _is_package(path) else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([base] if base else []))
            yield base, tuple(alias.name for alias in node.names)


def reexports(files) -> dict[str, dict[str, str]]:
    """Package -> {name: the submodule its ``__init__`` imports it from}: ``from fastgru.nn
    import GRU`` depends on nn/recurrent.py, where GRU lives, not on the package as a whole."""
    out = {}
    for module, path in files.items():
        if _is_package(path):
            out[module] = {name: base for base, names in _statements(module, path)
                           if base.startswith(module + ".") for name in names}
    return out


def imports_of(module: str, path: Path, files, exported) -> set[str]:
    """The fastgru modules ``module`` (source ``path``) imports, anywhere in its body."""
    out = set()
    for base, names in _statements(module, path):
        targets = [base] if not names else [
            f"{base}.{name}" if f"{base}.{name}" in files else exported.get(base, {}).get(name, base) for name in names]
        for target in targets:
            resolved = _resolve(target, files)
            if resolved is not None and resolved != module:
                out.add(resolved)
    return out


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """Module -> the modules it imports, without a package's edges to its own submodules."""
    files = module_files(root)
    exported = reexports(files)
    graph = {}
    for module, path in files.items():
        edges = imports_of(module, path, files, exported)
        if _is_package(path):
            edges = {e for e in edges if not e.startswith(module + ".")}
        graph[module] = edges
    return graph


def layer_of(module: str) -> int:
    best, level = -1, None
    for index, (_, prefixes, _) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), index
    if level is None:
        raise AssertionError(f"{module} is in no layer of LAYERS: add it where it belongs")
    return level


def upward_imports(graph) -> list[str]:
    """'a (layer) -> b (layer)' for each import that goes to a higher layer."""
    bad = []
    for module, edges in sorted(graph.items()):
        for target in sorted(edges):
            if layer_of(target) > layer_of(module):
                bad.append(f"{module} ({LAYERS[layer_of(module)][0]}) -> {target} ({LAYERS[layer_of(target)][0]})")
    return bad


def cycles(graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_walker_sees_the_package(graph):
    """The walk itself: every layer holds modules, and imports inside functions are seen."""
    assert {LAYERS[layer_of(m)][0] for m in graph} == {name for name, _, _ in LAYERS}
    assert "fastgru.functional.onnx_forms" in graph["fastgru.nn.recurrent"]  # GRU._export's deferred import
    assert "fastgru.nn.recurrent" in graph["fastgru.interop.layer_weights"]  # `from ..nn import GRU`: a re-export
    assert "fastgru.launchers.gru_layer" in graph["fastgru.ops.gru_layer"]


def test_no_import_circle(graph):
    assert cycles(graph) == []


def test_imports_go_down_the_layers(graph):
    assert upward_imports(graph) == []
