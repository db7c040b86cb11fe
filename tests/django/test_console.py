"""The operator's console in the Django admin, through Django's test client: its pages, its
permissions, its actions, and secrets kept out of the page source."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core import checks
from django.core.management import call_command
from django.test import Client, override_settings

from litetasks._django.compat import task_backends
from litetasks._store.records import JobState
from litetasks.exceptions import JobNotFound
from litetasks.testing import drain
from tests import tasks
from tests.harness import Pool

CONSOLE = "/admin/litetasks/task/"
NIGHTLY = {"nightly": {"task": "tests.tasks.noop", "cron": "0 3 * * *"}}
PAGES = ["", "tasks/", "workers/", "queues/", "periodic/"]


@pytest.fixture(scope="module", autouse=True)
def database() -> None:
    call_command("migrate", verbosity=0, run_syncdb=True)


@pytest.fixture(autouse=True)
def clean_users() -> Iterator[None]:
    yield
    LogEntry.objects.all().delete()
    User.objects.all().delete()


def user(name: str, *perms: str, staff: bool = True, superuser: bool = False) -> Client:
    person = User.objects.create_user(name, password="pw", is_staff=staff)
    person.is_superuser = superuser
    person.save()
    for codename in perms:
        person.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client(enforce_csrf_checks=True)
    client.force_login(person)
    return client


@pytest.fixture
def backend(lite_settings: dict[str, Any]) -> Any:
    return task_backends["default"]


def failed_task(backend: Any, **kwargs: Any) -> str:
    result = tasks.fail_value_error.enqueue(**kwargs)
    drain()
    assert backend.store.get(result.id).state is JobState.FAILED
    return str(result.id)


def tasks_setting_with(tmp_path: Path, **options: Any) -> dict[str, Any]:
    """TASKS of one litetasks backend, its queue file in ``tmp_path``, with ``options``."""
    path = str(tmp_path / "tasks.sqlite3")
    return {
        "default": {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "OPTIONS": {"path": path, **options},
        }
    }


def csrf_post(client: Client, url: str, data: dict[str, Any]) -> Any:
    page = client.get(CONSOLE + "tasks/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
    assert token is not None
    return client.post(url, {**data, "csrfmiddlewaretoken": token.group(1).decode()})


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_for_staff_with_view_permission_and_without_javascript(
    backend: Any, page: str
):
    failed_task(backend)
    client = user("viewer", "view_task")

    response = client.get(CONSOLE + page)

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="lt-live"' in html and "admin/css/base.css" in html  # the admin's own layout
    assert "<noscript" not in html  # nothing hides behind JavaScript: the page is complete


def test_the_admin_index_lists_the_console_under_litetasks(backend: Any):
    client = user("viewer", "view_task")

    html = client.get("/admin/").content.decode()

    assert 'href="/admin/litetasks/task/"' in html


@pytest.mark.parametrize("page", PAGES)
def test_non_staff_users_get_the_login_page(backend: Any, page: str):
    client = user("visitor", "view_task", staff=False)

    response = client.get(CONSOLE + page)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_without_the_view_permission_are_refused(backend: Any):
    client = user("other")

    assert client.get(CONSOLE).status_code == 403


def test_the_overview_counts_tasks_per_queue_and_state(backend: Any):
    failed_task(backend)
    tasks.noop.enqueue()
    client = user("viewer", "view_task")

    html = client.get(CONSOLE).content.decode()

    assert "Tasks per queue and state" in html
    assert re.search(r"state=FAILED\">1</a>", html)
    assert re.search(r"state=READY\">1</a>", html)
    assert "<svg" in html and "failure rate" in html
    assert "0 successful, 1 failed</title>" in html  # the chart's bar of this minute


def test_the_task_list_filters_by_state_and_finds_text_in_arguments(backend: Any):
    failed = failed_task(backend, message="needle-in-args")
    ready = tasks.noop.enqueue().id
    client = user("viewer", "view_task")

    only_failed = client.get(CONSOLE + "tasks/", {"state": "FAILED"}).content.decode()
    by_text = client.get(CONSOLE + "tasks/", {"q": "needle-in"}).content.decode()

    assert failed in only_failed and ready not in only_failed
    assert failed in by_text and ready not in by_text


def test_the_detail_page_shows_the_full_traceback_of_each_attempt(backend: Any):
    job_id = failed_task(backend, message="it broke here")
    client = user("viewer", "view_task")

    html = client.get(f"{CONSOLE}tasks/{job_id}/").content.decode()

    assert "Traceback (most recent call last)" in html
    assert "ValueError: it broke here" in html
    assert "tests.tasks.fail_value_error" in html


def test_a_view_only_user_sees_no_action_buttons(backend: Any):
    job_id = failed_task(backend)
    client = user("viewer", "view_task")

    pages = [client.get(CONSOLE + "tasks/"), client.get(f"{CONSOLE}tasks/{job_id}/")]

    for response in pages:
        assert 'name="action"' not in response.content.decode()


def test_a_forged_post_from_a_view_only_user_is_refused(backend: Any):
    job_id = failed_task(backend)
    client = user("viewer", "view_task")

    response = csrf_post(
        client, CONSOLE + "act/", {"action": "retry", "ids": job_id, "confirmed": "yes"}
    )

    assert response.status_code == 403
    assert backend.store.get(job_id).state is JobState.FAILED


def test_an_action_without_the_csrf_token_is_refused(backend: Any):
    job_id = failed_task(backend)
    client = user("actor", "view_task", "act_on_task")

    response = client.post(CONSOLE + "act/", {"action": "retry", "ids": job_id, "confirmed": "yes"})

    assert response.status_code == 403
    assert backend.store.get(job_id).state is JobState.FAILED


def test_no_action_runs_on_get(backend: Any):
    job_id = failed_task(backend)
    client = user("boss", superuser=True)

    response = client.get(CONSOLE + "act/", {"action": "retry", "ids": job_id, "confirmed": "yes"})

    assert response.status_code == 405
    assert backend.store.get(job_id).state is JobState.FAILED


def test_retrying_one_task_makes_it_ready_and_is_recorded_in_the_admin_history(backend: Any):
    job_id = failed_task(backend)
    client = user("actor", "view_task", "act_on_task")

    response = csrf_post(
        client, CONSOLE + "act/", {"action": "retry", "ids": job_id, "confirmed": "yes"}
    )

    assert response.status_code == 303
    assert backend.store.get(job_id).state is JobState.READY
    [entry] = LogEntry.objects.all()
    assert (entry.user.username, entry.object_id) == ("actor", job_id)
    assert "retry" in entry.object_repr
    assert user("boss", superuser=True).get("/admin/").status_code == 200  # recent actions


def test_deleting_needs_the_delete_permission(backend: Any):
    job_id = failed_task(backend)
    actor = user("actor", "view_task", "act_on_task")
    deleter = user("deleter", "view_task", "delete_task")
    data = {"action": "delete", "ids": job_id, "confirmed": "yes"}

    refused = csrf_post(actor, CONSOLE + "act/", data)
    done = csrf_post(deleter, CONSOLE + "act/", data)

    assert (refused.status_code, done.status_code) == (403, 303)
    with pytest.raises(JobNotFound):
        backend.store.get(job_id)


def test_a_bulk_retry_confirms_the_snapshot_and_leaves_later_failures_alone(backend: Any):
    first = [failed_task(backend) for _ in range(3)]
    client = user("actor", "view_task", "act_on_task")
    page = client.get(CONSOLE + "tasks/", {"state": "FAILED"}).content.decode()
    snapshot = {
        name: re.search(rf'name="{name}" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
        for name in ("upto", "loaded_at")
    }
    later = failed_task(backend)

    confirmation = csrf_post(
        client, CONSOLE + "act/", {"action": "retry_matching", "state": "FAILED", **snapshot}
    )
    html = confirmation.content.decode()
    assert "Retry 3 tasks?" in html and later not in html
    [id_list] = re.findall(r'name="id_list" value="([^"]*)"', html)
    data = {"action": "retry", "confirmed": "yes", "id_list": id_list}
    done = csrf_post(client, CONSOLE + "act/", data)

    assert done.status_code == 303
    assert [backend.store.get(i).state for i in first] == [JobState.READY] * 3
    assert backend.store.get(later).state is JobState.FAILED


def test_redacted_values_never_reach_the_page_source(tmp_path: Path):
    tasks_setting = tasks_setting_with(tmp_path, redact=["card"])
    with override_settings(TASKS=tasks_setting):
        result = tasks.echo.enqueue("visible", nested={"credit_card": "4111-SECRET", "n": 1})
        drain()
        client = user("viewer", "view_task")
        pages = [client.get(CONSOLE + "tasks/"), client.get(f"{CONSOLE}tasks/{result.id}/")]
        found = client.get(CONSOLE + "tasks/", {"q": "4111"})

    for response in [*pages, found]:
        html = response.content.decode()
        assert "4111-SECRET" not in html
    assert "********" in pages[1].content.decode() and "visible" in pages[1].content.decode()
    assert result.id not in found.content.decode()  # a search cannot probe a hidden value


def test_default_redaction_hides_passwords_and_tokens(backend: Any):
    result = tasks.echo.enqueue(password="hunter2", api_key="k-123", user="ada")
    client = user("viewer", "view_task")

    html = client.get(f"{CONSOLE}tasks/{result.id}/").content.decode()

    assert "hunter2" not in html and "k-123" not in html and "ada" in html


def test_a_redact_option_that_is_not_a_list_of_key_names_fails_a_check(tmp_path: Path):
    tasks_setting = tasks_setting_with(tmp_path, redact=["token", 3, ""])
    with override_settings(TASKS=tasks_setting):
        found = list(task_backends["default"].check())

    assert [m.id for m in found if isinstance(m, checks.Error)] == [
        "litetasks.E020",
        "litetasks.E020",
    ]


def test_run_now_enqueues_the_schedules_task(tmp_path: Path):
    tasks_setting = tasks_setting_with(tmp_path, periodic=NIGHTLY)
    with override_settings(TASKS=tasks_setting):
        client = user("actor", "view_task", "act_on_task")
        listed = client.get(CONSOLE + "periodic/").content.decode()
        response = csrf_post(client, CONSOLE + "periodic/run/", {"name": "nightly"})
        counts = task_backends["default"].store.console.counts()

    assert "0 3 * * *" in listed and "Run now" in listed
    assert response.status_code == 303
    assert counts.total(JobState.READY) == 1


def test_pausing_a_queue_from_the_queues_page_keeps_it_paused_until_resumed(backend: Any):
    actor = user("actor", "view_task", "act_on_task")
    viewer = user("viewer", "view_task")
    data = {"kind": "queue", "verb": "pause", "name": "emails"}

    refused = csrf_post(viewer, CONSOLE + "pause/", data)
    paused = csrf_post(actor, CONSOLE + "pause/", data)
    page = actor.get(CONSOLE + "queues/").content.decode()
    stored = backend.store.pausing.paused_queues()
    resumed = csrf_post(actor, CONSOLE + "pause/", {**data, "verb": "resume"})

    assert (refused.status_code, paused.status_code, resumed.status_code) == (403, 303, 303)
    assert stored == {"emails"}
    assert "paused</span>" in page and 'value="resume"' in page
    assert backend.store.pausing.paused_queues() == set()
    assert LogEntry.objects.filter(object_id="emails").count() == 2


def test_pausing_a_schedule_from_the_periodic_page(tmp_path: Path):
    tasks_setting = tasks_setting_with(tmp_path, periodic=NIGHTLY)
    with override_settings(TASKS=tasks_setting):
        client = user("actor", "view_task", "act_on_task")
        data = {"kind": "schedule", "verb": "pause", "name": "nightly"}
        response = csrf_post(client, CONSOLE + "pause/", data)
        listed = client.get(CONSOLE + "periodic/").content.decode()
        paused = task_backends["default"].store.pausing.paused_schedules()

    assert response.status_code == 303
    assert paused == {"nightly"}
    assert "paused</span>" in listed


def test_several_litetasks_backends_get_a_selector_and_their_own_pages(tmp_path: Path):
    tasks_setting = {
        alias: {
            "BACKEND": "litetasks.backend.SQLiteBackend",
            "OPTIONS": {"path": str(tmp_path / f"{alias}.sqlite3")},
        }
        for alias in ("default", "reports")
    }
    with override_settings(TASKS=tasks_setting):
        default_id = tasks.noop.enqueue().id
        reports_id = tasks.noop.using(backend="reports").enqueue().id
        client = user("viewer", "view_task")
        first = client.get(CONSOLE + "tasks/").content.decode()
        second = client.get(CONSOLE + "tasks/", {"backend": "reports"}).content.decode()
        missing = client.get(CONSOLE + "tasks/", {"backend": "nope"})

    assert '<select name="backend"' in first
    assert default_id in first and reports_id not in first
    assert reports_id in second and default_id not in second
    assert missing.status_code == 404


def test_the_overview_and_workers_page_show_a_lost_worker_and_its_stranded_task(backend: Any):
    from litetasks._store.liveness import this_process
    from litetasks._store.records import WorkerRecord

    here = this_process()
    gone = WorkerRecord(
        worker_id="gone-worker",
        pid=2**22 + 7,  # above pid_max's default: no such process
        host=here.host,
        boot_id=here.boot_id,
        proc_start=1,
        queues=None,
        started_at_us=0,
        heartbeat_at_us=0,
        pid_namespace=here.pid_namespace,
    )
    backend.store.register_worker(gone)
    stranded = tasks.noop.enqueue().id
    backend.store.claim("gone-worker")
    client = user("viewer", "view_task")

    overview = client.get(CONSOLE).content.decode()
    workers = client.get(CONSOLE + "workers/").content.decode()

    assert re.search(
        r"<strong class=\"lt-bad\">1</strong> task RUNNING under a lost worker", overview
    )
    assert "1 lost" in overview
    assert "gone-worker" in workers and 'class="lt-bad">lost<' in workers
    assert f"/tasks/{stranded}/" in workers


def workers_table(client: Client) -> list[dict[str, str]]:
    """The rows of the Workers page, each as {column heading: the cell's text}."""
    html = client.get(CONSOLE + "workers/").content.decode()
    table = html.split("<h2>Workers</h2>", 1)[1].split("</table>", 1)[0]  # not the admin's nav
    header, *rows = [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        ]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
    ]
    return [dict(zip(header, row, strict=True)) for row in rows]


