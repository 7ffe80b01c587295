"""Helpers the test modules share (issue 16, point 6): one way to run `manage.py` as a user,
and one way to deliver the messages a test recorded as a worker would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import dramatiq

ROOT = Path(__file__).resolve().parent.parent
MANAGE = str(ROOT / "manage.py")


def manage(
    env: Mapping[str, str] | None,
    *args: str,
    inherit: bool = True,
    network: bool = True,
    stdin: int | None = subprocess.DEVNULL,
    timeout: float = 240,
) -> subprocess.CompletedProcess:
    """Run `manage.py ARGS` in a process of its own, as a user runs it, and return what it
    printed and its exit code (never raising on a failure: tests judge it).

    `env` is laid over this process's environment (the tests' database, broker and KEK), or
    is the whole environment with `inherit=False`. Without `network`, the command runs in a
    network namespace of its own, where no server answers. Output is 200 columns wide, so
    rich's tables and bars are not wrapped.
    """
    return subprocess.run(
        [*([] if network else ["unshare", "--net"]), sys.executable, MANAGE, *args],
        env={"COLUMNS": "200", **(os.environ if inherit else {}), **(env or {})},
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def deliver(message: dramatiq.Message) -> None:
    """Run the actor a message names on it, in this thread, exactly as a worker does on
    (re)delivery: no broker, no retries, what it raises reaches the test."""
    import signing.runs.actors  # noqa: F401  (declares the actors on the broker)

    actor = dramatiq.get_broker().get_actor(message.actor_name)
    actor.fn(*message.args, **message.kwargs)


class Recorded(Protocol):
    """What `deliver_all` reads: the messages enqueued so far (tests/conftest.py's `sent`)."""

    messages: Iterable[dramatiq.Message]


def deliver_all(sent: Recorded, on_commit: Callable[..., AbstractContextManager[object]]) -> None:
    """Deliver every message recorded, and those they send, until none is left.

    `on_commit` is pytest-django's `django_capture_on_commit_callbacks`: each delivery runs
    the callbacks it registered (the messages it sends after commit) as a commit would, in a
    test whose transaction never commits.
    """
    delivered: set[str] = set()
    while pending := [m for m in sent.messages if m.message_id not in delivered]:
        for message in pending:
            delivered.add(message.message_id)
            with on_commit(execute=True):
                deliver(message)
