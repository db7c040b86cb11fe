"""The Django boundary: what goes in as arguments and out as a return value is JSON, exactly.

A value round-trips as Django's ``normalize_json`` defines it (tuples and other sequences become
lists, mappings dicts, UTF-8 bytes str): the ``TaskResult`` that ``enqueue`` returns, what
``get_result`` loads, what the task receives when ``litetasks.testing.drain`` runs it, and its
return value are all ``normalize_json(value)``, compared with their types (``True`` is not ``1``,
``1`` is not ``1.0``) and dict order. Anything else is refused at ``enqueue`` with ``TypeError`` or
``ValueError``, with nothing written and no ``task_enqueued`` sent.

Decisions, each pinned by an example test below:

- Integers of any size round-trip. The JSON text sits in a TEXT column that SQLite never parses,
  so there is no 64-bit limit; Python's ``json`` writes and reads the digits exactly. Past
  Python's integer-to-text limit (``sys.get_int_max_str_digits()``, 4300 digits) ``json.dumps``
  raises ``ValueError`` at enqueue: refused, nothing written.
- ``nan``, ``inf`` and ``-inf`` round-trip, as ``ImmediateBackend`` and ``normalize_json`` accept
  them. They are stored as Python's JSON extensions ``NaN``, ``Infinity``, ``-Infinity`` (strict
  JSON has no such numbers); ``json.loads`` reads them back and ``nan`` comes back ``nan``.
- Lone surrogates (``"\\ud800"``) round-trip: ``json.dumps`` escapes every non-ASCII character,
  so the stored text is ASCII and never needs encoding as UTF-8.
- Lists and dicts nest at most ``MAX_JSON_DEPTH`` (100) levels in one argument or return value.
  Django's ``normalize_json`` recurses once (Python 3.12) or twice (3.11) per level, so without a
  limit a value near Python's recursion limit could be stored and then fail to load in a worker:
  deeper arguments are refused at enqueue, a deeper return value fails its task.
- Size: litetasks has no limit of its own. A 50 MB argument is stored and run by a real worker.
  The stored text is what counts: ``json.dumps`` escapes non-ASCII, so "é" takes 6 bytes and
  an emoji 12. Past SQLite's limit on a string or row (``SQLITE_MAX_LENGTH``, 1 GB by default;
  lowered to 1 MB here to test it) an argument is refused with a ``StoreError`` ("too big")
  and nothing is written, and a return value fails only its own task.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from litetasks._django.backend import SQLiteBackend
from litetasks._django.compat import (
    InvalidTask,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)
from litetasks._django.values import MAX_JSON_DEPTH, dump_json, normalized_json
from litetasks._store.enqueueing import new_job_id
from litetasks._store.records import JobState, NewJob
from litetasks.exceptions import StoreError
from litetasks.testing import drain
from tests import tasks
from tests.harness import REPO, ProcessGroup, litetasks_argv, run_cli, subprocess_env, wait_for

# The backend fixture (one queue file per test) is shared by a test's examples on purpose: each
# example checks what it added or that nothing was added.
given_backend = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        *settings.default.suppress_health_check,
    ]
)

# -- values ------------------------------------------------------------------------------------

surrogates = st.characters(categories=["Cs"])  # st.characters() leaves them out by default
text = st.text(st.characters() | surrogates, max_size=12)
integers = st.integers() | st.integers(-(2**200), 2**200) | st.sampled_from([2**63, -(2**63) - 1])
floats = st.floats()  # nan and +-inf included
utf8_bytes = text.filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)).map(str.encode)
scalars = st.none() | st.booleans() | integers | floats | text | utf8_bytes
keys = text | utf8_bytes


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(keys, children, max_size=4)
        | st.dictionaries(keys, children, max_size=4).map(collections.OrderedDict)
    )


json_values = st.recursive(scalars, _containers, max_leaves=20)
# Task.enqueue(self, *args, **kwargs): "self" is the one keyword it cannot pass on.
kwarg_names = text.filter(lambda name: name != "self")
arguments = st.tuples(
    st.lists(json_values, max_size=4), st.dictionaries(kwarg_names, json_values, max_size=4)
)

never_utf8 = st.sampled_from([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
bad_keys = (
    st.integers()
    | st.none()
    | st.booleans()
    | st.floats()
    | st.tuples(st.integers())
    | st.frozensets(st.integers(), max_size=2)
    | st.tuples(st.binary(max_size=3), never_utf8).map(b"".join)
)
bad_leaves = (
    st.sets(st.integers(), max_size=3)
    | st.frozensets(st.integers(), max_size=3)
    | st.builds(object)
    | st.tuples(st.binary(max_size=3), never_utf8, st.binary(max_size=3)).map(b"".join)
    | st.datetimes()
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.decimals(allow_nan=False)
    | st.complex_numbers()
    | st.uuids()
    | st.builds(Path, st.text(max_size=5))
    | st.tuples(st.dictionaries(keys, json_values, max_size=2), bad_keys, json_values).map(
        lambda parts: {**parts[0], parts[1]: parts[2]}
    )
)


def _around(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Put ``inner`` somewhere inside JSON-able lists and dicts."""
    side = st.lists(json_values, max_size=2)
    return st.tuples(side, inner, side).map(lambda p: [*p[0], p[1], *p[2]]) | st.tuples(
        st.dictionaries(keys, json_values, max_size=2), keys, inner
    ).map(lambda p: {**p[0], p[1]: p[2]})


