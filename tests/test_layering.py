"""Layers that point one way, and no import cycle (docs/design.md, "Layout").

An ast scan of every module of mlx_rnn/ and torch_ref/: top-level imports, imports inside
functions and ``if TYPE_CHECKING:`` blocks alike. The rules:

- ``mlx_rnn/core`` imports neither mlx nor torch, and of the project only ``core`` itself;
- ``mlx_rnn/run`` imports neither framework, and of the project only ``core`` and ``run``
  (a framework is reached through ``core/backend.py``, by name);
- the library (everything but ``mlx_rnn/tools``) never imports ``mlx_rnn/tools``;
- the MLX modules never import torch or ``torch_ref``, and import ``mlx_rnn.device`` before
  ``mlx.core`` (its import side effects); ``torch_ref`` never imports mlx, and of ``mlx_rnn``
  only ``core``;
- neither framework imports ``run`` except the deliberate exceptions in :data:`EXCEPTIONS`;
- the module import graph has no cycle;
- no module imports another module's private name (``from m import _x``), except those in
  :data:`PRIVATE_EXCEPTIONS`.

Imports by a computed name (``importlib.import_module`` in ``core/backend.py``) are not seen:
that is the sanctioned way to reach a framework.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mlx_rnn", "torch_ref")

#: (importer, imported): the deliberate exceptions to the rules, each listed in docs/design.md.
EXCEPTIONS = {
    # the Trainer of each framework derives from run/epoch.py's EpochLoop, the one epoch loop
    ("mlx_rnn.train", "mlx_rnn.run.epoch"): "mlx_rnn/train.py",
    ("torch_ref.train", "mlx_rnn.run.epoch"): "torch_ref/train.py",
}

#: (importer, module, name): private names still imported across modules, each a known next step.
PRIVATE_EXCEPTIONS: set = set()


def module_files() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__) for every module of PACKAGES."""
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def from_module(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    """The module a ``from ... import`` statement in ``module`` imports from (relative ones
    resolved)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_pkg else module.split(".")[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def imported_names(module: str, is_pkg: bool, node: ast.Import | ast.ImportFrom, known) -> list[str]:
    """The modules one import statement names: ``from P import m`` names the module P.m when there
    is one, else P."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = from_module(module, is_pkg, node)
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]


def import_graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(project module -> the project modules it imports, project module -> the outside
    top-level packages it imports), over every import statement anywhere in the file."""
    mods = module_files()
    internal, external = {}, {}
    for name, (path, is_pkg) in mods.items():
        internal[name], external[name] = set(), set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "module", None) == "__future__":
                continue
            for target in imported_names(name, is_pkg, node, mods):
                if target.split(".")[0] in PACKAGES:
                    while target not in mods:  # mlx_rnn.core.config.X -> mlx_rnn.core.config
                        target = target.rpartition(".")[0]
                    if target != name:
                        internal[name].add(target)
                else:
                    external[name].add(target.split(".")[0])
    return internal, external


def private_imports() -> set[tuple[str, str, str]]:
    """(importer, module, name) for every ``from module import _name`` across modules of the
    project, where ``_name`` is not itself a module (``from mlx_rnn import _blas`` is a package)."""
    mods = module_files()
    found = set()
    for name, (path, is_pkg) in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.ImportFrom) or node.module == "__future__":
                continue
            module = from_module(name, is_pkg, node)
            if module.split(".")[0] not in PACKAGES or module == name:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__") \
                        and f"{module}.{alias.name}" not in mods:
                    found.add((name, module, alias.name))
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def layer(module: str) -> str:
    if module.startswith("torch_ref"):
        return "torch_ref"
    for part in ("core", "run", "tools"):
        if module == f"mlx_rnn.{part}" or module.startswith(f"mlx_rnn.{part}."):
            return part
    return "mlx"  # mlx_rnn itself, its framework modules, native/ and _blas/


#: layer -> the project layers it may import
ALLOWED = {
    "core": {"core"},
    "run": {"core", "run"},
    "mlx": {"core", "mlx"},
    "torch_ref": {"core", "torch_ref"},
    "tools": {"core", "run", "mlx", "torch_ref", "tools"},
}
#: layer -> the outside packages it must not import
FORBIDDEN = {"core": {"mlx", "torch"}, "run": {"mlx", "torch"}, "mlx": {"torch"}, "torch_ref": {"mlx"}, "tools": set()}

GRAPH, EXTERNAL = import_graph()


def test_the_scan_sees_every_kind_of_import():
    """Imports inside functions and relative ones are part of the graph (else a rule could pass
    by not looking)."""
    assert "mlx_rnn.core.prepare" in GRAPH["mlx_rnn.run.plan"]  # inside download_data
    assert "mlx_rnn.tools.bench.report" in GRAPH["mlx_rnn.tools.bench.benchmark"]  # inside main, relative
    assert "mlx_rnn.core.checkpoint" in GRAPH["torch_ref.models"]
    assert "mlx" in EXTERNAL["mlx_rnn.lstm"] and "torch" in EXTERNAL["torch_ref.models"]
    assert len(GRAPH) > 80


def test_each_layer_imports_only_what_it_may():
    bad = []
    for module, targets in sorted(GRAPH.items()):
        mine = layer(module)
        for target in sorted(targets):
            if layer(target) not in ALLOWED[mine] and (module, target) not in EXCEPTIONS:
                bad.append(f"{module} ({mine}) imports {target} ({layer(target)})")
        for package in sorted(EXTERNAL[module] & FORBIDDEN[mine]):
            bad.append(f"{module} ({mine}) imports {package}")
    assert not bad, "\n".join(bad)


def test_the_library_never_imports_tools():
    users = sorted(m for m, targets in GRAPH.items() if layer(m) != "tools"
                   and any(layer(t) == "tools" for t in targets))
    assert not users, users


def test_the_exceptions_are_real_and_documented():
    """Every listed exception still exists (else it should leave the list) and docs/design.md
    names it."""
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    for (module, target), path in EXCEPTIONS.items():
        assert target in GRAPH[module], f"{module} no longer imports {target}: drop the exception"
        assert f"`{path}`" in design, f"docs/design.md does not list the exception {path} -> {target}"


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle)


def test_no_private_name_is_imported_across_modules():
    found = private_imports()
    assert found <= PRIVATE_EXCEPTIONS, "\n".join(f"{a} imports {m}.{n}" for a, m, n in sorted(found - PRIVATE_EXCEPTIONS))
    stale = sorted(PRIVATE_EXCEPTIONS - found)
    assert not stale, f"no longer imported, drop from PRIVATE_EXCEPTIONS: {stale}"


def test_the_mlx_modules_import_device_before_mlx():
    mods = module_files()
    checked, bad = 0, []
    for name, (path, is_pkg) in sorted(mods.items()):
        if layer(name) != "mlx":
            continue
        device_seen = False
        for node in ast.parse(path.read_text(encoding="utf-8"), str(path)).body:  # the top level, in order
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "module", None) == "__future__":
                continue
            targets = imported_names(name, is_pkg, node, mods)
            device_seen = device_seen or "mlx_rnn.device" in targets
            if any(t == "mlx" or t.startswith("mlx.") for t in targets):
                checked += 1
                if not device_seen:
                    bad.append(name)
                break
    assert checked >= 8, checked  # lstm, gru, layers, models, train ... import mlx at the top
    assert not bad, f"import mlx_rnn.device before mlx in: {bad}"


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) in (["a", "b", "c", "a"],)
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
