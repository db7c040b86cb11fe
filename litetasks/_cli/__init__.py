"""The command line: ``litetasks`` and ``python manage.py litetasks``."""
