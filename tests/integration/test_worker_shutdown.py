"""SIGTERM to `manage.py rundramatiq` (a deploy, `docker stop`, Ctrl-C): each worker thread
may finish the batch it holds for up to --worker-shutdown-timeout (25 s by default), then the
processes exit; past it they exit anyway and the batch stays unwritten, its lease left to
expire (docs/reliability.md). The signal goes to the master alone, as an orchestrator sends it
to a container's first process."""

import time

import pytest

from signing.management.commands.rundramatiq import WORKER_SHUTDOWN_TIMEOUT_MS
from signing.models import Batch, SigningRun
from signing.runs.dispatch import start_run
from tests.conftest import ARTIFACTS, seed, wait_until

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]

# One batch a worker thread takes a few seconds to sign and store.
RECORDS = 20_000
# Beyond the timeout: a second for each process to see the signal, the master's own wait.
OVERHEAD_SECONDS = 5.0


def one_big_batch_in_flight(start_workers, **options) -> tuple[object, SigningRun]:
    """One worker thread, holding the one batch of a run (taken up, not yet stored)."""
    seed(records=RECORDS, keys=1)
    workers = start_workers(processes=1, threads=1, **options)
    workers.wait_ready()
    run = start_run(batch_size=RECORDS)
    wait_until(lambda: Batch.objects.filter(run=run, attempts=1).exists(), timeout=60)
    return workers, run


def stop_timed(workers) -> float:
    started = time.monotonic()
    assert workers.stop(timeout=60), "SIGTERM was not enough: the group was killed"
    return time.monotonic() - started


def test_sigterm_lets_the_batch_in_flight_finish_within_the_default_bound(start_workers, request):
    # Given rundramatiq's own shutdown timeout, and a worker signing a big batch
    workers, run = one_big_batch_in_flight(start_workers, shutdown_timeout_ms=None)

    # When the master gets SIGTERM
    seconds = stop_timed(workers)

    # Then the worker stored the batch it held after it was told to stop, and all exited
    # within the bound
    assert seconds < WORKER_SHUTDOWN_TIMEOUT_MS / 1000 + OVERHEAD_SECONDS
    assert Batch.objects.get(run=run).status == Batch.Status.SIGNED
    log = (ARTIFACTS / f"workers-{request.node.name}.log").read_text()
    assert f"shutdown_timeout_ms={WORKER_SHUTDOWN_TIMEOUT_MS}" in log
    assert log.index("Stopping worker process") < log.index("batch.stored")


def test_a_batch_longer_than_the_bound_is_left_unwritten_and_the_worker_exits_on_time(
    start_workers,
):
    # Given a shutdown timeout far shorter than the batch being signed
    workers, run = one_big_batch_in_flight(start_workers, shutdown_timeout_ms=200)

    # When the master gets SIGTERM
    seconds = stop_timed(workers)

    # Then the processes exit within that bound, and the batch is neither signed nor half
    # signed: still leased, under a lease that will expire
    assert seconds < 0.2 + OVERHEAD_SECONDS
    batch = Batch.objects.get(run=run)
    assert batch.status == Batch.Status.LEASED
    assert not batch.signatures.exists()