not_json = st.recursive(bad_leaves, _around, max_leaves=4)
bad_arguments = st.tuples(
    st.lists(json_values, max_size=2), not_json, st.lists(json_values, max_size=2)
).map(lambda p: ([*p[0], p[1], *p[2]], {})) | st.tuples(
    st.dictionaries(kwarg_names, json_values, max_size=2), kwarg_names, not_json
).map(lambda p: ([], {**p[0], p[1]: p[2]}))


def typed(value: Any) -> Any:
    """``value`` with every type spelled out: a float by its repr (so nan equals nan and -0.0
    is not 0.0), a dict as its items in order."""
    if value is None or type(value) in (bool, int, str):
        return (type(value).__name__, value)
    if type(value) is float:
        return ("float", repr(value))
    if type(value) is list:
        return ("list", [typed(item) for item in value])
    if type(value) is dict:
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    return ("not JSON", type(value).__qualname__)


def nested(depth: int) -> Any:
    """Lists nested ``depth`` levels deep, a dict in every other level."""
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"level": value}
    return value


# -- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def nothing_written(backend: SQLiteBackend) -> Iterator[None]:
    """Assert that the block wrote no row and sent no ``task_enqueued``."""
    before = backend.store.counts()
    sent: list[Any] = []

    def receiver(sender: type, task_result: Any, **kwargs: Any) -> None:
        sent.append(task_result)

    task_enqueued.connect(receiver, weak=False)
    try:
        yield
    finally:
        task_enqueued.disconnect(receiver)
    assert sent == []
    assert backend.store.counts() == before


