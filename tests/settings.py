"""Django settings for the litetasks test suite."""

import os
import tempfile
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "litetasks-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "litetasks",
    "tests",
]
# The admin, for the console's tests (tests/django/test_console*.py, tests/browser/).
ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
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
# The console's tests create users and log them in: a fast hasher, as Django advises for test
# suites (PBKDF2's 1.5 million rounds took 0.3 s per password set or checked).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