@pytest.mark.slow
def test_the_workers_page_shows_how_many_threads_a_real_pool_runs(pool: Pool):
    pool.start(threads=3)
    [pid] = pool.children(1)
    client = user("viewer", "view_task")

    [row] = [row for row in workers_table(client) if row["PID"] == str(pid)]

    assert (row["Threads"], row["Status"]) == ("3", "alive")


def test_a_worker_row_of_an_older_litetasks_shows_its_threads_as_unknown(
    queue_path: Path, lite_settings: dict[str, Any]
):
    from litetasks._store.liveness import this_process
    from litetasks._store.schema import MIGRATIONS

    here = this_process()
    connection = apsw.Connection(str(queue_path))  # a queue file of schema version 6
    for migration in MIGRATIONS[:6]:
        connection.execute(migration)
    connection.execute("PRAGMA user_version = 6")
    connection.execute(
        "INSERT INTO workers (worker_id, pid, host, boot_id, proc_start, pid_namespace, queues, "
        "started_at, heartbeat_at) VALUES ('old-worker', :pid, :host, :boot_id, :proc_start, "
        ":namespace, NULL, 1, 1)",
        {
            "pid": here.pid,
            "host": here.host,
            "boot_id": here.boot_id,
            "proc_start": here.proc_start,
            "namespace": here.pid_namespace,
        },
    )
    connection.close()
    client = user("viewer", "view_task")

    [row] = workers_table(client)

    assert (row["Worker"], row["Threads"], row["Status"]) == ("old-worker", "\N{EN DASH}", "alive")


