"""Django settings for the litetasks test suite."""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "litetasks-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["litetasks", "tests"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
# Each test run (and each subprocess it starts) shares one queue file unless a test overrides it.
QUEUE_DIR = Path(os.environ.get("LITETASKS_TEST_DIR") or tempfile.mkdtemp(prefix="litetasks-"))
TASKS = {
    "default": {
        "BACKEND": "litetasks.backend.SQLiteBackend",
        "QUEUES": ["default", "emails", "reports"],
        "OPTIONS": {"path": str(QUEUE_DIR / "tasks.sqlite3")},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
