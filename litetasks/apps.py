"""The litetasks Django app: the management command, and tasks inside ``runserver``."""

from __future__ import annotations

from django.apps import AppConfig


class LiteTasksConfig(AppConfig):
    name = "litetasks"
    verbose_name = "litetasks"

    def ready(self) -> None:
        from ._runtime.autorun import autorun_backends

        autorun_backends()
