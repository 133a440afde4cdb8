"""The package's import graph (read from the source, module-level and function-level imports alike) has no
cycle, and every import goes to the importing module's own floor or a lower one (design.md, section 2):

    config, runtime -> spec -> arrays, cost, workloads -> reference -> kernels (cpu/, cuda/ launches)
    -> dispatch -> tuning -> public functions (api, grad, separable, conv1d, shuffle, torch, cuda/run)
    -> tools (timing, peers, limits, bench, report, plot, warmup, cli)

A function-level import is still an edge: it may only defer an optional heavy part, never hide a cycle."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "numbaconv"

FLOORS = [
    {"config", "runtime"},
    {"spec"},
    {"arrays", "cost", "workloads"},
    {"reference"},
    {"cpu", "cpu.*", "cuda", "cuda.launch", "cuda.fastlaunch", "cuda.epilogue", "cuda.gemm", "cuda.depthwise",
     "cuda.launches"},
    {"dispatch"},
    {"tuning"},
    {"api", "grad", "separable", "convolution1d", "shuffle", "torch", "dask", "cuda.run", "cuda.grad"},
    {"timing", "peers", "limits", "bench", "report", "plot", "warmup", "dask_demo", "cli", "cuda.inventory", "", "__main__"},
]


def floor(module: str) -> int:
    for level, names in enumerate(FLOORS):
        if module in names or any(name.endswith(".*") and module.startswith(name[:-1]) for name in names):
            return level
    raise AssertionError(f"numbaconv.{module} has no floor in tests/test_architecture.py: place it in FLOORS")


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: pathlib.Path, known) -> set[str]:
    """The package modules ``name`` imports, anywhere in its source (relative names resolved)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [part for part in package if part]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "numbaconv":
                target = node.module.partition(".")[2]
            else:
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}" if target else alias.name
                found.add(candidate if candidate in known else target)
        elif isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[2] for alias in node.names if alias.name.split(".")[0] == "numbaconv"}
    resolved = set()
    for target in found:
        while target not in known and "." in target:
            target = target.rsplit(".", 1)[0]
        if target in known and target != name:
            resolved.add(target)
    return resolved


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


@pytest.mark.parametrize("name", sorted(GRAPH), ids=lambda name: name or "numbaconv")
def test_imports_go_down_the_floors(name):
    upward = sorted(target for target in GRAPH[name] if floor(target) > floor(name))
    assert not upward, f"numbaconv.{name} (floor {floor(name)}) imports from a floor above it: {upward}"


def test_no_import_cycle():
    state: dict[str, int] = {}

    def visit(name, trail):
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycle = trail[trail.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(f"numbaconv.{n}".rstrip(".") for n in cycle))
            if target not in state:
                visit(target, trail + [target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])


def test_the_checker_sees_a_cycle_and_a_function_level_import(tmp_path):
    """The reader above is not blind: a cycle through a function-level import is an edge it reports."""
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import g\n")
    known = {"a", "b"}
    assert imports("b", tmp_path / "b.py", known) == {"a"} and imports("a", tmp_path / "a.py", known) == {"b"}
