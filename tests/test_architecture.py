"""The kernel's shape: no import circle runs through core's top-level modules (lazy and
TYPE_CHECKING imports count: they are how a circle hides), and the import-linter contracts in
pyproject.toml name every kernel module and every feature, so a new one cannot slip past them;
and no module or function in core, servers or tools outgrows the sizes issue 18 set."""

from __future__ import annotations

import ast
import pkgutil
import tomllib
from pathlib import Path
from typing import Any

import grimp

import core
from core.features import feature_names

ROOT = Path(__file__).resolve().parent.parent
# Top-level modules that assemble features on purpose (demo data, the bootstrap installation):
# they stand above the features, so they are not kernel.
COMPOSITION_ROOTS = {"core.demo", "core.seed"}
# The platform every feature stands on: importable by all, so not in the independent set.
PLATFORM_FEATURE = "core.tenancy"


def kernel_modules() -> set[str]:
    return {f"core.{m.name}" for m in pkgutil.iter_modules(core.__path__) if not m.ispkg}


def features() -> set[str]:
    return {f"core.{name}" for name in feature_names()}


def circles_through(graph: grimp.ImportGraph, modules: set[str]) -> list[tuple[str, ...]]:
    """Each import circle through one of `modules`, as the module followed by the shortest chain
    leading back to it from one of its direct imports."""
    found: list[tuple[str, ...]] = []
    for module in sorted(modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if chain is not None:
                found.append((module, *chain))
    return found


def contract(name: str) -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    matching = [c for c in contracts if c["name"] == name]
    assert len(matching) == 1, f"pyproject.toml has no single import-linter contract {name!r}"
    return matching[0]


def test_no_import_circle_runs_through_the_kernel() -> None:
    graph = grimp.build_graph("core", include_external_packages=False)
    assert circles_through(graph, kernel_modules()) == []


def test_a_circle_is_found_however_long() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]:
        graph.add_import(importer=importer, imported=imported)
    assert circles_through(graph, {"a"}) == [("a", "b", "c", "a")]
    assert circles_through(graph, {"d"}) == []


def test_the_kernel_contract_names_every_kernel_module_and_feature() -> None:
    assert kernel_modules() >= COMPOSITION_ROOTS, "a composition root is gone: update this list"
    below = contract("the kernel sits below the features")
    assert set(below["source_modules"]) == kernel_modules() - COMPOSITION_ROOTS
    assert set(below["forbidden_modules"]) == features()


def test_the_feature_contracts_name_every_feature() -> None:
    assert PLATFORM_FEATURE in features()
    independent = contract("features are independent")
    assert set(independent["modules"]) == features() - {PLATFORM_FEATURE}
    tenancy = contract("tenancy sits below the other features")
    assert tenancy["source_modules"] == [PLATFORM_FEATURE]
    assert set(tenancy["forbidden_modules"]) == features() - {PLATFORM_FEATURE}


def test_every_declared_seam_says_why() -> None:
    """Each ignored import is a seam someone decided on: a comment above it gives the reason."""
    text = (ROOT / "pyproject.toml").read_text().splitlines()
    seams = [i for i, line in enumerate(text) if line.strip().startswith('"core.') and " -> " in line]
    assert seams, "no declared seams found: has the contract section moved?"
    for i in seams:
        above = i - 1
        while text[above].strip().startswith('"core.'):
            above -= 1
        while text[above - 1].strip().startswith("#"):
            above -= 1
        assert text[above].strip().startswith("# Seam"), f"no reason given above {text[i].strip()}"


# Issue 18's sizes: a module a newcomer can read in one sitting, a function that fits a screen.
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60


def sources() -> list[Path]:
    return sorted(p for door in ("core", "servers", "tools") for p in (ROOT / door).rglob("*.py"))


def oversized(paths: list[Path]) -> list[str]:
    """Modules over MAX_MODULE_LINES and functions over MAX_FUNCTION_LINES (decorators not
    counted), as `path:line name (n lines)`."""
    found = []
    for path in paths:
        text, name = path.read_text(), str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        if (n := len(text.splitlines())) > MAX_MODULE_LINES:
            found.append(f"{name} ({n} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{name}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_module_or_function_is_over_its_size() -> None:
    assert oversized(sources()) == []


def test_the_size_check_finds_a_long_module_and_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    long_function = tmp_path / "f.py"
    long_function.write_text(f"def f() -> None:\n{body}\n")
    long_module = tmp_path / "m.py"
    long_module.write_text("\n".join(f"x{i} = {i}" for i in range(MAX_MODULE_LINES + 1)) + "\n")
    fine = tmp_path / "ok.py"
    fine.write_text("def g() -> None:\n" + "\n".join(body.splitlines()[1:]) + "\n")
    found = oversized([long_function, long_module, fine])
    assert found == [
        f"{long_function}:1 f ({MAX_FUNCTION_LINES + 1} lines)",
        f"{long_module} ({MAX_MODULE_LINES + 1} lines)",
    ]
