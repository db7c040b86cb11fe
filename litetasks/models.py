"""The console's permissions, as a model Django's admin and auth can hold them by.

``Task`` has no table (``managed = False``): the queue file holds the tasks, and the admin's
pages read it (``litetasks/admin.py``). It exists so that a site can grant its three
permissions like any other: ``litetasks.view_task`` (see the console),
``litetasks.act_on_task`` (retry, cancel, run a schedule now) and ``litetasks.delete_task``.
"""

from __future__ import annotations

from django.db import models


class Task(models.Model):
    """A task in a litetasks queue file; a placeholder for the console's permissions."""

    # Named, so that no project's DEFAULT_AUTO_FIELD changes the migration.
    id = models.AutoField(primary_key=True)

    class Meta:
        managed = False
        default_permissions = ("view", "delete")
        permissions = (("act_on_task", "Can retry and cancel tasks and run schedules now"),)
        verbose_name = "task"
        verbose_name_plural = "tasks"
