"""signing.runs.completions.CompletionGroups: completions that arrive while a group is in the
database go together in the next one; each caller returns once its own has been handled,
and raises if its group failed."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from signing.runs.completions import CompletionGroups, GroupFailed

DEADLINE = 30.0


class GatedHandler:
    """A handler whose first call blocks until released, recording every group it got."""

    def __init__(self, *, fail_runs: Sequence[int] = ()) -> None:
        self.groups: list[tuple[int, list[int]]] = []
        self.first_call_entered = threading.Event()
        self.release_first_call = threading.Event()
        self.fail_runs = set(fail_runs)

    def __call__(self, run_id: int, lease_ids: Sequence[int]) -> None:
        self.groups.append((run_id, list(lease_ids)))
        if len(self.groups) == 1:
            self.first_call_entered.set()
            assert self.release_first_call.wait(DEADLINE)
        if run_id in self.fail_runs:
            raise RuntimeError(f"run {run_id} failed")


def wait_until(condition, *, what: str) -> None:
    """Poll `condition` until it holds; fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.002)


def test_alone_a_completion_is_its_own_group():
    handled: list[tuple[int, list[int]]] = []
    groups = CompletionGroups(lambda run_id, lease_ids: handled.append((run_id, list(lease_ids))))
    assert groups.complete(run_id=1, lease_id=7) == 1
    assert handled == [(1, [7])]


def test_completions_arriving_during_a_group_go_together_in_the_next():
    handler = GatedHandler()
    groups = CompletionGroups(handler)
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(groups.complete, run_id=1, lease_id=10)
        assert handler.first_call_entered.wait(DEADLINE)
        later = [pool.submit(groups.complete, run_id=1, lease_id=i) for i in (11, 12, 13)]
        wait_until(lambda: len(groups._waiting) == 3, what="three completions queued")
        assert not any(future.done() for future in later)  # none returns before its group ran
        handler.release_first_call.set()
        assert first.result(DEADLINE) == 1
        assert [future.result(DEADLINE) for future in later] == [3, 3, 3]
    assert handler.groups[0] == (1, [10])
    assert handler.groups[1][0] == 1
    assert sorted(handler.groups[1][1]) == [11, 12, 13]
    assert len(handler.groups) == 2


def test_a_failed_group_fails_each_of_its_members_and_no_other():
    handler = GatedHandler(fail_runs=[2])
    groups = CompletionGroups(handler)
    with ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(groups.complete, run_id=1, lease_id=10)
        assert handler.first_call_entered.wait(DEADLINE)
        failing = [pool.submit(groups.complete, run_id=2, lease_id=i) for i in (20, 21)]
        fine = pool.submit(groups.complete, run_id=3, lease_id=30)
        wait_until(lambda: len(groups._waiting) == 3, what="three completions queued")
        handler.release_first_call.set()
        assert first.result(DEADLINE) == 1
        for future in failing:
            with pytest.raises(GroupFailed) as failed:
                future.result(DEADLINE)
            assert isinstance(failed.value.__cause__, RuntimeError)
        assert fine.result(DEADLINE) == 1  # another run's completions are another statement
    # The next completion is handled as usual.
    assert groups.complete(run_id=1, lease_id=40) == 1


def test_an_interrupted_group_leaves_no_member_waiting():
    class Interrupt(BaseException):
        """What a Dramatiq time limit raises in a thread: not an Exception."""

    handler = GatedHandler()
    groups = CompletionGroups(handler)

    def interrupting(run_id: int, lease_ids: Sequence[int]) -> None:
        handler(run_id, lease_ids)
        if len(handler.groups) == 2:
            raise Interrupt()

    groups._handle = interrupting
    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(groups.complete, run_id=1, lease_id=10)
        assert handler.first_call_entered.wait(DEADLINE)
        later = [pool.submit(groups.complete, run_id=1, lease_id=i) for i in (11, 12)]
        wait_until(lambda: len(groups._waiting) == 2, what="two completions queued")
        handler.release_first_call.set()
        first.result(DEADLINE)
        outcomes = []
        for future in later:
            try:
                future.result(DEADLINE)
                outcomes.append("returned")
            except Interrupt:
                outcomes.append("interrupted")
            except GroupFailed:
                outcomes.append("failed")
        assert sorted(outcomes) == ["failed", "interrupted"]
