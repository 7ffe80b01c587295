"""The actors through a real Dramatiq worker, fast: a StubBroker and a worker thread of this
process, on the real test database.

The worker tests (test_pipeline_with_workers.py) start `rundramatiq` processes on Redis and
take seconds; this one runs the same actors, with Dramatiq's own worker, retries and
middleware, in a fraction of a second, as Dramatiq's guide to unit testing does (speed is
measured by `manage.py bench`, never asserted here).
"""

from __future__ import annotations

from collections.abc import Iterator

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from keyring.models import KeyLease
from records.models import Signature
from signing.models import Batch, SigningRun
from signing.ops.connections import DatabaseConnections
from signing.runs import actors
from signing.runs.messages import QUEUE
from tests.integration.factories import Cast

# The worker thread has its own connection: the cast must be committed for it to see.
pytestmark = pytest.mark.django_db(transaction=True)

ACTORS = (actors.signing_triggered, actors.signing_completed, actors.signing_failed)
ACTORS += (actors.audit_run,)


@pytest.fixture
def stub_broker() -> Iterator[StubBroker]:
    """A StubBroker in place of the configured one, for the actors and the senders alike;
    the configured broker comes back afterwards."""
    configured = dramatiq.get_broker()
    broker = StubBroker()
    # Closes the worker thread's database connection after each message, as the workers
    # do: the test database can then be flushed and dropped.
    broker.add_middleware(DatabaseConnections())
    broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    for actor in ACTORS:
        actor.broker = broker
        broker.declare_actor(actor)
    yield broker
    for actor in ACTORS:
        actor.broker = configured
    dramatiq.set_broker(configured)
    broker.close()


@pytest.fixture
def stub_worker(stub_broker: StubBroker) -> Iterator[dramatiq.Worker]:
    """One worker of two threads on the stub broker, polling it every 10 ms."""
    worker = dramatiq.Worker(stub_broker, worker_threads=2, worker_timeout=10)
    worker.start()
    yield worker
    worker.stop()


@pytest.mark.cast(records=10, keys=2, batch_size=10)
def test_a_signing_triggered_signs_its_batch_and_its_completion_finishes_the_run(
    cast: Cast, stub_broker: StubBroker, stub_worker: dramatiq.Worker
) -> None:
    # Given a run of one batch of 10 records, leased (the cast)
    lease = cast.lease

    # When its SigningTriggered is sent and every message that follows is handled
    actors.signing_triggered.send(
        run_id=cast.run.pk,
        batch_id=cast.batch.pk,
        lease_id=lease.id,
        token=lease.token,
        key_id=lease.key_id,
        kid=lease.kid,
    )
    stub_broker.join(QUEUE, timeout=10_000, fail_fast=True)
    stub_worker.join()

    # Then the batch is signed under its lease
    assert Batch.objects.get(pk=cast.batch.pk).status == Batch.Status.SIGNED
    assert Signature.objects.filter(lease_id=lease.id, key_id=lease.key_id).count() == 10
    # and SigningCompleted was handled: the lease released, the run finished and audited
    released = KeyLease.objects.get(pk=lease.id)
    assert released.outcome == KeyLease.Outcome.COMPLETED
    assert released.released_at is not None
    run = SigningRun.objects.get(pk=cast.run.pk)
    assert run.status == SigningRun.Status.COMPLETED
    assert run.audit.passed, run.audit.report
    assert not stub_broker.dead_letters
