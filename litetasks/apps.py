"""The litetasks Django app: adds the ``litetasks`` management command."""

from __future__ import annotations

from django.apps import AppConfig


class LiteTasksConfig(AppConfig):
    name = "litetasks"
    verbose_name = "litetasks"
