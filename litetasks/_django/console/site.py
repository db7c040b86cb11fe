"""``TaskAdmin``: the console's pages, served at the admin's URL of ``litetasks.Task``.

The admin links its index entry to the model's changelist URL; the console names its overview
so, and serves its other pages beside it (``get_urls``). Every page goes through
``AdminSite.admin_view`` (staff login, no caching, CSRF) and then the console's permissions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse

from ..._store.overview import OVERVIEW_ROWS
from ..backend import SQLiteBackend
from ..compat import task_backends

__all__ = ["ACT", "DELETE", "VIEW", "TaskAdmin", "litetasks_backends"]

VIEW = "litetasks.view_task"
ACT = "litetasks.act_on_task"
DELETE = "litetasks.delete_task"
# Pages that refresh themselves (live.js), every this many seconds while the tab is visible.
LIVE_SECONDS = 3

View = Callable[..., HttpResponse]


def litetasks_backends() -> dict[str, SQLiteBackend]:
    """Every litetasks backend in ``settings.TASKS``, by alias, in the settings' order."""
    from django.conf import settings

    found = {}
    for alias in getattr(settings, "TASKS", {}):
        backend = task_backends[alias]
        if isinstance(backend, SQLiteBackend):
            found[alias] = backend
    return found


class TaskAdmin(admin.ModelAdmin):
    """The operator's console: overview, tasks, a task, workers, queues, periodic schedules."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return bool(request.user.has_perm(DELETE))

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        user = request.user
        return bool(user.has_perm(VIEW) or user.has_perm(ACT) or user.has_perm(DELETE))

    def can_act(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(ACT))

    def get_urls(self) -> list[URLPattern]:
        from . import acting, pages

        name = "litetasks_task"
        return [
            path("", self._page(pages.overview), name=f"{name}_changelist"),
            path("tasks/", self._page(pages.tasks), name=f"{name}_tasks"),
            path("tasks/<str:job_id>/", self._page(pages.detail), name=f"{name}_detail"),
            path("workers/", self._page(pages.workers), name=f"{name}_workers"),
            path("queues/", self._page(pages.queues), name=f"{name}_queues"),
            path("periodic/", self._page(pages.periodic), name=f"{name}_periodic"),
            path("act/", self._page(acting.act), name=f"{name}_act"),
            path("periodic/run/", self._page(acting.run_now), name=f"{name}_run_now"),
            path("pause/", self._page(acting.pause), name=f"{name}_pause"),
        ]

    def _page(self, view: View) -> View:
        @functools.wraps(view)
        def page(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            if not self.has_view_permission(request):
                raise PermissionDenied
            return view(self, request, **kwargs)

        return self.admin_site.admin_view(page)  # type: ignore[no-any-return]

    def backend_of(self, request: HttpRequest) -> SQLiteBackend:
        """The backend the page is about: ``?backend=ALIAS``, else the first one."""
        backends = litetasks_backends()
        if not backends:
            raise Http404("No litetasks backend is configured in settings.TASKS.")
        alias = request.POST.get("backend") or request.GET.get("backend")
        if alias is None:
            return next(iter(backends.values()))
        if alias not in backends:
            raise Http404(f"{alias!r} is not a litetasks backend in settings.TASKS.")
        return backends[alias]

    def context(
        self, request: HttpRequest, backend: SQLiteBackend, title: str, **extra: Any
    ) -> dict[str, Any]:
        """What every console template gets: the admin's context, the backend, permissions."""
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "app_label": self.opts.app_label,
            "backend": backend.alias,
            "backends": list(litetasks_backends()),
            "can_act": self.can_act(request),
            "can_delete": self.has_delete_permission(request),
            "live_seconds": LIVE_SECONDS,
            "overview_rows": OVERVIEW_ROWS,
            **extra,
        }

    def url(self, page: str, backend: SQLiteBackend, *args: str) -> str:
        """The URL of one of the console's pages (``tasks``, ``detail``, ...) for ``backend``."""
        where = reverse(f"admin:litetasks_task_{page}", args=args, current_app=self.admin_site.name)
        return f"{where}?backend={backend.alias}"