def run_captured(backend: SQLiteBackend, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Enqueue ``capture(*args, **kwargs)``, check every view of its arguments, run it."""
    expected_args, expected_kwargs = normalize_json(args), normalize_json(kwargs)
    result = tasks.capture.enqueue(*args, **kwargs)
    assert typed(result.args) == typed(expected_args)
    assert typed(result.kwargs) == typed(expected_kwargs)
    loaded = backend.get_result(result.id)
    assert (typed(loaded.args), typed(loaded.kwargs)) == (typed(result.args), typed(result.kwargs))

    tasks.RECEIVED.clear()
    assert drain() == 1
    [(got_args, got_kwargs)] = tasks.RECEIVED
    assert type(got_args) is tuple
    assert typed(list(got_args)) == typed(expected_args)
    assert typed(got_kwargs) == typed(expected_kwargs)

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    returned = {"args": expected_args, "kwargs": expected_kwargs}
    assert typed(result.return_value) == typed(returned)
    return result


def run_returning(value: Any) -> Any:
    """Run a task that returns ``value`` as it is; return its refreshed result."""
    result = tasks.return_next.enqueue()
    tasks.RETURNS[:] = [value]
    assert drain() == 1
    assert tasks.RETURNS == []
    result.refresh()
    return result


# -- generated values --------------------------------------------------------------------------


@given_backend
@given(arguments)
def test_json_arguments_reach_the_task_and_come_back_as_normalize_json_makes_them(
    backend: SQLiteBackend, call: tuple[list[Any], dict[str, Any]]
) -> None:
    args, kwargs = call
    run_captured(backend, args, kwargs)


@given_backend
@given(json_values)
def test_json_return_values_are_stored_as_normalize_json_makes_them(
    backend: SQLiteBackend, value: Any
) -> None:
    result = run_returning(value)
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert typed(result.return_value) == typed(normalize_json(value))
    assert typed(backend.get_result(result.id).return_value) == typed(normalize_json(value))


@given_backend
@given(bad_arguments)
def test_arguments_that_are_not_json_are_refused_at_enqueue_with_nothing_written(
    backend: SQLiteBackend, call: tuple[list[Any], dict[str, Any]]
) -> None:
    args, kwargs = call
    with nothing_written(backend), pytest.raises((TypeError, ValueError)):
        tasks.capture.enqueue(*args, **kwargs)


@given_backend
@given(not_json)
def test_a_return_value_that_is_not_json_fails_the_task(backend: SQLiteBackend, value: Any) -> None:
    result = run_returning(value)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path in ("builtins.TypeError", "builtins.ValueError")
    assert backend.store.get(result.id).return_json is None


# -- the decisions, by example -----------------------------------------------------------------


class _Label(str):
    pass


class _Count(int):
    pass


# Subclasses of the JSON types, which normalize_json passes through as they are (the fast path
# for the built-in types themselves must leave them to it).
subclassed = (
    st.builds(_Label, text)
    | st.builds(_Count, st.integers())
    | st.builds(collections.UserDict, st.dictionaries(keys, scalars, max_size=2))
)


@given(st.recursive(scalars | subclassed, _containers, max_leaves=20))
def test_normalized_json_makes_what_normalize_json_makes(value: Any) -> None:
    assert typed(normalized_json(value, "a value")) == typed(normalize_json(value))


@given(json_values)
def test_dump_json_writes_what_json_dumps_writes(value: Any) -> None:
    normal = normalized_json(value, "a value")
    assert dump_json(normal) == json.dumps(normal)


def test_a_value_at_the_depth_limit_is_normal_and_one_level_more_is_refused() -> None:
    at_limit, beyond = nested(MAX_JSON_DEPTH), nested(MAX_JSON_DEPTH + 1)
    assert typed(normalized_json(at_limit, "a value")) == typed(normalize_json(at_limit))
    with pytest.raises(ValueError, match="nested more than 100 levels deep"):
        normalized_json(beyond, "a value")


def stored(backend: SQLiteBackend, result_id: str) -> tuple[str, str | None]:
    job = backend.store.get(result_id)
    return job.args_json, job.return_json


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(math.nan, "NaN", id="nan"),
        pytest.param(math.inf, "Infinity", id="inf"),
        pytest.param(-math.inf, "-Infinity", id="-inf"),
    ],
)
def test_nan_and_infinities_round_trip_as_pythons_json_extensions(
    backend: SQLiteBackend, value: float, text: str
) -> None:
    result = run_captured(backend, [value], {"x": [value]})
    assert stored(backend, result.id) == (
        f"[{text}]",
        f'{{"args": [{text}], "kwargs": {{"x": [{text}]}}}}',
    )
    assert typed(run_returning(value).return_value) == typed(value)


@pytest.mark.parametrize(
    "value",
    [2**63 - 1, 2**63, 2**64, -(2**63) - 1, -(2**64), 3**300, -(10**4299)],
    ids=["int64-max", "int64-max+1", "2**64", "int64-min-1", "-2**64", "3**300", "4300-digits"],
)
def test_integers_beyond_64_bits_round_trip_exactly(backend: SQLiteBackend, value: int) -> None:
    result = run_captured(backend, [value], {})
    assert stored(backend, result.id)[0] == f"[{value}]"
    assert run_returning(value).return_value == value


def test_an_integer_past_pythons_text_conversion_limit_is_refused_at_enqueue(
    backend: SQLiteBackend,
) -> None:
    digits = sys.get_int_max_str_digits()
    huge = 10**digits  # digits + 1 digits
    with nothing_written(backend), pytest.raises(ValueError, match="integer string conversion"):
        tasks.capture.enqueue(huge)
    result = run_returning(huge)
    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"]


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", "\udc80\ud800", "\x00\u2028\U0010ffff"])
def test_lone_surrogates_and_odd_characters_round_trip_as_ascii_escapes(
    backend: SQLiteBackend, value: str
) -> None:
    result = run_captured(backend, [value], {value: value})
    args_json, return_json = stored(backend, result.id)
    assert args_json.isascii() and return_json is not None and return_json.isascii()
    assert args_json == json.dumps([value])
    assert run_returning(value).return_value == value


def test_values_nested_max_json_depth_levels_round_trip(backend: SQLiteBackend) -> None:
    deepest = nested(MAX_JSON_DEPTH)
    result = tasks.capture.enqueue(deepest, deep=deepest)
    assert (result.args, result.kwargs) == ([deepest], {"deep": deepest})
    loaded = backend.get_result(result.id)
    assert (loaded.args, loaded.kwargs) == ([deepest], {"deep": deepest})
    tasks.RECEIVED.clear()
    assert drain() == 1
    [received] = tasks.RECEIVED
    assert received == ((deepest,), {"deep": deepest})
    # The limit is per value: capture() returns them inside {"args": [...]}, two levels deeper.
    result.refresh()
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"]
    assert run_returning(deepest).return_value == deepest


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 600, 1200, 50_000])
@pytest.mark.parametrize("where", ["args", "kwargs"])
def test_arguments_nested_deeper_than_max_json_depth_are_refused_at_enqueue(
    backend: SQLiteBackend, depth: int, where: str
) -> None:
    value = nested(depth)
    args, kwargs = ([value], {}) if where == "args" else ([], {"deep": value})
    message = f"nested more than {MAX_JSON_DEPTH} levels deep"
    with nothing_written(backend), pytest.raises(ValueError, match=message):
        tasks.capture.enqueue(*args, **kwargs)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000])
def test_a_return_value_nested_deeper_than_max_json_depth_fails_the_task(
    backend: SQLiteBackend, depth: int
) -> None:
    result = run_returning(nested(depth))
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert f"nested more than {MAX_JSON_DEPTH} levels deep" in error.traceback


# The stored args list is one level more than the deepest argument in it.
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 2, 995, 5000])
def test_a_stored_row_nested_too_deep_is_failed_without_stopping_the_worker(
    backend: SQLiteBackend, depth: int
) -> None:
    # Written straight into the file, as by an older litetasks or by hand.
    job_id = new_job_id()
    args_json = "[" * depth + "]" * depth
    backend.store.enqueue(
        [NewJob(job_id=job_id, task_path=tasks.capture.module_path, args_json=args_json)]
    )
    with pytest.raises(InvalidTask, match="cannot be loaded"):
        backend.get_result(job_id)
    after = tasks.add.using(priority=-100).enqueue(20, 22)

    assert drain() == 2

    job = backend.store.get(job_id)
    assert job.state == JobState.FAILED
    [error] = job.errors
    assert error.exception_class_path == "builtins.ValueError"
    after.refresh()
    assert after.return_value == 42


# -- size --------------------------------------------------------------------------------------

MB = 1024 * 1024


def test_non_ascii_text_is_stored_as_escapes_up_to_six_bytes_a_character(
    backend: SQLiteBackend,
) -> None:
    # What a size limit would have to count: the stored text, not the UTF-8 length.
    job = backend.store.get(tasks.capture.enqueue("\u00e9" * 1000, "\U0001f600" * 1000).id)
    assert len(job.args_json) == len('["", ""]') + 6 * 1000 + 12 * 1000


def write_settings(folder: Path, limit: int | None) -> dict[str, str]:
    """Write ``folder/boundary_settings.py`` (SQLite's length limit lowered to ``limit``);
    return an environment whose ``litetasks run`` uses it."""
    lines = ["from tests.settings import *  # noqa: F403"]
    if limit is not None:
        lines += [
            "import apsw",
            f"apsw.connection_hooks.append(lambda c: c.limit(apsw.SQLITE_LIMIT_LENGTH, {limit}))",
        ]
    (folder / "boundary_settings.py").write_text("\n".join(lines) + "\n")
    return subprocess_env(folder, settings="boundary_settings", pythonpath=(REPO, folder))


def run_burst(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cli("run", "--burst", "--processes", "1", "--threads", "2", cwd=folder, env=env)


@pytest.fixture
def row_limit(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``row_limit(n)``: SQLite connections opened from now on in this process refuse rows
    (and strings) over ``n`` bytes."""

    def lower(limit: int) -> None:
        def hook(connection: apsw.Connection) -> None:
            connection.limit(apsw.SQLITE_LIMIT_LENGTH, limit)

        monkeypatch.setattr(apsw, "connection_hooks", [*apsw.connection_hooks, hook])

    return lower


@pytest.mark.slow
def test_special_values_and_a_50_mb_argument_survive_a_real_worker_process(
    backend: SQLiteBackend, tmp_path: Path
) -> None:
    deep = nested(MAX_JSON_DEPTH - 2)  # echo returns it two levels deeper
    values: list[Any] = [math.nan, -math.inf, 2**100, "\ud800x", deep, None]
    small = tasks.echo.enqueue(*values, big=2**64)
    big = "x" * (50 * MB)
    huge = tasks.echo.enqueue(big)

    worker = run_burst(tmp_path, write_settings(tmp_path, None))

    assert worker.returncode == 0, worker.stderr
    small.refresh()
    assert typed(small.return_value) == typed({"args": values, "kwargs": {"big": 2**64}})
    huge.refresh()
    assert huge.return_value == {"args": [big], "kwargs": {}}
    assert backend.store.integrity_check() == "ok"


def test_an_argument_over_sqlites_row_limit_is_refused_with_a_store_error(
    backend: SQLiteBackend, row_limit: Callable[[int], None], queue_path: Path
) -> None:
    row_limit(MB)
    with nothing_written(backend), pytest.raises(StoreError, match="too big"):
        tasks.echo.enqueue("x" * (2 * MB))


@pytest.mark.slow
def test_a_return_value_over_sqlites_row_limit_fails_only_its_task(
    backend: SQLiteBackend, tmp_path: Path
) -> None:
    env = write_settings(tmp_path, MB)
    side = tmp_path / "grew.txt"
    too_big = tasks.grow.enqueue(str(side), 2 * MB)
    others = [tasks.add.enqueue(n, n) for n in range(5)]

    def runs() -> int:
        return len(side.read_text().splitlines()) if side.exists() else 0

    def finished_or_run_twice() -> bool:
        finished = all(backend.get_result(r.id).is_finished for r in [too_big, *others])
        return finished or runs() > 1

    with ProcessGroup().cleanup() as group:
        worker = group.start(litetasks_argv("run", "--processes", "1"), env=env, cwd=tmp_path)
        wait_for(finished_or_run_twice, timeout_s=20, what="the tasks to finish")
        worker.send(signal.SIGTERM)
        worker.wait(timeout_s=20)

    too_big.refresh()
    assert (too_big.status, runs()) == (TaskResultStatus.FAILED, 1), worker.output
    for other in others:
        other.refresh()
        assert other.status == TaskResultStatus.SUCCESSFUL
    assert backend.store.integrity_check() == "ok"


@pytest.mark.parametrize("spare", [0, 1000, 60_000])
def test_arguments_that_leave_no_room_in_the_row_for_an_outcome_are_refused(
    backend: SQLiteBackend, row_limit: Callable[[int], None], spare: int
) -> None:
    # They would fit, but the worker could not add worker ids or an error to the row.
    row_limit(MB)
    with nothing_written(backend), pytest.raises(StoreError, match="too big"):
        tasks.echo.enqueue("x" * (MB - spare - 100))


@pytest.mark.slow
def test_an_error_too_long_for_the_row_is_recorded_cut_short(
    backend: SQLiteBackend, tmp_path: Path
) -> None:
    env = write_settings(tmp_path, MB)
    verbose = tasks.fail_verbosely.enqueue(2 * MB)
    others = [tasks.add.enqueue(n, n) for n in range(5)]

    with ProcessGroup().cleanup() as group:
        worker = group.start(litetasks_argv("run", "--processes", "1"), env=env, cwd=tmp_path)
        wait_for(
            lambda: all(backend.get_result(r.id).is_finished for r in [verbose, *others]),
            timeout_s=20,
            what="the tasks to finish",
        )
        worker.send(signal.SIGTERM)
        assert worker.wait(timeout_s=20) == 0, worker.output

    verbose.refresh()
    [error] = verbose.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.traceback.startswith("Traceback (most recent call last):")
    assert "\nValueError: mmm" in error.traceback
    assert "characters cut: too long for the queue file" in error.traceback
    assert error.traceback.endswith("mmm\n")
    assert len(json.dumps(error.traceback)) < MB
    assert [other.refresh() or other.return_value for other in others] == [0, 2, 4, 6, 8]


@pytest.mark.slow
def test_a_stored_row_too_big_to_claim_is_failed_and_the_queue_goes_on(
    backend: SQLiteBackend, tmp_path: Path, row_limit: Callable[[int], None]
) -> None:
    env = write_settings(tmp_path, MB)
    row_limit(MB)
    # Written straight into the file (enqueue() would refuse it): it fits, but not with the
    # worker id that claiming it adds.
    for spare in range(0, 400, 10):  # as big as the insert allows
        job_id = new_job_id()
        args_json = json.dumps(["x" * (MB - 100 - spare)])
        with contextlib.suppress(StoreError):
            backend.store.enqueue(
                [NewJob(job_id=job_id, task_path=tasks.echo.module_path, args_json=args_json)]
            )
            break
    others = [tasks.add.enqueue(n, n) for n in range(5)]

    with ProcessGroup().cleanup() as group:
        worker = group.start(litetasks_argv("run", "--processes", "1"), env=env, cwd=tmp_path)
        try:
            wait_for(
                lambda: all(backend.get_result(r.id).is_finished for r in others),
                timeout_s=3,  # a second when healthy
                what="the other tasks to run",
            )
        finally:
            worker.send(signal.SIGTERM)
            stopped = wait_for(
                lambda: worker.proc.poll() is not None, timeout_s=15, what="SIGTERM to stop it"
            )
    assert stopped and worker.proc.returncode == 0, worker.output
    job = backend.store.get(job_id)
    assert (job.state, job.attempts, job.worker_ids) == (JobState.FAILED, 0, ())
    [error] = job.errors
    assert error.exception_class_path == "litetasks.exceptions.JobTooBig"
    assert "never ran" in error.traceback and "arguments were removed" in error.traceback
    assert (job.args_json, job.kwargs_json) == ("[]", "{}")  # they made room for the error
    assert [backend.get_result(r.id).return_value for r in others] == [0, 2, 4, 6, 8]
    assert "Traceback" not in worker.output, worker.output
    assert f"Task id={job_id} path=tests.tasks.echo is too big to claim" in worker.output
    assert backend.store.integrity_check() == "ok"
