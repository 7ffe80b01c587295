"""A run's finish is announced to whoever watches it (`manage.py sign`): the watcher wakes as
the finish commits, not at its next look. On both backends."""

from __future__ import annotations

import time

import pytest

from signing.backends import backend as seam
from signing.runs.dispatch import cancel_run, finish_run, plan_run
from tests.conftest import seed
from tests.integration.test_keyring_lock import Background

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("backend")]

# Far longer than any announcement takes: a wait that lasts this long heard nothing.
LONG = 30.0


def waited(*, timeout: float) -> float:
    started = time.monotonic()
    seam().wait_for_finished_run(timeout=timeout)
    return time.monotonic() - started


def test_with_nothing_finishing_the_wait_lasts_its_timeout():
    seam().listen_for_finished_runs()
    assert waited(timeout=0.2) >= 0.2


def test_a_run_finished_by_another_thread_ends_the_wait_at_once():
    seed(records=0, keys=1)
    run = plan_run(batch_size=10)  # nothing to sign: it can finish at once
    seam().listen_for_finished_runs()
    finishing = Background(lambda: finish_run(run.pk))
    assert waited(timeout=LONG) < LONG
    assert finishing.result() is True


def test_a_finish_before_the_wait_is_heard_by_it_and_only_once():
    seed(records=10, keys=1)
    run = plan_run(batch_size=10)
    seam().listen_for_finished_runs()
    assert Background(lambda: cancel_run(run.pk)).result() is True
    assert waited(timeout=LONG) < LONG  # it came while no one waited: kept, not lost
    assert waited(timeout=0.2) >= 0.2  # and it ended one wait only
