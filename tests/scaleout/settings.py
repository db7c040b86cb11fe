"""Settings for the scale-out tests' subprocesses: litetasks and the real targets side by side.

Environment (set by tests/scaleout/conftest.py for each run):
  LITETASKS_SCALEOUT_QUEUE     the litetasks queue file
  LITETASKS_SCALEOUT_DEFAULT   the backend of alias "default": litetasks (the default),
                               immediate, dummy, db or redis (the portability test)
  LITETASKS_SCALEOUT_PG_DB     a PostgreSQL database on 127.0.0.1:5432 (alias "db")
  LITETASKS_SCALEOUT_REDIS     a Redis key prefix on 127.0.0.1:6379 (alias "redis")
  LITETASKS_SCALEOUT_IDS       "target": django-tasks-db picks its own ids (no forward_id)
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "litetasks-scaleout-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["litetasks", "tests"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TARGET_QUEUES = ["default", "emails"]  # no "reports": the targets refuse those tasks

BACKENDS = {
    "litetasks": {
        "BACKEND": "litetasks.backend.SQLiteBackend",
        "QUEUES": ["default", "emails", "reports"],
        "OPTIONS": {"path": os.environ.get("LITETASKS_SCALEOUT_QUEUE", "tasks.sqlite3")},
    },
    "immediate": {
        "BACKEND": "django.tasks.backends.immediate.ImmediateBackend",
        "QUEUES": TARGET_QUEUES,
    },
    "dummy": {"BACKEND": "django.tasks.backends.dummy.DummyBackend", "QUEUES": TARGET_QUEUES},
}
if os.environ.get("LITETASKS_SCALEOUT_PG_DB"):
    INSTALLED_APPS.append("django_tasks_db")
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": 5432,
        "USER": "postgres",
        "NAME": os.environ["LITETASKS_SCALEOUT_PG_DB"],
    }
    BACKENDS["db"] = {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": TARGET_QUEUES,
        "OPTIONS": {}
        if os.environ.get("LITETASKS_SCALEOUT_IDS") == "target"
        else {"id_function": "litetasks.backend.forward_id"},
    }
if os.environ.get("LITETASKS_SCALEOUT_REDIS"):
    INSTALLED_APPS.append("django_tasks_redis")
    BACKENDS["redis"] = {
        "BACKEND": "django_tasks_redis.backends.RedisTaskBackend",
        "QUEUES": TARGET_QUEUES,
        "OPTIONS": {
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "REDIS_KEY_PREFIX": os.environ["LITETASKS_SCALEOUT_REDIS"],
            "REDIS_BLOCK_TIMEOUT": 100,
        },
    }

_default = os.environ.get("LITETASKS_SCALEOUT_DEFAULT", "litetasks")
TASKS = {"default": BACKENDS[_default]}
TASKS.update({alias: spec for alias, spec in BACKENDS.items() if alias in ("db", "redis")})
if _default != "litetasks":
    TASKS.pop(_default, None)
    TASKS["default"] = BACKENDS[_default]
