"""A queue file is data, not code: a tampered row can run nothing but a ``Task`` of its backend.

Rows are written straight into the backend's queue file with ``Store.enqueue``, as someone with
write access to the file could. Each must end FAILED with an error that names the problem, without
importing what it names, and the worker must go on to the next task.
"""

from __future__ import annotations

import ast
import json
import re
import stat
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import litetasks
from litetasks._django.backend import SQLiteBackend
from litetasks._store.enqueueing import new_job_id
from litetasks._store.records import JobRecord, JobState, NewJob
from litetasks.testing import drain
from tests import tasks

try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task  # type: ignore[no-redef]

PACKAGE = Path(litetasks.__file__).resolve().parent
NOT_ALLOWED = (
    "{path!r} is not in an installed app or in TASKS['default']['OPTIONS']['task_modules']; "
    "it was not imported."
)
NOT_A_TASK = "{path!r} is not a task: only functions decorated with @task can run."
NOT_A_PATH = (
    "{path!r} is not the path of a task (a module and a name, such as "
    "'shop.tasks.send_receipt'); nothing was imported."
)
OWN_PACKAGE = (
    "{path!r} is in litetasks' own package, which holds no tasks (its modules include its "
    "command line); it was not imported."
)
DUNDER = (
    "{path!r} names a module {dunder!r}: no worker imports a module named with double "
    "underscores for a task (a __main__ module runs its program when imported, an __init__ "
    "module runs its package again); it was not imported."
)


def insert(backend: SQLiteBackend, task_path: str, **fields: Any) -> str:
    """Write a row directly into the queue file; return its id."""
    job_id = new_job_id()
    backend.store.enqueue([NewJob(job_id=job_id, task_path=task_path, **fields)])
    return job_id


def drain_with_a_valid_task_last(backend: SQLiteBackend, job_id: str) -> JobRecord:
    """Drain the tampered row and a valid task after it; return the tampered row."""
    valid = tasks.add.using(priority=-100).enqueue(20, 22)
    assert drain() == 2
    valid.refresh()
    assert valid.return_value == 42
    return backend.store.get(job_id)


def assert_refused(job: JobRecord, exception_class_path: str, message: str) -> None:
    assert job.state == JobState.FAILED
    assert job.attempts == 1
    assert job.finished_at_us is not None
    assert job.return_json is None
    [error] = job.errors
    assert error.exception_class_path == exception_class_path
    shown = exception_class_path.removeprefix("builtins.")  # as traceback prints it
    assert error.traceback.rstrip("\n").splitlines()[-1] == f"{shown}: {message}"


# -- rows naming things that are not tasks -----------------------------------------------------


@pytest.mark.parametrize(
    ("task_path", "message"),
    [
        ("os.system", NOT_ALLOWED),
        ("subprocess.check_call", NOT_ALLOWED),
        ("builtins.eval", NOT_ALLOWED),
        ("antigravity.fly", NOT_ALLOWED),
        ("antigravity", NOT_A_PATH),
        ("", NOT_A_PATH),
        (".tasks.noop", NOT_A_PATH),
        ("tests.", NOT_A_PATH),
        ("tests.tasks.no-such-name", NOT_A_PATH),
        ("litetasks._django.backend.thread_store", OWN_PACKAGE),
        ("litetasks.cli.main", OWN_PACKAGE),
        ("litetasks._store.store.Store", OWN_PACKAGE),
    ],
)
def test_a_row_naming_something_that_is_not_a_task_is_failed(
    backend: SQLiteBackend, task_path: str, message: str
) -> None:
    job_id = insert(backend, task_path, args_json='["touch /tmp/litetasks-pwned"]')
    job = drain_with_a_valid_task_last(backend, job_id)
    assert_refused(job, "litetasks.exceptions.TaskNotAllowed", message.format(path=task_path))


