"""The benchmarks are not run by CI (too heavy for it), so at least every name they import from
the project must exist: a rename must not leave `make bench` broken."""

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda path: path.name)
def test_benchmark_imports_resolve(script: Path) -> None:
    tree = ast.parse(script.read_text())
    imports = [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lifecycle_assets")
        for alias in node.names
    ]
    assert imports, f"{script.name} imports nothing from the project"
    missing = [
        f"{module}.{name}"
        for module, name in imports
        if not hasattr(importlib.import_module(module), name)
    ]
    assert not missing, f"{script.name} imports names that no longer exist: {missing}"
