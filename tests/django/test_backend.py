"""The ``SQLiteBackend`` contract: what ``django.tasks`` promises, as Django's own backends keep it.

Every test runs on a fresh queue file (the ``backend`` fixture). Exact messages are pinned: the
Django ones are Django's (``django/tasks/backends/base.py``), the others are ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import types
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.core import checks
from django.test import override_settings
from django.utils import timezone

from litetasks import enqueue_many
from litetasks._django import checks as checks_module
from litetasks._django.backend import SQLiteBackend
from litetasks._django.compat import (
    InvalidTask,
    InvalidTaskBackend,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
)
from litetasks._store.config import OPTION_NAMES
from litetasks._store.enqueueing import new_job_id, new_job_ids
from litetasks._store.filesystems import filesystem_type
from litetasks.testing import drain
from tests import tasks

LITE = "litetasks.backend.SQLiteBackend"

try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task  # type: ignore[no-redef]


@contextlib.contextmanager
def received(signal: Any) -> Iterator[list[tuple[type, Any, TaskResultStatus]]]:
    """Collect ``(sender, task_result, status at send time)`` for each send of ``signal``."""
    calls: list[tuple[type, Any, TaskResultStatus]] = []

    def receiver(sender: type, task_result: Any, **kwargs: Any) -> None:
        calls.append((sender, task_result, task_result.status))

    signal.connect(receiver, weak=False)
    try:
        yield calls
    finally:
        signal.disconnect(receiver)


@contextlib.contextmanager
def database_settings(databases: dict[str, Any], **other: Any) -> Iterator[None]:
    """``override_settings(DATABASES=...)`` without Django's "can lead to unexpected behavior"."""
    override = override_settings(DATABASES=databases, **other)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Overriding setting DATABASES", UserWarning)
        override.enable()
    try:
        yield
    finally:
        override.disable()


def sqlite_db(name: object) -> dict[str, Any]:
    return {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": name}}


POSTGRES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "app"}}


# -- capabilities ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag", ["supports_defer", "supports_async_task", "supports_get_result", "supports_priority"]
)
def test_backend_supports_every_optional_feature(backend: SQLiteBackend, flag: str) -> None:
    assert getattr(backend, flag) is True


def test_tasks_setting_selects_the_sqlite_backend(backend: SQLiteBackend) -> None:
    assert type(backend) is SQLiteBackend
    assert backend.alias == "default"
    assert backend.queues == {"default", "emails", "reports"}


# -- enqueue -----------------------------------------------------------------------------------


def test_enqueue_returns_a_ready_result_with_an_aware_utc_enqueued_at(
    backend: SQLiteBackend,
) -> None:
    before = timezone.now()
    result = tasks.add.enqueue(1, b=2)
    after = timezone.now()

    assert result.status == TaskResultStatus.READY
    assert result.task == tasks.add
    assert result.args == [1]
    assert result.kwargs == {"b": 2}
    assert result.backend == "default"
    assert result.enqueued_at is not None
    assert result.enqueued_at.utcoffset() == timedelta(0)
    assert before <= result.enqueued_at <= after
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (None, None, None)
    assert result.errors == []
    assert result.worker_ids == []
    assert result.attempts == 0
    assert result.is_finished is False
    with pytest.raises(ValueError, match=re.escape("Task has not finished yet")):
        _ = result.return_value


def test_result_ids_are_unique_strings_shorter_than_64_characters(backend: SQLiteBackend) -> None:
    ids = [tasks.noop.enqueue().id for _ in range(20)]
    assert all(isinstance(i, str) and 0 < len(i) < 64 for i in ids)
    assert len(set(ids)) == 20


def test_ids_made_in_bulk_look_like_single_ones_and_never_repeat(backend: SQLiteBackend) -> None:
    # enqueue_many takes its ids from new_job_ids (one clock read, one random read for all).
    before = new_job_id()
    results = enqueue_many(tasks.noop, [()] * 500)
    after = new_job_id()
    ids = [result.id for result in results] + new_job_ids(500)
    assert len(set(ids)) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    # Time-ordered by their first 12 digits (milliseconds), like new_job_id's.
    assert all(before[:12] <= i[:12] for i in ids)
    assert all(result.id[:12] <= after[:12] for result in results)
    assert backend.get_result(results[-1].id).id == results[-1].id


