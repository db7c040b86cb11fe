"""The ``litetasks`` command; ``litetasks.cli:main`` is the console script's stored entry point.

The commands live in ``litetasks._cli``.
"""

from __future__ import annotations

from ._cli.commands import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
