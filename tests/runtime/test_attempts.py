"""One attempt sequence for executors and the event loop: watch, run, turn interrupts into
outcomes, stop watching. Each case runs both ways."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from litetasks._runtime.attempts import Attempts, Done
from litetasks._store.records import ErrorRecord, JobRecord, JobState, Outcome
from litetasks.exceptions import TaskCancelled, TaskInterrupted, TaskTimeout


def _job() -> JobRecord:
    return JobRecord(
        job_id="j1",
        task_path="tests.tasks.noop",
        queue_name="default",
        priority=0,
        args_json="[]",
        kwargs_json="{}",
        state=JobState.RUNNING,
        enqueued_at_us=1,
        run_after_us=None,
        started_at_us=2,
        last_attempted_at_us=2,
        finished_at_us=None,
        worker_ids=("w1",),
        errors=(),
        return_json=None,
        attempts=1,
        max_attempts=1,
        owner="w1",
    )


def _outcome(job: JobRecord, note: str) -> Outcome:
    return Outcome(
        job_id=job.job_id,
        worker_id="w1",
        attempt=1,
        started_at_us=2,
        finished_at_us=3,
        error=ErrorRecord(exception_class_path=note, traceback=""),
    )


def _nothing(counted: bool) -> None:
    pass


class FakeRunner:
    """Runs ``body`` as the task; says what it was asked."""

    def __init__(self, body: Callable[[], None]) -> None:
        self.body = body
        self.calls: list[str] = []

    def timeout_of(self, job: JobRecord) -> float | None:
        return 1.5

    def run(self, job: JobRecord) -> tuple[Outcome, Any]:
        self.calls.append("run")
        self.body()
        return _outcome(job, "ran"), _nothing

    async def arun(self, job: JobRecord) -> tuple[Outcome, Any]:
        self.calls.append("arun")
        self.body()
        return _outcome(job, "ran"), _nothing

    def interrupted(self, job: JobRecord, exc: BaseException) -> tuple[Outcome, Any]:
        self.calls.append(f"interrupted:{exc!r}")
        return _outcome(job, "interrupted"), _nothing


class FakeInterrupter:
    """Watches attempts as ``Interrupter`` does, without its thread."""

    def __init__(self, *, cancelled: bool = False) -> None:
        self.cancelled = cancelled
        self.watching: dict[str, float | None] = {}
        self.taken: list[BaseException] = []

    def begin(
        self, job: JobRecord, timeout_s: float | None, *, cancel: Any = None
    ) -> TaskCancelled | None:
        if self.cancelled:
            return TaskCancelled("Cancelled before it started.")
        self.watching[job.job_id] = timeout_s
        return None

    def end(self, job_id: str) -> None:
        self.watching.pop(job_id, None)

    def take(self, job_id: str, raised: BaseException) -> BaseException:
        self.taken.append(raised)
        return TaskTimeout("took too long")


def _attempt(way: str, runner: FakeRunner, interrupter: FakeInterrupter) -> Done:
    attempts = Attempts(worker_id="w1", runner=runner, interrupter=interrupter)  # type: ignore[arg-type]
    if way == "thread":
        return attempts.run(_job())
    return asyncio.run(attempts.arun(_job(), cancel=lambda: None, on_recorded=lambda: None))


WAYS = pytest.mark.parametrize("way", ["thread", "event loop"])


@WAYS
def test_an_attempt_is_watched_with_its_timeout_while_it_runs(way: str) -> None:
    interrupter = FakeInterrupter()
    seen: list[dict[str, float | None]] = []
    runner = FakeRunner(lambda: seen.append(dict(interrupter.watching)))
    done = _attempt(way, runner, interrupter)
    assert seen == [{"j1": 1.5}]
    assert interrupter.watching == {}
    assert done.outcome.error is not None
    assert done.outcome.error.exception_class_path == "ran"
    assert (done.on_recorded is not None) == (way == "event loop")


@WAYS
def test_an_attempt_cancelled_before_it_starts_is_recorded_not_run(way: str) -> None:
    runner = FakeRunner(lambda: None)
    done = _attempt(way, runner, FakeInterrupter(cancelled=True))
    assert runner.calls == ["interrupted:TaskCancelled('Cancelled before it started.')"]
    assert done.outcome.error is not None
    assert done.outcome.error.exception_class_path == "interrupted"


@WAYS
def test_an_interrupt_that_lands_after_the_task_returned_is_its_outcome(way: str) -> None:
    def late() -> None:
        raise TaskInterrupted  # as if raised in the thread just after the task returned

    interrupter = FakeInterrupter()
    runner = FakeRunner(late)
    done = _attempt(way, runner, interrupter)
    assert [type(exc) for exc in interrupter.taken] == [TaskInterrupted]
    assert runner.calls[-1] == "interrupted:TaskTimeout('took too long')"
    assert done.outcome.error is not None
    assert done.outcome.error.exception_class_path == "interrupted"
    assert interrupter.watching == {}


@WAYS
def test_keyboard_interrupt_around_the_task_is_recorded_then_raised_again(way: str) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    interrupter = FakeInterrupter()
    done = _attempt(way, FakeRunner(interrupt), interrupter)
    assert done.outcome.error is not None
    assert done.outcome.error.exception_class_path == "builtins.KeyboardInterrupt"
    assert interrupter.watching == {}
    with pytest.raises(KeyboardInterrupt):
        done.finish(True)