def test_a_task_page_links_its_hooks_to_the_tasks_they_enqueued(backend: Any):
    from tests import feature_tasks

    job_id = feature_tasks.with_success_hook.enqueue(7).id
    drain()
    client = user("viewer", "view_task")

    detail = client.get(f"{CONSOLE}tasks/{job_id}/").content.decode()
    link = re.search(r'href="([^"]*task=tests.feature_tasks.hook_record[^"]*)"', detail)
    assert link is not None
    listed = client.get(link.group(1).replace("&amp;", "&")).content.decode()

    hook_rows = re.findall(r"<td>tests\.feature_tasks\.hook_record</td>", listed)
    assert len(hook_rows) == 1 and "with_success_hook" not in listed.split("result_list")[1]


def test_a_bulk_action_on_more_tasks_than_django_takes_form_fields(backend: Any):
    from litetasks._store.records import ErrorRecord, NewJob, Outcome

    store = backend.store
    ids = [f"bulk-{i:05d}" for i in range(1500)]
    store.enqueue([NewJob(job_id=i, task_path="tests.tasks.noop") for i in ids])
    claimed = store.claim("w", limit=len(ids))
    error = ErrorRecord(exception_class_path="builtins.ValueError", traceback="ValueError\n")
    now = store.now_us()
    store.record(
        [
            Outcome(
                job_id=j.job_id,
                worker_id="w",
                attempt=1,
                started_at_us=now,
                finished_at_us=now,
                error=error,
            )
            for j in claimed
        ]
    )
    client = user("actor", "view_task", "act_on_task")
    snapshot = {"upto": str(store.console.newest_seq()), "loaded_at": str(store.now_us())}

    confirmation = csrf_post(client, CONSOLE + "act/", {"action": "retry_matching", **snapshot})
    [id_list] = re.findall(r'name="id_list" value="([^"]*)"', confirmation.content.decode())
    data = {"action": "retry", "confirmed": "yes", "id_list": id_list}
    done = csrf_post(client, CONSOLE + "act/", data)

    assert done.status_code == 303
    assert store.console.counts().total(JobState.READY) == 1500