def test_enqueue_stores_tuples_as_lists_like_django(backend: SQLiteBackend) -> None:
    result = tasks.echo.enqueue((1, 2), key=("a", b"b"))
    assert result.args == [[1, 2]]
    assert result.kwargs == {"key": ["a", "b"]}
    assert backend.get_result(result.id) == result


def test_enqueue_sends_task_enqueued_once_with_the_backend_class_and_ready_result(
    backend: SQLiteBackend,
) -> None:
    with received(task_enqueued) as calls:
        result = tasks.noop.enqueue()
    assert calls == [(SQLiteBackend, result, TaskResultStatus.READY)]
    assert calls[0][1] is result


def test_constructing_the_backend_opens_no_file(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    backend = SQLiteBackend("default", {"OPTIONS": {"path": str(path)}})
    list(backend.check())
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_first_enqueue_creates_the_queue_file_readable_only_by_its_owner(
    backend: SQLiteBackend, queue_path: Path
) -> None:
    assert not queue_path.exists()
    tasks.noop.enqueue()
    assert stat.S_IMODE(queue_path.stat().st_mode) == 0o600


# -- get_result, refresh -----------------------------------------------------------------------


def test_get_result_equals_the_result_enqueue_returned(backend: SQLiteBackend) -> None:
    result = tasks.echo.enqueue(1, "two", [3.5, None, True], key={"nested": ["x"]})
    fetched = backend.get_result(result.id)
    assert fetched == result
    assert fetched is not result
    assert fetched.task.func is tasks.echo.func


def test_get_result_keeps_priority_queue_and_run_after_set_with_using(
    backend: SQLiteBackend,
) -> None:
    run_after = datetime(2031, 5, 17, 8, 30, 15, 123456, tzinfo=ZoneInfo("Europe/Paris"))
    task = tasks.send_email.using(priority=-7, queue_name="reports", run_after=run_after)
    result = task.enqueue("ada@example.com")
    fetched = backend.get_result(result.id)
    assert fetched == result
    assert fetched.task == task
    assert (fetched.task.priority, fetched.task.queue_name) == (-7, "reports")
    assert fetched.task.run_after == run_after


def test_get_result_keeps_the_decorators_priority_and_queue(backend: SQLiteBackend) -> None:
    result = tasks.send_email.enqueue("ada@example.com")
    fetched = tasks.send_email.get_result(result.id)
    assert fetched == result
    assert (fetched.task.priority, fetched.task.queue_name) == (10, "emails")


def test_naive_datetimes_round_trip_when_use_tz_is_off(lite_settings: dict[str, Any]) -> None:
    with override_settings(USE_TZ=False, TIME_ZONE="America/New_York"):
        run_after = datetime(2031, 1, 15, 12, 30, 45, 123456)
        result = tasks.noop.using(run_after=run_after).enqueue()
        fetched = task_backends["default"].get_result(result.id)
        assert fetched == result
        assert timezone.is_naive(result.enqueued_at)
        assert abs(result.enqueued_at - timezone.now()) < timedelta(minutes=1)
        assert fetched.task.run_after == run_after


@pytest.mark.parametrize(
    "result_id",
    [
        pytest.param("0" * 32, id="unknown"),
        pytest.param("", id="empty"),
        pytest.param("x" * 10_000, id="very-long"),
        pytest.param("' OR 1=1 --", id="sql"),
        pytest.param(None, id="none"),
        pytest.param(12345, id="int"),
        pytest.param(b"abc", id="bytes"),
    ],
)
def test_get_result_of_an_unknown_or_malformed_id_raises_does_not_exist(
    backend: SQLiteBackend, result_id: Any
) -> None:
    tasks.noop.enqueue()
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(result_id)


def test_aenqueue_and_aget_result_work_from_async_code(backend: SQLiteBackend) -> None:
    async def main() -> tuple[Any, Any, Any]:
        result = await tasks.add.aenqueue(2, 3)
        return result, await backend.aget_result(result.id), await tasks.add.aget_result(result.id)

    result, fetched, fetched_by_task = asyncio.run(main())
    assert result.status == TaskResultStatus.READY
    assert fetched == result
    assert fetched_by_task == result
    with pytest.raises(TaskResultDoesNotExist):
        asyncio.run(backend.aget_result(new_job_id()))


def test_refresh_loads_the_outcome_a_worker_recorded(backend: SQLiteBackend) -> None:
    result = tasks.add.enqueue(2, 3)
    assert drain() == 1
    assert result.status == TaskResultStatus.READY
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.attempts == 1
    assert result == backend.get_result(result.id)


def test_arefresh_loads_the_outcome_a_worker_recorded(backend: SQLiteBackend) -> None:
    result = tasks.fail_value_error.enqueue("async refresh")
    assert drain() == 1
    asyncio.run(result.arefresh())
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"]
    assert result == backend.get_result(result.id)


# -- refusals: Django's messages, and nothing written ------------------------------------------


@pytest.fixture
def nothing_written(backend: SQLiteBackend) -> Iterator[None]:
    """Assert that the test wrote no row and sent no ``task_enqueued``."""
    assert backend.store.counts() == {}
    with received(task_enqueued) as calls:
        yield
    assert calls == []
    assert backend.store.counts() == {}


def test_priority_above_100_is_refused(nothing_written: None) -> None:
    with pytest.raises(
        InvalidTask, match=re.escape("priority must be a whole number between -100 and 100.")
    ):
        tasks.noop.using(priority=101).enqueue()


def test_unknown_queue_is_refused(nothing_written: None) -> None:
    with pytest.raises(InvalidTask, match=re.escape("Queue 'nope' is not valid for backend.")):
        tasks.noop.using(queue_name="nope").enqueue()


def test_naive_run_after_is_refused_when_use_tz_is_on(nothing_written: None) -> None:
    with pytest.raises(InvalidTask, match=re.escape("run_after must be an aware datetime.")):
        tasks.noop.using(run_after=datetime(2031, 1, 1, 12, 0)).enqueue()


def test_enqueue_validates_again_with_the_current_settings(
    lite_settings: dict[str, Any], queue_path: Path
) -> None:
    task = tasks.send_email  # built while "emails" was a valid queue
    narrower = {"default": {**lite_settings["default"], "QUEUES": ["default"]}}
    with override_settings(TASKS=narrower):
        backend = task_backends["default"]
        refusal = pytest.raises(
            InvalidTask, match=re.escape("Queue 'emails' is not valid for backend.")
        )
        with received(task_enqueued) as calls, refusal:
            backend.enqueue(task, ["ada@example.com"], {})
        assert calls == []
        assert backend.store.counts() == {}


def test_naive_run_after_from_a_use_tz_off_task_is_refused_at_enqueue(
    backend: SQLiteBackend, nothing_written: None
) -> None:
    with override_settings(USE_TZ=False):
        task = tasks.noop.using(run_after=datetime(2031, 1, 1, 12, 0))
    with pytest.raises(InvalidTask, match=re.escape("run_after must be an aware datetime.")):
        backend.enqueue(task, [], {})


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        pytest.param(
            (object(),), {}, TypeError,
            "args[0] of tests.tasks.echo is an object, which JSON cannot store", id="object",
        ),
        pytest.param(
            (), {"when": datetime(2030, 1, 1)}, TypeError,
            'kwargs["when"] of tests.tasks.echo is a datetime (datetime.datetime)',
            id="datetime-kwarg",
        ),
        pytest.param(
            ({1, 2},), {}, TypeError, "args[0] of tests.tasks.echo is a set", id="set"
        ),
        pytest.param(
            (b"\xff",), {}, ValueError,
            "args[0] of tests.tasks.echo is bytes that are not UTF-8 text", id="bad-bytes",
        ),
        pytest.param(
            ({1: "a"},), {}, TypeError,
            "Unsupported dict key 1 (int) in the task's args: JSON object keys are strings, so "
            "it would come back as a different value. Use str keys.",
            id="int-key",
        ),
        pytest.param(
            (), {"deep": [{"ok": {None: 1}}]}, TypeError,
            "Unsupported dict key None (NoneType) in the task's kwargs: JSON object keys are "
            "strings, so it would come back as a different value. Use str keys.",
            id="nested-none-key",
        ),
    ],
)  # fmt: skip
def test_arguments_that_are_not_json_are_refused(
    nothing_written: None, args: tuple[Any, ...], kwargs: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        tasks.echo.enqueue(*args, **kwargs)


def _main_module_task() -> Any:
    def template() -> None:
        return None

    func = types.FunctionType(template.__code__, {}, "run_in_main")
    func.__module__ = "__main__"
    func.__qualname__ = "run_in_main"
    return task(func)


def test_a_task_defined_in_main_is_refused_at_enqueue(nothing_written: None) -> None:
    main_task = _main_module_task()
    with pytest.raises(
        InvalidTask,
        match=re.escape(
            "Task '__main__.run_in_main' is defined in __main__, which a worker cannot import. "
            "Move it into a module of an installed app."
        ),
    ):
        main_task.enqueue()


@pytest.fixture
def outside_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module with a task, importable but not part of any installed app."""
    name = f"outside_{new_job_id()[-8:]}"
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / f"{name}.py").write_text(
        textwrap.dedent(
            """
            try:
                from django.tasks import task
            except ImportError:
                from django_tasks import task

            @task
            def job(x):
                return x * 2
            """
        )
    )
    monkeypatch.syspath_prepend(str(folder))
    yield name
    sys.modules.pop(name, None)


def test_a_task_outside_the_installed_apps_is_refused_at_enqueue(
    nothing_written: None, outside_module: str
) -> None:
    module = importlib.import_module(outside_module)
    with pytest.raises(
        InvalidTask,
        match=re.escape(
            f"Task '{outside_module}.job' is not in an installed app, so a worker will not "
            f"import it. Add its app to INSTALLED_APPS, or '{outside_module}' to "
            "TASKS['default']['OPTIONS']['task_modules']."
        ),
    ):
        module.job.enqueue(1)


def test_task_modules_option_allows_a_module_outside_the_installed_apps(
    lite_settings: dict[str, Any], outside_module: str
) -> None:
    default = lite_settings["default"]
    options = {**default["OPTIONS"], "task_modules": [outside_module]}
    with override_settings(TASKS={"default": {**default, "OPTIONS": options}}):
        module = importlib.import_module(outside_module)
        result = module.job.enqueue(21)
        assert drain() == 1
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.return_value == 42


# -- OPTIONS -----------------------------------------------------------------------------------


def test_unknown_option_is_refused_with_the_list_of_valid_ones(tmp_path: Path) -> None:
    tasks_setting = {
        "default": {"BACKEND": LITE, "OPTIONS": {"path": str(tmp_path / "q"), "colour": "red"}}
    }
    message = (
        "Unknown option 'colour' in TASKS['default']['OPTIONS']. Valid options: "
        + ", ".join(OPTION_NAMES)
        + "."
    )
    with (
        override_settings(TASKS=tasks_setting),
        pytest.raises(InvalidTaskBackend, match=re.escape(message)),
    ):
        task_backends["default"].config  # noqa: B018 (raised at the first use, not when made)
    assert {"path", "synchronous", "busy_timeout_ms", "threads", "task_modules"} <= set(
        OPTION_NAMES
    )


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("threads", 0, "a whole number greater than 0 (got 0)"),
        ("threads", True, "a whole number greater than 0 (got True)"),
        ("threads", "4", "a whole number greater than 0 (got '4')"),
        ("busy_timeout_ms", -1, "a whole number greater than 0 (got -1)"),
        ("synchronous", "OFF", "'NORMAL' or 'FULL' (got 'OFF')"),
        ("path", "", "a file path (got '')"),
        ("poll_interval_s", 2, "a number of seconds above 0, at most 1 (got 2.0)"),
        ("lease_s", float("inf"), "a number of seconds above 0 (got inf)"),
        ("grace_s", -1, "a number of seconds, 0 or more (got -1.0)"),
        ("task_modules", "myapp", "a list of module names (got 'myapp')"),
        ("task_modules", ["ok", ""], "a list of module names (got ['ok', ''])"),
        ("autorun", "yes", "True or False (got 'yes')"),
    ],
)
def test_bad_option_values_are_refused_naming_the_option_and_the_rule(
    name: str, value: Any, rule: str
) -> None:
    message = f"TASKS['default']['OPTIONS'][{name!r}] must be {rule}."
    with pytest.raises(InvalidTaskBackend, match=re.escape(message)):
        SQLiteBackend("default", {"OPTIONS": {name: value}}).config  # noqa: B018


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"lease_s": 5, "heartbeat_s": 5},
            "TASKS['default']['OPTIONS']: lease_s must be at least twice heartbeat_s, so one late "
            "heartbeat cannot lose a live worker its tasks (got lease_s=5.0, heartbeat_s=5.0).",
        ),
        (["path"], "TASKS['default']['OPTIONS'] must be a dict (got list)."),
    ],
)
def test_inconsistent_or_malformed_options_are_refused(options: Any, message: str) -> None:
    with pytest.raises(InvalidTaskBackend, match=re.escape(message)):
        SQLiteBackend("default", {"OPTIONS": options}).config  # noqa: B018


def test_valid_options_are_parsed_into_the_config(tmp_path: Path) -> None:
    backend = SQLiteBackend(
        "default",
        {
            "OPTIONS": {
                "path": tmp_path / "q.sqlite3",
                "synchronous": "full",
                "busy_timeout_ms": 250,
                "threads": 2,
                "lease_s": 30,
                "task_modules": ["extra.tasks"],
            }
        },
    )
    config = backend.config
    assert config.store.path == tmp_path / "q.sqlite3"
    assert (config.store.synchronous, config.store.busy_timeout_ms) == ("FULL", 250)
    assert (config.worker.threads, config.worker.lease_s) == (2, 30.0)
    assert config.task_modules == ("extra.tasks",)


# -- where the queue file goes -----------------------------------------------------------------


def test_default_path_is_beside_a_sqlite_default_database(tmp_path: Path) -> None:
    with database_settings(sqlite_db(str(tmp_path / "db.sqlite3"))):
        assert SQLiteBackend("default", {}).config.store.path == tmp_path / "tasks.sqlite3"


def test_default_path_accepts_a_path_object_as_database_name(tmp_path: Path) -> None:
    with database_settings(sqlite_db(tmp_path / "app" / "db.sqlite3")):
        assert SQLiteBackend("default", {}).config.store.path == tmp_path / "app" / "tasks.sqlite3"


def test_default_path_of_another_alias_carries_the_alias(tmp_path: Path) -> None:
    with database_settings(sqlite_db(str(tmp_path / "db.sqlite3"))):
        path = SQLiteBackend("other", {}).config.store.path
    assert path == tmp_path / "tasks-other.sqlite3"


@pytest.mark.parametrize(
    "databases",
    [
        pytest.param(POSTGRES, id="postgres"),
        pytest.param(sqlite_db(":memory:"), id="sqlite-in-memory"),
        pytest.param({}, id="no-databases"),
    ],
)
def test_default_path_falls_back_to_base_dir(tmp_path: Path, databases: dict[str, Any]) -> None:
    with database_settings(databases, BASE_DIR=tmp_path):
        assert SQLiteBackend("default", {}).config.store.path == tmp_path / "tasks.sqlite3"
        assert SQLiteBackend("other", {}).config.store.path == tmp_path / "tasks-other.sqlite3"


def test_default_path_falls_back_to_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with database_settings(POSTGRES, BASE_DIR=None):
        assert SQLiteBackend("default", {}).config.store.path == tmp_path / "tasks.sqlite3"


def test_path_option_overrides_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with (
        database_settings(sqlite_db(str(tmp_path / "db" / "db.sqlite3"))),
        override_settings(BASE_DIR=tmp_path / "project"),
    ):
        absolute = SQLiteBackend("default", {"OPTIONS": {"path": str(tmp_path / "q" / "a.db")}})
        relative = SQLiteBackend("default", {"OPTIONS": {"path": "rel/b.db"}})
    assert absolute.config.store.path == tmp_path / "q" / "a.db"
    # Relative to BASE_DIR, never to the current folder (issue 14, item 5).
    assert relative.config.store.path == tmp_path / "project" / "rel" / "b.db"


def test_the_apps_own_database_is_never_touched(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    with (
        database_settings(sqlite_db(str(db))),
        override_settings(TASKS={"default": {"BACKEND": LITE}}),
    ):
        result = tasks.add.enqueue(1, 2)
        assert drain() == 1
        result.refresh()
    assert result.return_value == 3
    assert (tmp_path / "tasks.sqlite3").exists()
    assert not db.exists()


# -- system checks -----------------------------------------------------------------------------


def _check_ids(backend: SQLiteBackend) -> list[str]:
    return [message.id for message in backend.check()]


def test_check_passes_for_a_writable_local_folder(tmp_path: Path) -> None:
    backend = SQLiteBackend("default", {"OPTIONS": {"path": str(tmp_path / "q.sqlite3")}})
    assert list(backend.check()) == []


def test_check_reports_a_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "q.sqlite3"
    backend = SQLiteBackend("default", {"OPTIONS": {"path": str(path)}})
    [error] = backend.check()
    assert error == checks.Error(
        f"The folder of the queue file {str(path)!r} does not exist.",
        hint=f"Create {str(path.parent)!r}, or set TASKS['default']['OPTIONS']['path'].",
        id="litetasks.E001",
    )


def test_django_system_checks_run_the_backend_check(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "q.sqlite3"
    with override_settings(TASKS={"default": {"BACKEND": LITE, "OPTIONS": {"path": str(path)}}}):
        ids = [message.id for message in checks.run_checks()]
    assert "litetasks.E001" in ids


@pytest.fixture
def unwritable_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot write to, even as root (then: the immutable attribute)."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield folder
        finally:
            folder.chmod(0o700)
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(folder)], check=False).returncode:
        pytest.skip("running as root without chattr +i: cannot make a folder unwritable")
    try:
        yield folder
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def test_check_reports_an_unwritable_folder(unwritable_folder: Path) -> None:
    assert not os.access(unwritable_folder, os.W_OK)  # the premise of this test
    path = unwritable_folder / "q.sqlite3"
    backend = SQLiteBackend("default", {"OPTIONS": {"path": str(path)}})
    [error] = backend.check()
    assert error.id == "litetasks.E002"
    assert error.msg == (
        f"The queue file {str(path)!r} or its folder is not writable by this user."
    )
    assert "TASKS['default']['OPTIONS']['path']" in error.hint


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o773])
def test_check_warns_about_a_queue_folder_every_user_may_write_to(
    tmp_path: Path, mode: int
) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(mode)
    path = folder / "q.sqlite3"
    backend = SQLiteBackend("default", {"OPTIONS": {"path": str(path)}})
    [warning] = backend.check()
    assert warning == checks.Warning(
        f"The folder of the queue file {str(path)!r} is writable by every user (mode {mode:04o}).",
        hint="Another user could put their own -wal, -shm or a symlink there before litetasks "
        "creates them, and so read or redirect the queue. Remove write permission for others "
        f"(chmod o-w {str(folder)!r}), or set TASKS['default']['OPTIONS']['path'] to a private "
        "folder.",
        id="litetasks.W001",
    )


def test_check_does_not_warn_about_a_folder_only_its_group_may_write_to(tmp_path: Path) -> None:
    folder = tmp_path / "group"
    folder.mkdir()
    folder.chmod(0o770)
    backend = SQLiteBackend("default", {"OPTIONS": {"path": str(folder / "q.sqlite3")}})
    assert list(backend.check()) == []


def test_check_warns_about_a_doorbell_folder_that_is_not_a_private_folder(
    tmp_path: Path,
) -> None:
    path = tmp_path / "q.sqlite3"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "q.sqlite3-doorbell.d").symlink_to(elsewhere)
    backend = SQLiteBackend("default", {"OPTIONS": {"path": str(path)}})
    [warning] = backend.check()
    assert warning.id == "litetasks.W002"
    folder = tmp_path / "q.sqlite3-doorbell.d"
    assert warning.msg == (
        f"The doorbell folder {str(folder)!r} is a symlink; litetasks rings only in a folder of "
        "its own."
    )
    assert warning.hint.startswith(f"Delete {str(folder)!r}: litetasks creates it again, private.")


def _mountinfo(tmp_path: Path, *mounts: tuple[str, str]) -> Path:
    lines = [
        f"{index} 1 0:{index} / {point.replace(' ', chr(92) + '040')} rw,relatime - {fstype} "
        f"src{index} rw"
        for index, (point, fstype) in enumerate(mounts, start=20)
    ]
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("mounts", "where", "expected"),
    [
        ([("/", "ext4")], "/srv/app", None),
        ([("/", "ext4"), ("/srv", "nfs4")], "/srv/app", "nfs4"),
        ([("/", "ext4"), ("/srv", "nfs4")], "/srv", "nfs4"),
        ([("/", "ext4"), ("/srv", "nfs")], "/srvx/app", None),
        ([("/", "ext4"), ("/srv", "cifs"), ("/srv/local", "ext4")], "/srv/local/a", None),
        ([("/", "ext4"), ("/srv/local", "ext4"), ("/srv", "cifs")], "/srv/other", "cifs"),
        ([("/", "ext4"), ("/mnt/c", "9p")], "/mnt/c/Users/me", "9p"),
        ([("/", "ext4"), ("/home/me/remote", "fuse.sshfs")], "/home/me/remote/x", "fuse.sshfs"),
        ([("/", "ext4"), ("/data/my share", "smb3")], "/data/my share/q", "smb3"),
        ([("/", "nfs4"), ("/tmp", "tmpfs")], "/tmp/q", None),
    ],
)
def test_filesystem_type_finds_the_network_mount_holding_a_path(
    tmp_path: Path, mounts: list[tuple[str, str]], where: str, expected: str | None
) -> None:
    mountinfo = _mountinfo(tmp_path, *mounts)
    assert filesystem_type(Path(where) / "tasks.sqlite3", mountinfo) == expected


def test_filesystem_type_without_mountinfo_answers_none(tmp_path: Path) -> None:
    assert filesystem_type(tmp_path / "q.sqlite3", tmp_path / "no-such-file") is None


def test_check_reports_a_network_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    share = tmp_path / "share"
    share.mkdir()
    mountinfo = _mountinfo(tmp_path, ("/", "ext4"), (str(share.resolve()), "nfs4"))
    monkeypatch.setattr(
        checks_module, "filesystem_type", functools.partial(filesystem_type, mountinfo=mountinfo)
    )
    path = share / "q.sqlite3"
    local = SQLiteBackend("default", {"OPTIONS": {"path": str(tmp_path / "q.sqlite3")}})
    remote = SQLiteBackend("default", {"OPTIONS": {"path": str(path)}})
    assert list(local.check()) == []
    [error] = remote.check()
    assert error.id == "litetasks.E003"
    assert error.msg == f"The queue file {str(path)!r} is on a network filesystem (nfs4)."
    assert "local disk" in error.hint
