"""A new user's project, as ``django-admin startproject`` lays it out, run by real commands
(issue 14): bad OPTIONS and a missing app reported by ``manage.py check``, a relative
``OPTIONS["path"]`` read from a subfolder, and ``manage.py test`` isolated from the development
queue the way it is from the development database.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.harness import litetasks_argv, run_cli, subprocess_env

pytestmark = pytest.mark.slow

SETTINGS = """
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "test"
USE_TZ = True
INSTALLED_APPS = {apps!r}
ROOT_URLCONF = "proj.urls"
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
}}
TASKS = {{"default": {{"BACKEND": "litetasks.backend.SQLiteBackend", "OPTIONS": {options!r}}}}}
"""
TASKS_PY = """
try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task


@task
def hello(n):
    return f"hello {n}"
"""
VIEWS_PY = """
from django.http import HttpResponse

from .tasks import hello


def index(request):
    return HttpResponse(hello.enqueue(1).id)
"""
URLS_PY = """
from django.urls import path

from shop.views import index

urlpatterns = [path("", index)]
"""
MANAGE_PY = """
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""


def write_project(
    root: Path,
    *,
    apps: tuple[str, ...] = ("litetasks", "shop"),
    options: dict[str, object] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """A project ``proj`` with an app ``shop`` (a task ``hello``, a view enqueueing it)."""
    sources = {
        "manage.py": MANAGE_PY,
        "proj/__init__.py": "",
        "proj/settings.py": SETTINGS.format(apps=list(apps), options=options or {}),
        "proj/urls.py": URLS_PY,
        "shop/__init__.py": "",
        "shop/tasks.py": TASKS_PY,
        "shop/views.py": VIEWS_PY,
        **(files or {}),
    }
    for name, text in sources.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


def manage(root: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / "manage.py"), *args],
        cwd=cwd or root,
        env=subprocess_env(settings=None, pythonpath=(root,)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- item 5: OPTIONS ---------------------------------------------------------------------------


def test_an_options_typo_is_a_system_check_error_not_a_traceback(tmp_path: Path) -> None:
    write_project(tmp_path, options={"treads": 3})

    checked = manage(tmp_path, "check")

    assert checked.returncode == 1, checked.stderr
    assert "Traceback" not in checked.stderr
    assert re.search(
        r"\?: \(litetasks\.E005\) Unknown option 'treads' in TASKS\['default'\]\['OPTIONS'\]\. "
        r"Valid options: .*threads",
        checked.stderr,
    ), checked.stderr
    assert "HINT: Fix TASKS['default']['OPTIONS']" in checked.stderr


def test_a_relative_path_is_relative_to_base_dir_from_any_folder(tmp_path: Path) -> None:
    write_project(tmp_path, options={"path": "var/tasks.sqlite3"})
    (tmp_path / "var").mkdir()
    subfolder = tmp_path / "shop"

    status = run_cli(
        *("status", "--json"),
        cwd=subfolder,
        env=subprocess_env(settings="proj.settings", pythonpath=(tmp_path,)),
        argv=litetasks_argv("status", "--json"),
    )

    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["path"] == str(tmp_path / "var" / "tasks.sqlite3")
    assert sorted(p.name for p in subfolder.iterdir() if "tasks" in p.name) == ["tasks.py"]


def test_a_relative_path_without_base_dir_is_a_system_check_error(tmp_path: Path) -> None:
    write_project(tmp_path, options={"path": "var/tasks.sqlite3"})
    settings = tmp_path / "proj" / "settings.py"
    settings.write_text(
        settings.read_text().replace("BASE_DIR = ", "_BASE = ").replace("BASE_DIR", "_BASE")
    )

    checked = manage(tmp_path, "check")

    assert checked.returncode == 1, checked.stderr
    assert "(litetasks.E005) TASKS['default']['OPTIONS']['path'] is a relative path " in (
        checked.stderr
    )
    assert not (tmp_path / "var").exists()


# -- item 4: the litetasks app -----------------------------------------------------------------


def test_a_missing_litetasks_app_is_reported_by_check(tmp_path: Path) -> None:
    # The app's models import its tasks (signal handlers often do): the backend exists when
    # the checks start, and reports the missing app as a system check.
    write_project(tmp_path, apps=("shop",), files={"shop/models.py": "from . import tasks\n"})

    checked = manage(tmp_path, "check")

    assert checked.returncode == 0, checked.stderr
    assert (
        "?: (litetasks.W003) TASKS['default'] uses litetasks, but \"litetasks\" is not in "
        "INSTALLED_APPS: tasks are stored, but `python manage.py runserver` does not run them "
        "and `python manage.py litetasks` does not exist (the `litetasks` command still works)."
        '\n\tHINT: Add "litetasks" to INSTALLED_APPS.'
    ) in checked.stderr


def test_a_missing_app_is_logged_when_only_a_view_imports_the_tasks(tmp_path: Path) -> None:
    # The URL checks import the view, and so make the backend, after the checks were listed.
    write_project(tmp_path, apps=("shop",))

    checked = manage(tmp_path, "check")

    assert checked.returncode == 0, checked.stderr
    assert '"litetasks" is not in INSTALLED_APPS' in checked.stderr
    assert "(litetasks.W003)" in checked.stderr
    assert checked.stderr.count("INSTALLED_APPS: tasks are stored") == 1


def test_without_the_app_an_options_typo_is_logged_when_a_view_imports_the_tasks(
    tmp_path: Path,
) -> None:
    write_project(tmp_path, apps=("shop",), options={"treads": 3})

    checked = manage(tmp_path, "check")

    assert "Traceback" not in checked.stderr
    assert "Unknown option 'treads' in TASKS['default']['OPTIONS']" in checked.stderr
    assert "(litetasks.E005)" in checked.stderr


# -- item 3: manage.py test is isolated from the development queue -----------------------------

TESTS_PY = """
import os

from django.test import SimpleTestCase

from litetasks.testing import drain

from .tasks import hello

try:
    from django.tasks import default_task_backend
except ImportError:  # Django 5.2 with the backport
    from django_tasks import default_task_backend


class {name}(SimpleTestCase):
    def test_the_queue_is_this_test_process_own(self):
        line = f"QUEUE {{default_task_backend.config.store.path}}\\n"
        os.write(1, line.encode())  # one write: parallel test processes share the pipe
        self.assertEqual(drain(), 0)  # the task enqueued in development is not here
        result = hello.enqueue(2)
        self.assertEqual(drain(), 1)
        result.refresh()
        self.assertEqual(result.return_value, "hello 2")
"""
ENQUEUE = "from shop.tasks import hello; print(hello.enqueue(1).id)"
STATUS = "from shop.tasks import hello; print(hello.get_backend().get_result({job_id!r}).status)"


@pytest.mark.parametrize("parallel", [1, 2])
def test_manage_py_test_uses_its_own_queue_file_and_removes_it(
    tmp_path: Path, parallel: int
) -> None:
    files = {f"shop/test_{n}.py": TESTS_PY.format(name=f"Isolated{n}") for n in range(2)}
    write_project(tmp_path, files=files)
    development = manage(tmp_path, "shell", "-c", ENQUEUE)
    assert development.returncode == 0, development.stderr
    job_id = development.stdout.split()[-1]

    tested = manage(tmp_path, "test", "shop", "--parallel", str(parallel), "-v", "2")

    assert tested.returncode == 0, tested.stdout + tested.stderr
    queues = [Path(p) for p in re.findall(r"^QUEUE (\S+)$", tested.stdout, re.MULTILINE)]
    assert len(queues) == 2, tested.stdout + tested.stderr
    assert all(q.parent != tmp_path and q.name.startswith("test_tasks") for q in queues), queues
    if parallel == 2:
        assert len(set(queues)) == 2, queues  # each test process its own
        assert {q.name for q in queues} <= {"test_tasks_1.sqlite3", "test_tasks_2.sqlite3"}
    assert not any(q.parent.exists() for q in queues), queues
    still = manage(tmp_path, "shell", "-c", STATUS.format(job_id=job_id))
    assert still.stdout.split()[-1] == "READY", still.stdout + still.stderr


# -- item 15: the README's first snippet works as written -----------------------------------------


def readme_snippets() -> list[str]:
    """The Python blocks of the README's "Using it in your project", in order."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Using it in your project", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_readme_snippet_runs_as_written(tmp_path: Path) -> None:
    settings_block, tasks_block = readme_snippets()[:2]
    settings = settings_block.replace("[..., ", "[").replace("# settings.py\n", "")
    tasks_py, anywhere = tasks_block.split(
        "# anywhere: a view, a signal handler, a management command"
    )
    now, later = anywhere.split("# ... later, once a worker has run it:")
    if "django.tasks" not in sys.modules:
        try:
            import django.tasks  # noqa: F401
        except ImportError:  # Django 5.2 with the backport, as the README says
            tasks_py = tasks_py.replace("from django.tasks", "from django_tasks")
    write_project(
        tmp_path,
        files={
            "proj/settings.py": SETTINGS.format(apps=["litetasks", "myapp"], options={})
            + settings.replace('INSTALLED_APPS = ["litetasks"]', ""),
            "myapp/__init__.py": "",
            "myapp/tasks.py": tasks_py,
        },
    )
    lines = [line.split("#")[0].rstrip() for line in (now + later).splitlines()]
    script = "\n".join(
        [
            "from types import SimpleNamespace",
            "from litetasks.testing import drain",
            "from myapp.tasks import send_welcome",
            "user = SimpleNamespace(pk=7)",
            *(
                f"_v = ({line}); print('OUT', *(_v if type(_v) is tuple else [_v]), sep='|')"
                if line.startswith("result.status")
                else line
                for line in lines
                if line
            ),
        ]
    ).replace("result.refresh()", "print('OUT', drain(), sep='|')\nresult.refresh()")

    ran = manage(tmp_path, "shell", "-c", script)

    assert ran.returncode == 0, ran.stderr
    out = [line for line in ran.stdout.splitlines() if line.startswith("OUT|")]
    assert out == ["OUT|READY", "OUT|1", "OUT|SUCCESSFUL|sent"], ran.stdout


PYTEST_PY = """
import os

from litetasks.testing import drain

from shop.tasks import hello

try:
    from django.tasks import default_task_backend
except ImportError:  # Django 5.2 with the backport
    from django_tasks import default_task_backend


def test_the_queue_is_this_test_process_own():
    line = f"QUEUE {default_task_backend.config.store.path}\\n"
    os.write(1, line.encode())
    assert drain() == 0  # the task enqueued in development is not here
    result = hello.enqueue(2)
    assert drain() == 1
    result.refresh()
    assert result.return_value == "hello 2"
"""


def test_pytest_django_uses_its_own_queue_file_and_removes_it(tmp_path: Path) -> None:
    ini = "[pytest]\nDJANGO_SETTINGS_MODULE = proj.settings\npython_files = test_*.py\n"
    write_project(tmp_path, files={"pytest.ini": ini, "shop/test_tasks.py": PYTEST_PY})
    development = manage(tmp_path, "shell", "-c", ENQUEUE)
    assert development.returncode == 0, development.stderr
    job_id = development.stdout.split()[-1]

    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "pytest_django"],
        cwd=tmp_path,
        env=subprocess_env(settings=None, pythonpath=(tmp_path,)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert tested.returncode == 0, tested.stdout + tested.stderr
    [queue] = [Path(p) for p in re.findall(r"QUEUE (\S+)", tested.stdout)]
    assert queue.name == "test_tasks.sqlite3" and queue.parent != tmp_path
    assert not queue.parent.exists()
    still = manage(tmp_path, "shell", "-c", STATUS.format(job_id=job_id))
    assert still.stdout.split()[-1] == "READY", still.stdout + still.stderr
