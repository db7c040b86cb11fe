"""A producer process for tests: ``python -m tests.produce ACKS STOP SIDE NAME``.

Enqueues ``tests.tasks.append_line(SIDE, label)`` until the file STOP exists, with a short pause
between tasks, and appends ``<id> <label>`` to ACKS (line-buffered) for every ``enqueue()`` that
returned, so a test can tell which tasks were acknowledged. A refused enqueue (``StoreError``)
is counted; its first message is printed. Settings come from ``DJANGO_SETTINGS_MODULE``.
"""

from __future__ import annotations

import os
import sys
import time


def main(acks: str, stop: str, side: str, name: str) -> int:
    import django

    django.setup()
    from litetasks.exceptions import StoreError
    from tests import tasks

    made = refused = 0
    with open(acks, "a", buffering=1) as out:
        while not os.path.exists(stop):
            label = f"{name}-{made + refused}"
            try:
                result = tasks.append_line.enqueue(side, label)
            except StoreError as exc:
                if not refused:
                    print(f"{name} refused: {exc}", flush=True)
                refused += 1
                time.sleep(0.005)
                continue
            out.write(f"{result.id} {label}\n")
            made += 1
            time.sleep(0.0005)
    print(f"{name} acknowledged={made} refused={refused}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