# What a worker does not find in its code, another worker may have (another project on the same
# queue file, a pool restarted on new code): it puts the task back to READY, and fails it only
# after OPTIONS["not_found_delays"] (tests/django/test_not_found.py). With none, it fails at once.
ONE_FILE = (
    "If another project uses this queue file, give each project its own file: one queue file "
    "belongs to one project."
)
RESTART = "restart the workers (they load the code when they start), then `litetasks retry {id}`."
NOT_FOUND = {
    "nonexistent.module.fn": (
        "Task 'nonexistent.module.fn' is not in an installed app of the workers "
        "(INSTALLED_APPS, or TASKS['default']['OPTIONS']['task_modules']), so they did not "
        f"import it (tried once). {ONE_FILE} If its app is new, add it to INSTALLED_APPS, "
        + RESTART
    ),
    "tests.tasks.undecorated": (
        "Task 'tests.tasks.undecorated' is not a task in the code the workers loaded: "
        "'undecorated' is not decorated with @task there (tried once). If that changed since "
        f"they started, {RESTART} {ONE_FILE}"
    ),
    "tests.tasks.BadStr": (
        "Task 'tests.tasks.BadStr' is not a task in the code the workers loaded: 'BadStr' is "
        "not decorated with @task there (tried once). If that changed since they started, "
        f"{RESTART} {ONE_FILE}"
    ),
    "tests.tasks.os": (
        "Task 'tests.tasks.os' is not a task in the code the workers loaded: 'os' is not "
        "decorated with @task there (tried once). If that changed since they started, "
        f"{RESTART} {ONE_FILE}"
    ),
    "tests.tasks.no_such_name": (
        "Task 'tests.tasks.no_such_name' was not found in the code the workers loaded: module "
        f"'tests.tasks' has no 'no_such_name' (tried once). If it is new, {RESTART} {ONE_FILE}"
    ),
    "tests.no_such_module.fn": (
        "Task 'tests.no_such_module.fn' could not be imported by the workers: importing "
        "'tests.no_such_module' raised ModuleNotFoundError(\"No module named "
        "'tests.no_such_module'\") (tried once). If the module is new or was fixed since, "
        f"{RESTART} {ONE_FILE}"
    ),
}


@pytest.fixture
def no_put_backs(backend: SQLiteBackend) -> Iterator[SQLiteBackend]:
    """The default backend with OPTIONS["not_found_delays"] = []: not found, FAILED at once."""
    from django.test import override_settings

    from litetasks._django.compat import task_backends

    options = {**backend.options, "not_found_delays": []}
    setting = {"default": {"BACKEND": "litetasks.backend.SQLiteBackend", "OPTIONS": options}}
    with override_settings(TASKS=setting):
        yield task_backends["default"]


@pytest.mark.parametrize("task_path", sorted(NOT_FOUND))
def test_a_row_naming_a_task_this_worker_does_not_have_fails_saying_what_to_do(
    no_put_backs: SQLiteBackend, task_path: str
) -> None:
    job_id = insert(no_put_backs, task_path, args_json='["touch /tmp/litetasks-pwned"]')
    job = drain_with_a_valid_task_last(no_put_backs, job_id)
    message = NOT_FOUND[task_path].format(id=job_id)
    assert_refused(job, "litetasks.exceptions.TaskNotFound", message)


def test_a_refused_row_sends_no_signals(backend: SQLiteBackend) -> None:
    from litetasks._django.compat import task_finished, task_started

    sent: list[str] = []

    def receiver(sender: type, task_result: Any, **kwargs: Any) -> None:
        sent.append(task_result.id)

    task_started.connect(receiver, weak=False)
    task_finished.connect(receiver, weak=False)
    try:
        insert(backend, "os.system")
        assert drain() == 1
    finally:
        task_started.disconnect(receiver)
        task_finished.disconnect(receiver)
    assert sent == []


def test_get_result_of_a_tampered_row_refuses_to_load_it(backend: SQLiteBackend) -> None:
    from litetasks._django.compat import InvalidTask

    job_id = insert(backend, "os.system")
    with pytest.raises(InvalidTask, match=f"^Result '{job_id}' cannot be loaded: 'os.system' is"):
        backend.get_result(job_id)


def test_get_result_of_a_row_with_undecodable_arguments_refuses_to_load_it(
    backend: SQLiteBackend,
) -> None:
    from litetasks._django.compat import InvalidTask

    job_id = insert(backend, "tests.tasks.echo", args_json="[not json")
    message = (
        f"Result '{job_id}' cannot be loaded: a stored JSON value is malformed "
        "(Expecting value: line 1 column 2 (char 1))."
    )
    with pytest.raises(InvalidTask, match=re.escape(message)):
        backend.get_result(job_id)
    assert drain() == 1
    with pytest.raises(InvalidTask, match=re.escape(message)):
        backend.get_result(job_id)


