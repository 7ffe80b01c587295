"""SigningCompleted, handled a group at a time: the completions that reach one worker process
together release their leases and dispatch the next batches in one turn of the keyring lock.

Group commit, as a database flushes its log: the first actor thread to arrive with a
completion takes every completion waiting at that moment (its own among them) to the
database in one statement; the threads that arrive while it is there wait, and one of them
takes the next group. Nothing waits on purpose: a group is whatever arrived while the
previous one was in the database, one completion when the workers are idle, several when the
keyring lock is busy, which is when a turn saved counts (docs/benchmarks.md, issue 17).

The seed's protocol is unchanged: each batch still has its own SigningCompleted, and it is
handling that message which releases the batch's key. Each thread returns only once its own
completion has committed, so Dramatiq acknowledges the message only then, and it raises if
its group failed, so the message is retried (a release is idempotent).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from signing.runs.dispatch import advance_run


class GroupFailed(Exception):
    """The group this completion was handled in failed; the cause says why."""


@dataclass(slots=True)
class _Completion:
    run_id: int
    lease_id: int
    done: bool = False
    error: BaseException | None = None
    # How many completions went to the database with this one (itself included).
    group_size: int = field(default=0)


class CompletionGroups:
    """Hands the completions of concurrent callers to `handle(run_id, lease_ids)` in groups."""

    def __init__(self, handle: Callable[[int, Sequence[int]], None]) -> None:
        self._handle = handle
        self._turn = threading.Condition()
        self._waiting: list[_Completion] = []
        self._busy = False

    def complete(self, *, run_id: int, lease_id: int) -> int:
        """Handle one completion, in whichever group it falls into; return that group's size
        once it has committed. Raises GroupFailed if the group's statement failed."""
        mine = _Completion(run_id, lease_id)
        with self._turn:
            self._waiting.append(mine)
            while not mine.done:
                if self._busy:
                    self._turn.wait()
                    continue
                group, self._waiting = self._waiting, []
                self._busy = True
                try:
                    self._turn.release()
                    try:
                        self._run(group)
                    finally:
                        self._turn.acquire()
                finally:
                    self._busy = False
                    self._turn.notify_all()
        if mine.error is not None:
            raise GroupFailed(
                f"the completion of lease {lease_id} went with {mine.group_size - 1} other(s) "
                f"in a statement that failed: {type(mine.error).__name__}"
            ) from mine.error
        return mine.group_size

    def _run(self, group: list[_Completion]) -> None:
        """One statement per run in the group (a group nearly always holds one run). Every
        member ends done, with its statement's error if any, even when the thread running
        the group is interrupted (a Dramatiq time limit): its waiters must not wait on."""
        by_run: dict[int, list[_Completion]] = {}
        for completion in group:
            by_run.setdefault(completion.run_id, []).append(completion)
        try:
            for run_id, completions in by_run.items():
                try:
                    self._handle(run_id, [completion.lease_id for completion in completions])
                except Exception as failure:  # each member's message is retried
                    _finish(completions, failure)
                else:
                    _finish(completions, None)
        finally:
            _finish([c for c in group if not c.done], GroupFailed("the group was interrupted"))


def _finish(completions: list[_Completion], error: BaseException | None) -> None:
    for completion in completions:
        completion.error = error
        completion.group_size = len(completions)
        completion.done = True


def _release_and_dispatch(run_id: int, lease_ids: Sequence[int]) -> None:
    advance_run(run_id, release_lease_ids=lease_ids)


# One per worker process: its actor threads share it.
completions = CompletionGroups(_release_and_dispatch)


def complete_batch(*, run_id: int, lease_id: int) -> int:
    """Handle a SigningCompleted: release its lease and dispatch the next batches, in a
    group with the completions other threads of this process are handling; the group's size."""
    return completions.complete(run_id=run_id, lease_id=lease_id)
