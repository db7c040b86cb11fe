"""``litetasks.__all__`` is the package's public surface, kept sorted and complete (httpx style)."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

import litetasks

# Dunder metadata that is public on purpose.
PUBLIC_DUNDERS = {"__version__"}


def public_names() -> set[str]:
    """Return the names a user can rely on: no private names, submodules or ``__future__``."""
    eager = {
        name
        for name, value in vars(litetasks).items()
        if not (name.startswith("_") and name not in PUBLIC_DUNDERS)
        and not isinstance(value, ModuleType)  # submodules appear here once imported
        and value is not annotations  # bound by the __future__ import
        and name not in {"TYPE_CHECKING", "Any"}  # typing helpers of the lazy loader
    }
    return eager | set(litetasks._LAZY)  # loaded on first use: they need Django


def test_all_lists_every_public_name_once():
    assert len(litetasks.__all__) == len(set(litetasks.__all__))
    assert set(litetasks.__all__) == public_names()


def test_all_is_sorted_isort_style():
    # As ruff's RUF022 (which the package's lint enforces) orders it: constants, then classes,
    # then everything else (dunder metadata sorts before lowercase names).
    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert litetasks.__all__ == sorted(litetasks.__all__, key=kind)


@pytest.mark.parametrize("name", litetasks.__all__)
def test_every_exported_name_is_importable(name: str):
    namespace: dict[str, object] = {}
    exec(f"from litetasks import {name}", namespace)

    assert namespace[name] is getattr(importlib.import_module("litetasks"), name)


def test_every_exported_exception_derives_from_the_root():
    exceptions = [
        value
        for name in litetasks.__all__
        if isinstance(value := getattr(litetasks, name), type) and issubclass(value, BaseException)
    ]

    assert exceptions
    # Raised inside a task to stop it: BaseExceptions, so a task's ``except Exception`` does
    # not swallow them (as asyncio.CancelledError).
    interrupts = {litetasks.TaskInterrupted, litetasks.TaskTimeout, litetasks.TaskCancelled}
    assert all(issubclass(kind, litetasks.TaskInterrupted) for kind in interrupts)
    assert not any(issubclass(kind, Exception) for kind in interrupts)
    assert all(
        issubclass(kind, litetasks.LiteTasksError) for kind in exceptions if kind not in interrupts
    )


def test_the_metrics_module_s_public_names():
    # litetasks.metrics is public (issue 15): a view to mount, and the collector, registry
    # and text for sites that serve metrics their own way. It needs litetasks[metrics].
    import litetasks.metrics

    assert litetasks.metrics.__all__ == ["Collector", "registry", "render", "view"]
    for name in litetasks.metrics.__all__:
        assert callable(getattr(litetasks.metrics, name))
