"""Secrets hidden before anyone is shown them (``_store/redaction.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from litetasks._store.redaction import (
    DEFAULT_REDACT,
    REDACTED,
    hidden_values,
    redact,
    redaction_keys,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"password": "x"}, {"password": REDACTED}),
        ({"DB_Password": "x", "user": "ada"}, {"DB_Password": REDACTED, "user": "ada"}),
        ([{"auth": {"api_key": "k"}}, "plain"], [{"auth": {"api_key": REDACTED}}, "plain"]),
        ({"token": {"nested": "dict"}}, {"token": REDACTED}),
        ({"tokens": [1, 2]}, {"tokens": REDACTED}),  # part of a key counts
        ("password", "password"),  # a value, not a key
        (None, None),
    ],
)
def test_values_under_a_secret_key_are_hidden_at_any_depth(value: Any, expected: Any):
    assert redact(value, DEFAULT_REDACT) == expected


def test_configured_keys_replace_the_defaults_and_ignore_what_is_not_text():
    keys = redaction_keys(["Card", 3, ""])

    assert keys == ("card",)
    assert redact({"credit_card": 1, "password": 2}, keys) == {
        "credit_card": REDACTED,
        "password": 2,
    }
    assert redaction_keys(None) == DEFAULT_REDACT


def test_hidden_values_are_the_values_redact_replaces():
    value = {"user": "ada", "auth": [{"token": "t-1"}, {"password": {"x": 1}}]}

    assert hidden_values(value, DEFAULT_REDACT) == ["t-1", {"x": 1}]