def test_a_row_naming_a_task_declared_for_another_alias_runs_on_this_one(
    no_put_backs: SQLiteBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What keeps a row from running arbitrary code is that it names a Task in a module the
    # workers may import; the alias it was declared with does not matter, since
    # Task.using(backend=...) enqueues it anywhere (issue 14, item 1).
    from django.test import override_settings

    backend = no_put_backs
    other = {**backend.options, "path": str(Path(backend.config.store.path).with_name("o.db"))}
    setting = {
        "default": {"BACKEND": "litetasks.backend.SQLiteBackend", "OPTIONS": backend.options},
        "other": {"BACKEND": "litetasks.backend.SQLiteBackend", "OPTIONS": other},
    }
    with override_settings(TASKS=setting):
        from litetasks._django.compat import task_backends

        other_task = task(backend="other")(tasks.undecorated)
        monkeypatch.setattr(tasks, "other_backend_task", other_task, raising=False)
        default = task_backends["default"]
        job_id = insert(default, "tests.tasks.other_backend_task")
        assert drain() == 1
        job = default.store.get(job_id)
        result = default.get_result(job_id)
    assert (job.state, job.errors) == (JobState.SUCCESSFUL, ())
    assert (result.task.backend, result.backend) == ("default", "default")


# -- nothing outside the allowed modules is imported -------------------------------------------


def test_antigravity_is_never_imported(backend: SQLiteBackend) -> None:
    assert "antigravity" not in sys.modules  # else this test proves nothing
    insert(backend, "antigravity")
    insert(backend, "antigravity.fly")
    assert drain() == 2
    assert "antigravity" not in sys.modules


@pytest.fixture
def booby_trapped_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Importable modules that leave a marker file behind if anything imports them."""
    folder = tmp_path / "trap"
    folder.mkdir()
    marker = tmp_path / "imported.txt"
    # "tests_evil" and "litetasksevil" start with the name of an installed app but are not in it.
    names = ["evil_mod", "tests_evil", "litetasksevil"]
    for name in names:
        (folder / f"{name}.py").write_text(
            textwrap.dedent(
                f"""
                with open({str(marker)!r}, "a") as handle:
                    handle.write({name!r} + "\\n")

                def fn(*args, **kwargs):
                    return "pwned"
                """
            )
        )
    monkeypatch.syspath_prepend(str(folder))
    yield marker
    for name in names:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("task_path", ["evil_mod.fn", "tests_evil.fn", "litetasksevil.fn"])
def test_a_module_outside_the_installed_apps_is_not_imported(
    no_put_backs: SQLiteBackend, booby_trapped_modules: Path, task_path: str
) -> None:
    job_id = insert(no_put_backs, task_path)
    job = drain_with_a_valid_task_last(no_put_backs, job_id)
    [error] = job.errors
    assert error.exception_class_path == "litetasks.exceptions.TaskNotFound"
    assert "so they did not import it (tried once)" in error.traceback
    assert not booby_trapped_modules.exists()
    assert task_path.partition(".")[0] not in sys.modules


# -- only tasks run: never litetasks itself, never a __main__ ------------------------------------

# Paths naming litetasks' own modules, and modules named with double underscores (a package's
# __main__ runs its command line when imported: litetasks.__main__ started a nested supervisor,
# which forked its own worker, inside the worker that imported it).
OWN_AND_DUNDER = [
    ("litetasks.__main__.x", DUNDER, "__main__"),
    ("litetasks.__main__.main", DUNDER, "__main__"),
    ("litetasks.cli.main", OWN_PACKAGE, None),
    ("litetasks.cli.app", OWN_PACKAGE, None),
    ("litetasks._store.store.Store", OWN_PACKAGE, None),
    ("litetasks._cli.demo.run_demo", OWN_PACKAGE, None),
    ("litetasks._cli.bench.run", OWN_PACKAGE, None),
    ("litetasks.management.commands.litetasks.Command", OWN_PACKAGE, None),
    ("litetasks.x", OWN_PACKAGE, None),
    ("tests.__main__.x", DUNDER, "__main__"),
    ("tests.sub.__main__.x", DUNDER, "__main__"),
    ("tests.__init__.x", DUNDER, "__init__"),
    ("tests.__pycache__.x", DUNDER, "__pycache__"),
]


@pytest.mark.parametrize(("task_path", "message", "dunder"), OWN_AND_DUNDER)
def test_a_row_naming_litetasks_itself_or_a_dunder_module_is_failed_at_once(
    backend: SQLiteBackend, task_path: str, message: str, dunder: str | None
) -> None:
    job_id = insert(backend, task_path)
    job = drain_with_a_valid_task_last(backend, job_id)
    expected = message.format(path=task_path, dunder=dunder)
    assert_refused(job, "litetasks.exceptions.TaskNotAllowed", expected)


@pytest.mark.parametrize(
    "task_path",
    [
        "tests.tasks.noop",
        "tests.tasks.undecorated",
        "tests.no_such_module.fn",
        "os.system",
        "antigravity.fly",
        "evil_mod.fn",
        *(path for path, _, _ in OWN_AND_DUNDER),
        "__main__.run",
        "tests.",
    ],
)
def test_enqueue_refuses_exactly_the_modules_a_worker_refuses_to_import(
    backend: SQLiteBackend, task_path: str
) -> None:
    from litetasks._django.compat import InvalidTask
    from litetasks.exceptions import TaskNotAllowed

    try:
        backend.check_task_module(task_path)
        refused_at_enqueue = False
    except InvalidTask:
        refused_at_enqueue = True
    try:
        backend.import_task(task_path)
        refused_unimported = False
    except TaskNotAllowed as exc:
        refused_unimported = "imported." in str(exc)  # "it was not" / "nothing was" imported
    assert refused_at_enqueue == refused_unimported


WATCHED = [
    "litetasks.__main__",
    "litetasks.cli",
    "litetasks._cli.commands",
    "litetasks._cli.demo",
    "litetasks._cli.bench",
    "litetasks.management.commands.litetasks",
    "trapapp",
    "trapapp.__main__",
    "trapapp.__init__",
]
_WORKER_SCRIPT = """
import json, sys
import django
django.setup()
watched = {watched!r}
before = sorted(m for m in watched if m in sys.modules)
from litetasks._django.compat import task_backends
from litetasks._store.records import NewJob
from litetasks._store.enqueueing import new_job_id
from litetasks.testing import drain
backend = task_backends["default"]
ids = {{}}
for path in {paths!r}:
    ids[path] = new_job_id()
    backend.store.enqueue([NewJob(job_id=ids[path], task_path=path)])
ran = drain()
after = sorted(m for m in watched if m in sys.modules)
jobs = {{path: backend.store.get(job_id) for path, job_id in ids.items()}}
rows = {{
    path: [job.state.value, [e.exception_class_path for e in job.errors],
           job.errors[-1].traceback.splitlines()[-1] if job.errors else ""]
    for path, job in jobs.items()
}}
print(json.dumps({{"before": before, "after": after, "ran": ran, "rows": rows}}))
"""


@pytest.mark.slow
def test_a_worker_process_imports_none_of_litetasks_own_modules_nor_any_dunder_module(
    tmp_path: Path,
) -> None:
    """In a fresh worker process (nothing preloaded): rows naming litetasks' command line, its
    __main__, its demo and bench, or an app's __main__ and __init__, import nothing and fail."""
    import subprocess

    from tests.harness import REPO, subprocess_env

    app = tmp_path / "trapapp"
    app.mkdir()
    marker = tmp_path / "imported.txt"
    side_effect = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\ndef x(): pass\n"
    for module in ("__init__", "__main__"):
        (app / f"{module}.py").write_text(side_effect)
    (tmp_path / "trap_settings.py").write_text(
        "from tests.settings import *  # noqa: F403\n"
        'TASKS["default"]["OPTIONS"]["task_modules"] = ["trapapp"]\n'
    )
    paths = [path for path, _, _ in OWN_AND_DUNDER if not path.startswith("tests.")]
    paths += ["trapapp.__main__.x", "trapapp.__init__.x", "trapapp.sub.__main__.x"]
    script = _WORKER_SCRIPT.format(watched=WATCHED, paths=paths)
    env = subprocess_env(tmp_path, settings="trap_settings", pythonpath=(tmp_path, REPO))

    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["before"] == []  # else this proves nothing
    assert report["after"] == []
    assert not marker.exists()
    assert report["ran"] == len(paths)
    for path, (state, errors, last_line) in report["rows"].items():
        assert state == "FAILED", path
        assert errors == ["litetasks.exceptions.TaskNotAllowed"], path
        assert last_line.endswith("it was not imported."), (path, last_line)


# -- malformed arguments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "exception_class_path", "message"),
    [
        (
            {"args_json": "[not json"},
            "json.decoder.JSONDecodeError",
            "Expecting value: line 1 column 2 (char 1)",
        ),
        (
            {"kwargs_json": "{'single': 'quotes'}"},
            "json.decoder.JSONDecodeError",
            "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (
            {"args_json": '{"a": 1}'},
            "builtins.ValueError",
            "The stored arguments are malformed: args must be a JSON array and kwargs a JSON "
            "object (got dict and dict).",
        ),
        (
            {"kwargs_json": "[1, 2]"},
            "builtins.ValueError",
            "The stored arguments are malformed: args must be a JSON array and kwargs a JSON "
            "object (got list and list).",
        ),
        (
            {"args_json": '"ab"'},
            "builtins.ValueError",
            "The stored arguments are malformed: args must be a JSON array and kwargs a JSON "
            "object (got str and dict).",
        ),
    ],
)
def test_a_row_with_malformed_arguments_is_failed_before_the_task_starts(
    backend: SQLiteBackend, fields: dict[str, str], exception_class_path: str, message: str
) -> None:
    job_id = insert(backend, "tests.tasks.echo", **fields)
    job = drain_with_a_valid_task_last(backend, job_id)
    assert_refused(job, exception_class_path, message)


