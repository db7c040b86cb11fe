"""Take the README's screenshots of the console, light and dark, into docs/console/.

    python -m tests.browser.screenshots

Starts the browser tests' site (runserver and a pool, tests/browser/site.py) in a temporary
folder, runs a few tasks, and photographs each page at 1000 px wide.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("LITETASKS_TEST_DIR", tempfile.mkdtemp(prefix="litetasks-shots-"))

import django

django.setup()

from litetasks._store.records import JobState  # noqa: E402
from tests.browser import console_tasks  # noqa: E402
from tests.browser.site import CHROMIUM, PASSWORD, ConsoleSite, running_site  # noqa: E402

OUT = Path(__file__).resolve().parents[2] / "docs" / "console"
PAGES = {
    "overview": "",
    "tasks": "tasks/",
    "task": "tasks/{failed}/",
    "workers": "workers/",
    "queues": "queues/",
    "periodic": "periodic/",
}


def fill(site: ConsoleSite, flag: Path) -> str:
    """Run some tasks: successes, failures, one waiting; return a failed task's id."""
    flag.touch()
    done = [console_tasks.fails_until.enqueue(str(flag)).id for _ in range(12)]
    failed = [
        console_tasks.always_fails.enqueue(f"report-{i}", password="hunter2", user="ada").id
        for i in range(3)
    ]
    for job_id in done:
        site.wait_state(job_id, JobState.SUCCESSFUL)
    for job_id in failed:
        site.wait_state(job_id, JobState.FAILED)
    console_tasks.fails_until.using(run_after=None, queue_name="emails").enqueue(str(flag))
    return failed[-1]


def shoot(site: ConsoleSite, failed: str) -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": 1000, "height": 700}, color_scheme=scheme
            )
            page = context.new_page()
            page.goto(f"{site.url}/admin/login/?next=/admin/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{site.url}/admin/")
            # The admin's sidebar folded away (it remembers that in localStorage).
            page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
            for name, path in PAGES.items():
                page.goto(f"{site.url}/admin/litetasks/task/{path.format(failed=failed)}")
                page.screenshot(path=str(OUT / f"{name}-{scheme}.png"), full_page=False)
            context.close()
        browser.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="litetasks-shots-") as folder:
        root = Path(folder)
        with running_site(root) as site:
            shoot(site, fill(site, root / "flag"))
    print(f"Screenshots in {OUT}")


if __name__ == "__main__":
    main()