def test_a_broken_periodic_schedule_is_reported_and_the_pages_still_render(tmp_path: Path):
    broken = {"bad": {"task": "tests.tasks.noop", "cron": "not a cron"}}
    tasks_setting = tasks_setting_with(tmp_path, periodic=broken)
    with override_settings(TASKS=tasks_setting):
        client = user("viewer", "view_task")
        responses = [client.get(CONSOLE), client.get(CONSOLE + "periodic/")]

    for response in responses:
        assert response.status_code == 200
        assert "The periodic schedules cannot be read:" in response.content.decode()


def test_cancelling_the_selected_tasks_asks_first_then_cancels_only_them(backend: Any):
    first, second, other = (tasks.noop.enqueue().id for _ in range(3))
    client = user("actor", "view_task", "act_on_task")

    asked = csrf_post(client, CONSOLE + "act/", {"action": "cancel", "ids": [first, second]})
    states_meanwhile = {backend.store.get(i).state for i in (first, second)}
    [id_list] = re.findall(r'name="id_list" value="([^"]*)"', asked.content.decode())
    data = {"action": "cancel", "confirmed": "yes", "id_list": id_list}
    done = csrf_post(client, CONSOLE + "act/", data)

    assert "Cancel 2 tasks?" in asked.content.decode()
    assert states_meanwhile == {JobState.READY}
    assert done.status_code == 303
    assert [backend.store.get(i).state for i in (first, second, other)] == [
        JobState.FAILED,
        JobState.FAILED,
        JobState.READY,
    ]