# -- the file and the code ---------------------------------------------------------------------


def test_queue_file_and_its_wal_and_shm_are_private_even_with_a_permissive_umask(
    backend: SQLiteBackend, queue_path: Path
) -> None:
    import os

    old = os.umask(0)
    try:
        tasks.noop.enqueue()
        drain()
    finally:
        os.umask(old)
    files = [queue_path, *(queue_path.with_name(queue_path.name + s) for s in ("-wal", "-shm"))]
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in files} == {
        path.name: 0o600 for path in files
    }


def test_a_dangling_symlink_at_the_queue_path_gets_a_private_file_at_its_target(
    tmp_path: Path,
) -> None:
    import os

    from django.test import override_settings

    real = tmp_path / "real"
    real.mkdir()
    target = real / "tasks.sqlite3"
    link = tmp_path / "tasks.sqlite3"
    link.symlink_to(target)  # dangling: the file does not exist yet
    setting = {
        "default": {"BACKEND": "litetasks.backend.SQLiteBackend", "OPTIONS": {"path": str(link)}}
    }
    old = os.umask(0)
    try:
        with override_settings(TASKS=setting):
            tasks.noop.enqueue()
            assert drain() == 1
    finally:
        os.umask(old)
    assert link.is_symlink()
    files = [target, *(real / f"tasks.sqlite3{suffix}" for suffix in ("-wal", "-shm"))]
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in files} == {
        path.name: 0o600 for path in files
    }


