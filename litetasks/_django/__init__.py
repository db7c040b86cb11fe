"""The Django integration: the task backend, its values and settings checks."""
