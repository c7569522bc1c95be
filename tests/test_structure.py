"""The package's shape, as rules a change cannot silently break.

* No import cycle between the package's modules, counting every import statement
  wherever it stands (lazy imports inside functions and ``TYPE_CHECKING`` blocks too),
  so a cycle cannot be hidden by moving an import into a function.
* No module over ``MAX_LINES`` lines: one concept per module.
* No function over cyclomatic complexity ``MAX_COMPLEXITY`` as radon counts it (``with``,
  comprehensions and boolean operators included), except schema compilation and the
  sandbox's data generator, whose branching mirrors JSON Schema's keywords.
* The README's module map names exactly the package's modules.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from radon.complexity import cc_visit
from radon.visitors import Function

import webtask_frames

PACKAGE = Path(webtask_frames.__file__).parent
ROOT = PACKAGE.parent
MAX_LINES = 600
MAX_COMPLEXITY = 20
# (module, qualified function name prefix) where branching follows JSON Schema's keywords.
COMPLEXITY_EXEMPT = (
    ("webtask_frames._tables.certify", "_Compiler."),
    ("webtask_frames.sandbox._datagen", ""),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str, path: Path) -> Iterator[str]:
    """Every package module ``name`` imports, from any statement anywhere in the file."""
    base = name if _is_package(name) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one.
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target in MODULES and target != name:
                yield target


def _graph() -> dict[str, set[str]]:
    return {name: set(_imports(name, path)) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


# The layers, bottom up (the README's module map): a module may import its own layer and
# the ones below, never one above. The sandbox stands apart: it imports nothing of ours.
LAYERS = (
    ("webtask_frames._version", "webtask_frames._exceptions", "webtask_frames._redact"),
    ("webtask_frames._tables",),
    ("webtask_frames._wire",),
    ("webtask_frames._options", "webtask_frames._materialize", "webtask_frames._sinks"),
    ("webtask_frames._read",),
    ("webtask_frames._batch",),
    ("webtask_frames._demo", "webtask_frames.cli", "webtask_frames"),
)


def _layer(module: str) -> int | None:
    """The layer of ``module``: the package itself by name, everything else by its
    first component below the package (``webtask_frames._wire.client`` -> ``_wire``)."""
    parts = module.split(".")
    top = ".".join(parts[:2])
    for rank, members in enumerate(LAYERS):
        if module in members or (len(parts) > 1 and top in members and top != parts[0]):
            return rank
    return None


def test_imports_never_go_up_a_layer() -> None:
    upward = sorted(
        (name, target)
        for name, targets in _graph().items()
        for target in targets
        if (a := _layer(name)) is not None and (b := _layer(target)) is not None and b > a
    )
    assert upward == []


def test_the_sandbox_imports_nothing_of_the_library() -> None:
    sandbox = "webtask_frames.sandbox"
    outside = sorted(
        (name, target)
        for name, targets in _graph().items()
        if name.startswith(sandbox)
        for target in targets
        if not target.startswith(sandbox)
    )
    assert outside == []


def test_every_module_has_a_layer() -> None:
    homeless = [
        m for m in MODULES if _layer(m) is None and not m.startswith("webtask_frames.sandbox")
    ]
    assert homeless == []


def test_the_import_graph_is_read() -> None:
    graph = _graph()
    # A known edge of each kind: a top-level relative import and a lazy one in a function.
    assert "webtask_frames._wire.client" in graph["webtask_frames._read"]
    assert "webtask_frames._demo" in graph["webtask_frames.cli"]


def test_cycle_detection_finds_a_lazy_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by concept"


def _with_statements(source: str) -> dict[int, int]:
    """``with`` / ``async with`` statements per function (by its first line), not counting
    nested functions: radon 6 does not count them, the project's rule does."""
    counts: dict[int, int] = {}

    def visit(node: ast.AST, owner: int | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                counts.setdefault(child.lineno, 0)
                visit(child, child.lineno)
                continue
            if isinstance(child, ast.With | ast.AsyncWith) and owner is not None:
                counts[owner] += 1
            visit(child, owner)

    visit(ast.parse(source), None)
    return counts


def _complexities(source: str) -> Iterator[tuple[str, int]]:
    """(qualified function name, complexity): radon's count plus one per ``with``."""
    withs = _with_statements(source)

    def walk(block: Function, prefix: str) -> Iterator[tuple[str, int]]:
        name = f"{prefix}{block.fullname}"
        yield name, block.complexity + withs.get(block.lineno, 0)
        for closure in block.closures:
            yield from walk(closure, f"{name}.")

    for block in cc_visit(source):
        if isinstance(block, Function):  # methods come flattened, with their class name
            yield from walk(block, "")


def _exempt(module: str, function: str) -> bool:
    return any(module == m and function.startswith(f) for m, f in COMPLEXITY_EXEMPT)


def test_complexity_counts_with_comprehensions_and_boolean_operators() -> None:
    source = (
        "class C:\n"
        "    def f(self, xs):\n"
        "        with open('x'):\n"
        "            return [x for x in xs if x and x > 1]\n"
    )
    # 1 + with + for + if + and
    assert dict(_complexities(source)) == {"C.f": 5}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_function_complexity(name: str) -> None:
    source = MODULES[name].read_text(encoding="utf-8")
    too_complex = {
        function: score
        for function, score in _complexities(source)
        if score > MAX_COMPLEXITY and not _exempt(name, function)
    }
    assert too_complex == {}, f"{name}: split these functions"


def test_readme_module_map_matches_the_tree() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Module map", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\s*(?:[│├└─ ]*)([\w/]+\.py)\b", section, re.MULTILINE))
    actual = {
        str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py") if path.name != "__main__.py"
    }
    assert listed == actual
