"""``litetasks.options``: the portable form of litetasks' task options, and the system checks
that warn when the configured backend ignores them (litetasks.W010, W011)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest
from django.core import checks
from django.test import override_settings

import litetasks
from litetasks import fixed
from litetasks._django.compat import FRAMEWORK, InvalidTask, TaskResultStatus
from litetasks._django.options_checks import portability_checks
from litetasks.testing import drain
from tests.scaleout import portable_tasks

IMMEDIATE = {
    "default": {
        "BACKEND": f"{FRAMEWORK}.backends.immediate.ImmediateBackend",
        "QUEUES": ["default", "emails"],
    }
}
DUMMY = {
    "default": {
        "BACKEND": f"{FRAMEWORK}.backends.dummy.DummyBackend",
        "QUEUES": ["default", "emails"],
    }
}


@pytest.fixture
def fresh_module() -> Iterator[ModuleType]:
    """``portable_tasks`` imported again under the test's settings; afterwards, as before."""
    yield importlib.reload(portable_tasks)
    importlib.reload(portable_tasks)


def test_options_under_task_configure_the_litetasks_task(backend, fresh_module):
    sync = fresh_module.sync_account

    assert (sync.max_attempts, sync.backoff, sync.timeout, sync.unique) == (3, fixed(0), 60, True)
    assert sync.on_failure == fresh_module.report_failure
    assert sync.using(priority=5).max_attempts == 3  # using() keeps them


def test_portable_options_run_retries_on_litetasks(backend, fresh_module, tmp_path):
    result = fresh_module.sync_account.enqueue(str(tmp_path), 7)
    twin = fresh_module.sync_account.enqueue(str(tmp_path), 7)  # unique: the same task
    drain()
    result.refresh()

    assert twin.id == result.id
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 14)
    assert portable_tasks.runs(str(tmp_path)) == ["sync_account [7]"]


@pytest.mark.parametrize("tasks", [IMMEDIATE, DUMMY], ids=["immediate", "dummy"])
def test_the_portable_module_imports_and_enqueues_on_django_backends(tasks, fresh_module, tmp_path):
    with override_settings(TASKS=tasks):
        module = importlib.reload(portable_tasks)
        result = module.sync_account.enqueue(str(tmp_path), 4)

    assert not hasattr(module.sync_account, "max_attempts")  # a plain Task: options ignored
    if tasks is IMMEDIATE:
        assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 8)
        assert portable_tasks.runs(str(tmp_path)) == ["sync_account [4]"]
    else:
        assert result.status == TaskResultStatus.READY
        assert portable_tasks.runs(str(tmp_path)) == []


def test_the_same_option_twice_with_different_values_is_refused(backend):
    try:
        from django.tasks import task
    except ImportError:  # Django 5.2 with the backport
        from django_tasks import task  # type: ignore[no-redef]

    def double(x: int) -> int:
        return x

    double.__module__ = "tests.scaleout.portable_tasks"
    with pytest.raises(InvalidTask, match=r"max_attempts of .* is given twice"):
        task(max_attempts=2)(litetasks.options(max_attempts=3)(double))


def test_unknown_options_and_options_above_task_are_refused(backend):
    with pytest.raises(TypeError, match=r"unknown option.*retries; valid: max_attempts"):
        litetasks.options(retries=3)
    with pytest.raises(TypeError, match="must go under @task"):
        litetasks.options(max_attempts=3)(portable_tasks.send_welcome)


def _ids(messages: list[checks.CheckMessage]) -> list[tuple[str, str]]:
    return [(m.id or "", m.msg) for m in messages]


def test_no_warning_while_litetasks_runs_the_options(backend, fresh_module):
    assert [m for m in portability_checks() if m.id == "litetasks.W010"] == []


def test_a_backend_that_ignores_the_options_is_warned_about_naming_task_and_options(
    fresh_module,
):
    with override_settings(TASKS=IMMEDIATE):
        found = [m for m in portability_checks() if m.id == "litetasks.W010"]

    messages = sorted(m.msg for m in found)
    assert len(messages) == 3  # build_report, charge, sync_account
    assert (
        "'tests.scaleout.portable_tasks.build_report' declares litetasks options "
        "(max_attempts) that backend 'default' "
        f"({FRAMEWORK}.backends.immediate.ImmediateBackend) ignores" in messages[0]
    )
    assert (
        "sync_account' declares litetasks options (max_attempts, backoff, timeout, "
        "unique, on_failure)" in messages[2]
    )


def test_periodic_schedules_of_a_backend_that_does_not_run_them_are_warned_about(lite_settings):
    tasks = {
        "default": lite_settings["default"],
        "elsewhere": IMMEDIATE["default"],
    }
    with override_settings(TASKS=tasks):
        litetasks.periodic(portable_tasks.send_welcome.using(backend="elsewhere"), every=60)
        found = [m for m in portability_checks() if m.id == "litetasks.W011"]

    assert len(found) == 1
    assert (
        "'tests.scaleout.portable_tasks.send_welcome' are declared with periodic() for "
        "backend 'elsewhere'" in found[0].msg
    )
