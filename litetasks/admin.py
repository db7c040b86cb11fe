"""The operator's console in the Django admin (found by ``admin.autodiscover``).

With ``django.contrib.admin`` and ``litetasks`` in ``INSTALLED_APPS``, the admin's index shows
a "Tasks" entry under litetasks: the overview, tasks, workers, queues and periodic schedules of
every litetasks backend, with nothing to add to ``urls.py``.
"""

from __future__ import annotations

from django.contrib import admin

from ._django.console.site import TaskAdmin
from .models import Task

admin.site.register(Task, TaskAdmin)