FORBIDDEN_MODULES = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle"}


def _imported_modules(source: str) -> set[str]:
    """Top-level names of every module ``source`` imports, statically or by constant name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args:
            called = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            first = node.args[0]
            if called in {"__import__", "import_module"} and isinstance(first, ast.Constant):
                names.add(str(first.value).split(".")[0])
    return names


def test_the_import_scanner_sees_every_form_of_import() -> None:
    source = (
        "import pickle\nfrom marshal import loads\nimport a.b as c\nfrom . import d\n"
        "__import__('shelve')\nimportlib.import_module('dill.x')\n"
    )
    assert _imported_modules(source) == {"pickle", "marshal", "a", "shelve", "dill"}


def test_litetasks_never_imports_pickle_marshal_or_shelve() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "_store" / "store.py" in sources
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in sources
        if (
            found := {
                name for name in _imported_modules(path.read_text()) if name in FORBIDDEN_MODULES
            }
        )
    }
    assert offenders == {}


def test_stored_rows_hold_json_text_only(backend: SQLiteBackend) -> None:
    result = tasks.echo.enqueue(1, "two", three=[3])
    drain()
    job = backend.store.get(result.id)
    assert json.loads(job.args_json) == [1, "two"]
    assert json.loads(job.kwargs_json) == {"three": [3]}
    assert json.loads(job.return_json or "null") == {"args": [1, "two"], "kwargs": {"three": [3]}}
