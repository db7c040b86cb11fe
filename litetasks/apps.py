"""The litetasks Django app: the management command, and tasks inside ``runserver``."""

from __future__ import annotations

import contextlib

from django.apps import AppConfig


class LiteTasksConfig(AppConfig):
    name = "litetasks"
    verbose_name = "litetasks"

    def ready(self) -> None:
        # The system checks, also when no alias uses litetasks any more (litetasks.W010).
        from ._django import checks  # noqa: F401
        from ._django.compat import InvalidTaskBackend
        from ._runtime.autorun import autorun_backends

        # Bad OPTIONS: the system checks report them (litetasks.E005), not a traceback here.
        with contextlib.suppress(InvalidTaskBackend):
            autorun_backends()
