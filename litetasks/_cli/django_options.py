"""Django's standard command options for ``python manage.py litetasks …``.

Every Django command accepts ``--settings``, ``--pythonpath``, ``-v/--verbosity``,
``--traceback``, ``--no-color``, ``--force-color`` and ``--skip-checks``, before or after its
subcommand. ``manage.py`` has already applied ``--settings`` and ``--pythonpath``; the others
are translated here into what the ``litetasks`` command does with them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

__all__ = ["DJANGO_FLAGS", "DJANGO_VALUED", "apply_django_options", "split_django_options"]

DJANGO_FLAGS = ("--traceback", "--no-color", "--force-color", "--skip-checks")
DJANGO_VALUED = ("--settings", "--pythonpath", "-v", "--verbosity")
# Django's verbosity -> the level of ``litetasks run``'s log (1, the default, changes nothing).
_VERBOSITY_LEVELS = {"0": "WARNING", "2": "DEBUG", "3": "DEBUG"}


def split_django_options(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Return ``args`` without Django's standard options, and those options by long name
    (``{"--verbosity": "2", "--traceback": ""}``). Nothing after ``--`` is an option."""
    rest: list[str] = []
    found: dict[str, str] = {}
    items: Iterator[str] = iter(args)
    for arg in items:
        name, equals, value = arg.partition("=")
        if arg == "--":
            rest.extend([arg, *items])
        elif name in DJANGO_FLAGS and not equals:
            found[name] = ""
        elif name in DJANGO_VALUED:
            found["--verbosity" if name == "-v" else name] = value if equals else next(items, "")
        elif arg.startswith("-v") and arg[2:].isdigit():  # -v2
            found["--verbosity"] = arg[2:]
        else:
            rest.append(arg)
    return rest, found


def apply_django_options(args: list[str], found: dict[str, str]) -> list[str]:
    """Apply Django's options (colours, tracebacks); return the ``litetasks`` arguments to run.

    ``--verbosity`` 0 runs ``litetasks run`` at ``--log-level WARNING``, 2 and 3 at DEBUG,
    unless ``--log-level`` is given. ``--no-color`` and ``--force-color`` set ``NO_COLOR`` and
    ``FORCE_COLOR`` for this process. ``--traceback`` prints the traceback of an error.
    """
    from ..exceptions import ConfigurationError
    from .commands import show_tracebacks

    verbosity = found.get("--verbosity")
    if verbosity is not None and verbosity not in ("0", "1", "2", "3"):
        raise ConfigurationError(f"-v/--verbosity must be 0, 1, 2 or 3 (got {verbosity!r}).")
    if "--no-color" in found:
        os.environ["NO_COLOR"] = "1"
    if "--force-color" in found:
        os.environ["FORCE_COLOR"] = "1"
    if "--traceback" in found:
        show_tracebacks()
    level = _VERBOSITY_LEVELS.get(verbosity or "1")
    if level and args[:1] == ["run"] and not any(a.startswith("--log-level") for a in args):
        args = [*args, "--log-level", level]
    return args
