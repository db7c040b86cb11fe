"""The litetasks Django app: the management command, and tasks inside ``runserver``."""

from __future__ import annotations

from django.apps import AppConfig


class LiteTasksConfig(AppConfig):
    name = "litetasks"
    verbose_name = "litetasks"

    def ready(self) -> None:
        # The system checks, also when no alias uses litetasks any more (litetasks.W010).
        from ._django import checks  # noqa: F401
        from ._runtime.autorun import autorun_backends

        autorun_backends()
