"""The Django app whose tasks every Django-side system under test runs."""
