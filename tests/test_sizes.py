"""Sizes: no module over 500 lines, no class over 300, no function over 40, in all of litetasks.

What must stay over a limit is on ``ALLOWED`` with a one-line reason; an entry that is no
longer over its limit fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import litetasks

PACKAGE = Path(litetasks.__file__).parent
MODULE_MAX = 500
CLASS_MAX = 300
FUNCTION_MAX = 40

# "path/relative/to/litetasks.py" or "path.py::Qualified.name" -> why it stays over.
ALLOWED: dict[str, str] = {}


def _sizes() -> dict[str, tuple[str, int]]:
    """Every module, class and function of the package: its kind and length in lines."""
    sizes: dict[str, tuple[str, int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        name = path.relative_to(PACKAGE).as_posix()
        sizes[name] = ("module", len(source.splitlines()))
        _walk(ast.parse(source), f"{name}::", sizes)
    return sizes


def _walk(node: ast.AST, prefix: str, sizes: dict[str, tuple[str, int]]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            assert child.end_lineno is not None
            kind = "class" if isinstance(child, ast.ClassDef) else "function"
            # Decorators are not part of the body's length.
            sizes[prefix + child.name] = (kind, child.end_lineno - child.lineno + 1)
            _walk(child, f"{prefix}{child.name}.", sizes)
        else:
            _walk(child, prefix, sizes)


def _over(sizes: dict[str, tuple[str, int]]) -> dict[str, str]:
    limits = {"module": MODULE_MAX, "class": CLASS_MAX, "function": FUNCTION_MAX}
    return {
        name: f"{kind} of {length} lines (limit {limits[kind]})"
        for name, (kind, length) in sizes.items()
        if length > limits[kind]
    }


def test_no_module_class_or_function_is_over_its_limit() -> None:
    over = _over(_sizes())
    unexplained = {name: why for name, why in over.items() if name not in ALLOWED}
    assert not unexplained, "split these, or add them to ALLOWED with a reason: " + "; ".join(
        f"{name}: {why}" for name, why in sorted(unexplained.items())
    )


def test_every_allowed_entry_is_still_over_its_limit() -> None:
    over = _over(_sizes())
    stale = sorted(name for name in ALLOWED if name not in over)
    assert not stale, f"no longer over a limit: remove them from ALLOWED: {stale}"


def test_the_measure_sees_nested_functions_and_methods() -> None:
    sizes = _sizes()
    assert sizes["_runtime/pool.py::WorkerPool.run"][0] == "function"
    assert sizes["_runtime/pool.py::WorkerPool"][0] == "class"
    assert sizes["_runtime/pool.py"][0] == "module"
