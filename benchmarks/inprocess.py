"""Django set up in this process, on the test settings, for the benchmarks that measure
litetasks in-process (``benchmarks.metrics``, ``benchmarks.bigfile``)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

__all__ = ["setup_django_in_tempdir"]


def setup_django_in_tempdir(prefix: str) -> Path:
    """Set Django up on ``tests.settings`` with its queue files in a new folder; return it.

    The folder is kept, so that the queue file can be looked at after the run.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ["LITETASKS_TEST_DIR"] = str(folder)
    import django

    django.setup()
    return folder
