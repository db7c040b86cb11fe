"""The Django task backend: ``TASKS = {"default": {"BACKEND": "litetasks.backend.SQLiteBackend"}}``.

This path is stored in settings and never moves; the implementation lives in
``litetasks._django.backend``.
"""

from __future__ import annotations

from ._django.backend import Call, SQLiteBackend
from ._django.forwarding import forward_id

__all__ = ["Call", "SQLiteBackend", "forward_id"]
