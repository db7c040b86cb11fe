"""The store layer imports no Django and nothing from the layers above it (STYLE.md A)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import litetasks

PACKAGE = Path(litetasks.__file__).resolve().parent
DJANGO_FREE = [
    "store",
    "schema",
    "connection",
    "records",
    "exceptions",
    "liveness",
    "config",
    "producer",
    "copies",
    "damage",
]
# The layers above the store: importing one would pull Django in, or invert the layering.
UPPER_LAYERS = {"backend", "execution", "compat"}
DJANGO_PACKAGES = {"django", "django_tasks"}


def test_the_store_layer_imports_with_django_absent():
    modules = ", ".join(f"litetasks.{name}" for name in DJANGO_FREE)
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["django"] = None  # any "import django..." now raises ImportError
        sys.modules["django_tasks"] = None
        import {modules}
        loaded = sorted(n for n in sys.modules if n.split(".")[0] in ("django", "django_tasks")
                        and sys.modules[n] is not None)
        assert not loaded, loaded
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=PACKAGE.parent,
        check=False,
    )

    assert done.returncode == 0, done.stderr


def imported_modules(path: Path) -> set[str]:
    """Return the absolute names of every module ``path`` imports, wherever the import sits."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:  # relative to the litetasks package (these modules sit at its top)
                base = ".".join(filter(None, ["litetasks", node.module]))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def store_layer() -> list[str]:
    """Return the Django-free modules plus every litetasks module they import, transitively."""
    seen: set[str] = set()
    todo = list(DJANGO_FREE)
    while todo:
        name = todo.pop()
        if name in seen or not (PACKAGE / f"{name}.py").exists():
            continue
        seen.add(name)
        todo += [
            m.split(".")[1]
            for m in imported_modules(PACKAGE / f"{name}.py")
            if "." in m and m.startswith("litetasks.")
        ]
    return sorted(seen)


@pytest.mark.parametrize("name", store_layer())
def test_store_layer_module_imports_neither_django_nor_upper_layers(name: str):
    imports = imported_modules(PACKAGE / f"{name}.py")

    roots = {module.split(".")[0] for module in imports}
    assert not roots & DJANGO_PACKAGES
    forbidden = {f"litetasks.{layer}" for layer in UPPER_LAYERS}
    assert not {m for m in imports if any(m == f or m.startswith(f + ".") for f in forbidden)}


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("import django.tasks", {"django.tasks"}),
        ("from django.tasks import task", {"django.tasks", "django.tasks.task"}),
        ("from . import backend", {"litetasks", "litetasks.backend"}),
        ("from .compat import x", {"litetasks.compat", "litetasks.compat.x"}),
        (
            "def f():\n    from .execution import run",
            {"litetasks.execution", "litetasks.execution.run"},
        ),
    ],
)
def test_imported_modules_sees_every_form_of_import(tmp_path: Path, source: str, found: set[str]):
    module = tmp_path / "module.py"
    module.write_text(source + "\n")

    assert imported_modules(module) == found
