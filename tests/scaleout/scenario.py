"""The scale-out tests' steps that run in a subprocess under tests/scaleout/settings.py:
``python -m tests.scaleout.scenario COMMAND FOLDER [N]``; each prints one JSON document."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import Any

import django

django.setup()

from django.core import checks  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from litetasks import enqueue_on_commit  # noqa: E402
from litetasks._django.compat import task_backends  # noqa: E402
from litetasks.testing import drain  # noqa: E402
from tests.scaleout import portable_tasks as t  # noqa: E402

DEFER_S = 4


def mix(folder: str, n: int) -> dict[str, Any]:
    """Enqueue on litetasks: one task waiting for a retry, deferred ones, several priorities
    and queues, and one the targets refuse (queue "reports"). Returns old id -> run line, and
    when the last of them is due (a Unix time)."""
    expected: dict[str, str] = {}
    waiting = t.charge.enqueue(folder, 1)
    assert drain() == 1  # its first attempt fails: READY again, due in 2 s
    expected[waiting.id] = "charge [1]"
    later = timezone.now() + timedelta(seconds=DEFER_S)
    deferred = t.send_welcome.using(run_after=later).enqueue(folder, 0, "de")
    expected[deferred.id] = 'send_welcome [0, "de"]'
    for i in range(1, n + 1):
        result = t.send_welcome.using(priority=i % 7 - 3).enqueue(folder, i)
        expected[result.id] = f'send_welcome [{i}, "en"]'
    for account in range(3):
        result = t.sync_account.enqueue(folder, account)
        expected[result.id] = f"sync_account [{account}]"
    report = t.build_report.enqueue(folder, "2026-11", pages=3)
    expected[report.id] = 'build_report ["2026-11", 3]'
    refused = t.build_report.using(queue_name="reports").enqueue(folder, "2026-12")
    # The deferred task is due last (the retry is due 2 s after its first attempt).
    return {"expected": expected, "refused": refused.id, "due_at": later.timestamp()}


def bulk(folder: str, n: int) -> dict[str, Any]:
    results = [t.send_welcome.enqueue(folder, i) for i in range(n)]
    return {"expected": {r.id: f'send_welcome [{i}, "en"]' for i, r in enumerate(results)}}


def results(folder: str, ids_file: str) -> dict[str, Any]:
    """``get_result`` of each id (on the default alias): status and return value."""
    with open(ids_file) as f:
        ids = json.load(f)
    found = {}
    for result_id in ids:
        result = task_backends["default"].get_result(result_id)
        value = result.return_value if result.status == "SUCCESSFUL" else None
        found[result_id] = [str(result.status), value, result.backend]
    return found


def portable(folder: str, n: int) -> dict[str, Any]:
    """Import the tasks module on this backend, enqueue two tasks; report the checks."""
    warnings = [m.id for m in checks.run_checks() if m.id and m.id.startswith("litetasks.")]
    welcome = t.send_welcome.enqueue(folder, n)
    sync = t.sync_account.enqueue(folder, n)
    fanned = t.fan_out.enqueue(folder, [n + 1, n + 2])  # enqueue_many inside, on this backend
    with transaction.atomic():
        enqueue_on_commit(t.send_welcome, folder, n + 3, lang="fr")
    return {
        "backend": type(task_backends["default"]).__name__,
        "task_class": type(t.sync_account).__name__,
        "checks": sorted(warnings),
        "ids": [welcome.id, sync.id, fanned.id],
        "statuses": [str(r.status) for r in (welcome, sync, fanned)],
    }


COMMANDS = {"mix": mix, "bulk": bulk, "results": results, "portable": portable}

if __name__ == "__main__":
    command, folder, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    print(json.dumps(COMMANDS[command](folder, int(arg) if arg.isdigit() else arg)))
