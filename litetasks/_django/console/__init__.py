"""The operator's console in the Django admin (``litetasks/admin.py`` registers it)."""
