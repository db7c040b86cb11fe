"""Without PostgreSQL or Redis the scale-out tests skip naming the service, and fail in CI."""

from __future__ import annotations

import pytest

from tests.scaleout import conftest


@pytest.fixture
def nothing_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 9 (discard) on loopback: nothing listens there on these machines.
    monkeypatch.setattr(conftest, "PG", ("127.0.0.1", 9))
    monkeypatch.setattr(conftest, "REDIS", ("127.0.0.1", 9))


@pytest.mark.parametrize(("target", "name"), [("db", "PostgreSQL"), ("redis", "Redis")])
def test_a_missing_service_skips_naming_it(nothing_listens, monkeypatch, target, name):
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match=f"{name} is not reachable at 127.0.0.1:9"):
        conftest.require(target)


def test_a_missing_service_fails_in_ci(nothing_listens, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"PostgreSQL .* \(required in CI\)"):
        conftest.require("db")
