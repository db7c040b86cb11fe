"""litetasks measured side by side with django-tasks-db and huey: ``python -m benchmarks``.

See ``benchmarks/README.md``. Nothing here is imported by litetasks itself.
"""
