"""The package's folders are its layers, and imports point one way only (docs/architecture.md).

storage (``_store``) <- Django integration (``_django``) <- runtime (``_runtime``) <- command
line (``_cli``). Every module of a layer folder may import the modules of its own layer and of
the layers below, ``litetasks.exceptions`` (a leaf: its class paths are stored in queue files)
and the package itself (``__version__``; it imports nothing else eagerly). The modules at the top
of the package are the public API and the entry points (Django's app config and management
command, ``litetasks.testing``): they may import any layer, and no layer imports them. Each
layer's files come from its folder, so a new module is checked as soon as it exists.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import litetasks

PACKAGE = Path(litetasks.__file__).resolve().parent
LAYERS = ("_store", "_django", "_runtime", "_cli")
SHARED = {"litetasks", "litetasks.exceptions"}
DJANGO_PACKAGES = {"django", "django_tasks"}


def module_name(path: Path) -> str:
    """``litetasks/_store/store.py`` -> ``litetasks._store.store``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str | None = None) -> set[str]:
    """Return the absolute names of every module ``path`` imports, wherever the import sits.

    ``name`` is the module's dotted name (default: derived from its place in the package), to
    resolve relative imports.
    """
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *filter(None, [node.module])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def layer_of(module: str) -> int | None:
    """The index of ``module``'s layer in ``LAYERS``; None for the top of the package."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None


def layer_modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def is_module(name: str) -> bool:
    """Whether ``name`` names a module or package of litetasks (not a name inside one)."""
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").exists() or (PACKAGE / relative).is_dir()


def violations(path: Path) -> list[str]:
    """The litetasks modules ``path`` imports against the direction of the layers."""
    own = layer_of(module_name(path))
    assert own is not None
    wrong = []
    for imported in sorted(imported_modules(path)):
        if imported.split(".")[0] != "litetasks" or imported in SHARED or not is_module(imported):
            continue
        target = layer_of(imported)
        if target is None or target > own:
            wrong.append(imported)
    return wrong


def test_every_layer_folder_holds_modules():
    for layer in LAYERS:
        assert len(layer_modules(layer)) > 1, layer


@pytest.mark.parametrize(
    "path", [path for layer in LAYERS for path in layer_modules(layer)], ids=module_name
)
def test_layer_module_imports_only_its_own_layer_and_those_below(path: Path):
    assert violations(path) == []


@pytest.mark.parametrize("path", layer_modules("_store"), ids=module_name)
def test_storage_module_imports_no_django(path: Path):
    roots = {module.split(".")[0] for module in imported_modules(path)}

    assert not roots & DJANGO_PACKAGES


def test_the_storage_layer_imports_with_django_absent():
    modules = ", ".join(module_name(path) for path in layer_modules("_store"))
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


def test_an_import_against_the_layers_is_reported():
    # The check itself: a storage module importing the backend, the runtime and the top of the
    # package (a public module), but also the exceptions and the package's version, which it may.
    probe = PACKAGE / "_store" / "_probe_for_test_layering.py"
    probe.write_text(
        "from .._django.backend import SQLiteBackend\n"
        "from .._runtime import pool\n"
        "from .. import testing, __version__\n"
        "from ..exceptions import StoreError\n"
        "from .records import JobRecord\n"
    )
    try:
        found = violations(probe)
    finally:
        probe.unlink()

    assert found == [
        "litetasks._django.backend",
        "litetasks._runtime",
        "litetasks._runtime.pool",
        "litetasks.testing",
    ]


@pytest.mark.parametrize(
    ("name", "source", "found"),
    [
        ("litetasks._store.store", "import django.tasks", {"django.tasks"}),
        (
            "litetasks._django.backend",
            "from django.tasks import task",
            {"django.tasks", "django.tasks.task"},
        ),
        (
            "litetasks._store.store",
            "from . import sql",
            {"litetasks._store", "litetasks._store.sql"},
        ),
        (
            "litetasks._runtime.pool",
            "from .._store.records import x",
            {"litetasks._store.records", "litetasks._store.records.x"},
        ),
        (
            "litetasks._cli.bench",
            "def f():\n    from .. import __version__",
            {"litetasks", "litetasks.__version__"},
        ),
        (
            "litetasks.testing",
            "from ._runtime import pool",
            {"litetasks._runtime", "litetasks._runtime.pool"},
        ),
    ],
)
def test_imported_modules_sees_every_form_of_import(
    tmp_path: Path, name: str, source: str, found: set[str]
):
    module = tmp_path / "module.py"
    module.write_text(source + "\n")

    assert imported_modules(module, name) == found


def private_imports(path: Path) -> list[str]:
    """The underscore names ``path`` imports from other modules (``from .x import _y``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            found += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=module_name)
def test_no_module_imports_another_modules_underscore_names(path: Path):
    # Modules meet at public names; ruff's SLF001 checks attribute access (``backend._x``).
    assert private_imports(path) == []


def test_an_import_of_an_underscore_name_is_reported(tmp_path: Path):
    module = tmp_path / "module.py"
    module.write_text("from .backend import Call, _call_arguments\nfrom .. import __version__\n")

    assert private_imports(module) == ["backend._call_arguments"]
