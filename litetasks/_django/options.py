"""``litetasks.options``: litetasks' task options in a form every other backend ignores.

Django passes ``@task(...)`` keyword arguments to the configured backend's ``task_class``, so
``@task(max_attempts=3)`` raises ``TypeError`` at import on any backend but litetasks. Stacked
under ``@task``, ``options`` attaches the same options to the function instead::

    @task
    @litetasks.options(max_attempts=3, timeout=30, on_failure=alert_admins)
    def sync_account(account_id): ...

``LiteTask`` (litetasks' ``task_class``) reads them; a plain ``Task`` never looks, so the
module imports and runs unchanged on ``ImmediateBackend``, ``django-tasks-db`` or Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .compat import InvalidTask, Task

__all__ = ["OPTION_NAMES", "apply_declared", "declared_options", "options", "options_functions"]

# The fields of LiteTask beyond Django's Task, in the order the README lists them.
OPTION_NAMES = (
    "max_attempts",
    "backoff",
    "retry_on",
    "no_retry_on",
    "timeout",
    "unique",
    "on_success",
    "on_failure",
    "on_finish",
)
_ATTRIBUTE = "__litetasks_options__"

F = TypeVar("F", bound=Callable[..., Any])

# Every function options() decorated, for the system check that warns when its backend
# ignores them (portability_checks.py). Functions live as long as their modules anyway.
_decorated: list[Callable[..., Any]] = []


def options(**declared: Any) -> Callable[[F], F]:
    """Attach litetasks' task options to a function, under ``@task``; see ``LiteTask``.

    Raises ``TypeError`` for an unknown option name or when stacked above ``@task``. The
    values are checked when litetasks is the task's backend (as ``@task(...)``'s are).
    """
    unknown = sorted(set(declared) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(
            f"litetasks.options() got unknown option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(OPTION_NAMES)}."
        )

    def decorate(func: F) -> F:
        if isinstance(func, Task):
            raise TypeError(
                f"litetasks.options() must go under @task, on the function itself: "
                f"{func.module_path!r} is already a task. Write @task first, then "
                "@litetasks.options(...) on the line below it."
            )
        merged = {**getattr(func, _ATTRIBUTE, {}), **declared}
        setattr(func, _ATTRIBUTE, merged)
        if func not in _decorated:
            _decorated.append(func)
        return func

    return decorate


def declared_options(func: Callable[..., Any]) -> dict[str, Any]:
    """The options ``litetasks.options`` attached to ``func`` (empty if none)."""
    found = getattr(func, _ATTRIBUTE, None)
    return dict(found) if isinstance(found, dict) else {}


def options_functions() -> list[Callable[..., Any]]:
    """Every function ``options`` decorated in this process so far."""
    return list(_decorated)


def apply_declared(task: Any, defaults: dict[str, Any]) -> None:
    """Set on ``task`` (a ``LiteTask`` being built) the options its function declares.

    An option also given to ``@task(...)`` with another value is refused (``InvalidTask``):
    two places would say different things.
    """
    for name, value in declared_options(task.func).items():
        current = getattr(task, name)
        if current == defaults[name] or current == value:
            object.__setattr__(task, name, value)  # in __post_init__ of a frozen dataclass
            continue
        raise InvalidTask(
            f"{name} of {task.module_path!r} is given twice with different values: "
            f"@task({name}={current!r}) and litetasks.options({name}={value!r}). Keep one "
            "(litetasks.options works on every backend)."
        )
