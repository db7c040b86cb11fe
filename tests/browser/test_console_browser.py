"""The console in a real browser: Playwright drives Debian's chromium against ``runserver``,
with a real ``litetasks run`` pool on the same queue file (``tests/browser/site.py``).

Skipped with a reason when chromium or Playwright is missing, except in CI (``CI=true``), where
that fails: ``.ci/run`` installs both.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from litetasks._store.records import JobState
from tests.browser import console_tasks
from tests.browser.site import CHROMIUM, PASSWORD, ConsoleSite, running_site

pytestmark = pytest.mark.slow


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} CI must run the browser tests: .ci/run installs it.")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _missing(f"Debian's chromium is not at {CHROMIUM} (apt-get install chromium).")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install 'litetasks[browser]').")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, browser: Any) -> Iterator[ConsoleSite]:
    with running_site(tmp_path_factory.mktemp("console")) as started:
        yield started


def logged_in(browser: Any, site: ConsoleSite, username: str, **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{site.url}/admin/login/?next=/admin/litetasks/task/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(r".*/admin/litetasks/task/$"))
    return page


def test_staff_find_a_failure_read_its_traceback_retry_it_and_watch_it_succeed(
    browser: Any, site: ConsoleSite, tmp_path: Path
):
    flag = tmp_path / "fixed"
    job_id = console_tasks.fails_until.enqueue(str(flag)).id
    site.wait_state(job_id, JobState.FAILED)
    page = logged_in(browser, site, "admin")

    page.reload()
    page.click('a[href*="queue=default"][href*="state=FAILED"]')
    page.click(f'a[href*="/tasks/{job_id}/"]')
    page.get_by_text("ValueError: not yet").wait_for()
    flag.touch()
    page.click('button[name="action"][value="retry"]')
    page.wait_for_url(re.compile(rf".*/tasks/{job_id}/.*"))
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    page.locator("#lt-task-state", has_text="SUCCESSFUL").wait_for(timeout=30_000)

    assert navigations == []  # the page refreshed its own content: no reload
    assert site.backend.store.get(job_id).state is JobState.SUCCESSFUL


def test_a_bulk_retry_touches_the_failures_the_page_showed_not_those_after(
    browser: Any, site: ConsoleSite
):
    early = [console_tasks.always_fails.enqueue(f"early-{i}").id for i in range(3)]
    for job_id in early:
        site.wait_state(job_id, JobState.FAILED)
    page = logged_in(browser, site, "admin")
    page.goto(
        f"{site.url}/admin/litetasks/task/tasks/?state=FAILED"
        "&task=tests.browser.console_tasks.always_fails"
    )
    late = [console_tasks.always_fails.enqueue(f"late-{i}").id for i in range(2)]
    for job_id in late:
        site.wait_state(job_id, JobState.FAILED)
    for job_id in late:  # a live refresh shows the late failures
        page.locator(f'#lt-live a[href*="/tasks/{job_id}/"]').first.wait_for()

    page.click('button[value="retry_matching"]')
    page.locator("h1", has_text="Retry 3 tasks?").wait_for()
    more = console_tasks.always_fails.enqueue("while-confirming").id
    site.wait_state(more, JobState.FAILED)
    page.click('input[type=submit][value="Yes, retry 3 tasks"]')
    page.locator(".messagelist").wait_for()

    for job_id in early:
        site.wait_state(job_id, JobState.FAILED)  # failed again, after its retry
        assert site.backend.store.get(job_id).attempts == 2
    for job_id in [*late, more]:
        assert site.backend.store.get(job_id).attempts == 1


def test_a_paused_queue_is_left_by_the_pool_until_resumed(browser: Any, site: ConsoleSite):
    page = logged_in(browser, site, "admin")
    page.goto(f"{site.url}/admin/litetasks/task/queues/")
    page.click('form:has(input[name="name"][value="emails"]) button[value="pause"]')
    page.locator(".messagelist").wait_for()
    assert site.backend.store.pausing.paused_queues() == {"emails"}
    page.wait_for_timeout(1_500)  # workers notice a pause within about a second
    job_id = console_tasks.always_fails.using(queue_name="emails").enqueue("paused").id

    page.wait_for_timeout(2_000)
    left = site.backend.store.get(job_id).state
    page.click('form:has(input[name="name"][value="emails"]) button[value="resume"]')

    assert left is JobState.READY
    site.wait_state(job_id, JobState.FAILED)


def test_a_view_only_user_sees_no_action_and_a_forged_post_is_refused(
    browser: Any, site: ConsoleSite
):
    job_id = console_tasks.always_fails.enqueue("viewed").id
    site.wait_state(job_id, JobState.FAILED)
    page = logged_in(browser, site, "viewer")

    page.goto(f"{site.url}/admin/litetasks/task/tasks/{job_id}/")
    buttons = page.locator('button[name="action"]').count()
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    forged = page.request.post(
        f"{site.url}/admin/litetasks/task/act/",
        form={"action": "retry", "ids": job_id, "confirmed": "yes", "csrfmiddlewaretoken": token},
    )

    assert buttons == 0
    assert forged.status == 403
    assert site.backend.store.get(job_id).state is JobState.FAILED


def test_a_redacted_argument_never_reaches_the_page_source(browser: Any, site: ConsoleSite):
    job_id = console_tasks.always_fails.enqueue("redacted", password="s3cr3t-value").id
    site.wait_state(job_id, JobState.FAILED)
    page = logged_in(browser, site, "admin")

    sources = []
    for path in ["tasks/", f"tasks/{job_id}/", f"tasks/?q={job_id}"]:
        response = page.goto(f"{site.url}/admin/litetasks/task/{path}")
        sources.append(response.text())

    assert all("s3cr3t-value" not in source for source in sources)
    assert "********" in sources[1]


@pytest.mark.parametrize("path", ["", "tasks/", "workers/", "queues/", "periodic/"])
def test_every_page_works_with_javascript_off(browser: Any, site: ConsoleSite, path: str):
    page = logged_in(browser, site, "admin", java_script_enabled=False)

    page.goto(f"{site.url}/admin/litetasks/task/{path}")

    assert page.locator("#lt-live table").count() >= 1
    assert page.locator("h1").inner_text().startswith("Tasks")


def test_the_workers_page_shows_the_threads_of_the_pool_s_worker(browser: Any, site: ConsoleSite):
    page = logged_in(browser, site, "admin")

    page.goto(f"{site.url}/admin/litetasks/task/workers/")

    headings = page.locator("#lt-live thead th").all_text_contents()  # as written, not as shown
    [row] = page.locator("#lt-live tbody tr").all()
    cells = dict(zip(headings, row.locator("td").all_text_contents(), strict=True))
    assert (cells["Threads"], cells["Status"]) == ("2", "alive")  # `litetasks run --threads 2`


def _set_visibility(page: Any, state: str) -> None:
    page.evaluate(
        """state => {
            Object.defineProperty(document, "visibilityState", {value: state, configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        state,
    )


def test_live_pages_refresh_while_visible_and_stop_while_hidden(browser: Any, site: ConsoleSite):
    page = logged_in(browser, site, "admin")
    # The page's timers run on Playwright's clock, paused: seconds pass when the test runs them,
    # at once, and never on their own. Each refresh is a fetch(), counted where it is called.
    page.clock.install(time=CLOCK_START)
    page.clock.pause_at(CLOCK_START + datetime.timedelta(hours=1))
    page.add_init_script(COUNT_FETCHES)
    page.goto(f"{site.url}/admin/litetasks/task/workers/")
    refreshes: list[str] = []
    page.on("request", lambda request: refreshes.append(request.url))

    with page.expect_request(_is_refresh):  # a request the server gets, not only a call
        page.clock.run_for(7_000)
    while_visible = _fetches(page)
    _set_visibility(page, "hidden")
    before_hidden = _fetches(page)
    page.clock.run_for(7_000)
    while_hidden = _fetches(page) - before_hidden
    _set_visibility(page, "visible")
    with page.expect_request(_is_refresh):
        page.clock.run_for(4_500)

    assert while_visible >= 1 and refreshes
    assert while_hidden == 0
    assert _fetches(page) > before_hidden


CLOCK_START = datetime.datetime(2030, 1, 1, 12, 0, tzinfo=datetime.UTC)
# Before the page's own scripts: count the calls of fetch() (live.js refreshes through it).
COUNT_FETCHES = """
    window.ltFetches = 0;
    const fetchNow = window.fetch;
    window.fetch = function (...args) {
        window.ltFetches += 1;
        return fetchNow.apply(this, args);
    };
"""


def _is_refresh(request: Any) -> bool:
    return request.headers.get("x-litetasks-live") == "1"


def _fetches(page: Any) -> int:
    return int(page.evaluate("window.ltFetches"))
