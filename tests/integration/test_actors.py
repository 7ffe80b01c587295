"""signing.runs.actors: a redelivered SigningTriggered or SigningCompleted changes nothing."""

import pytest

from keyring.models import KeyLease, SigningKey
from records.models import Signature
from signing.models import Batch, SigningRun
from signing.runs.dispatch import start_run
from tests.conftest import seed
from tests.support import deliver

pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.django_db(transaction=True)]


def state() -> dict[str, list]:
    """Everything a delivery could change, as plain values."""
    return {
        "signatures": list(Signature.objects.order_by("record_id").values()),
        "leases": list(KeyLease.objects.order_by("id").values()),
        "batches": list(Batch.objects.order_by("id").values()),
        "keys": list(SigningKey.objects.order_by("id").values("id", "last_used_at")),
        "runs": list(SigningRun.objects.order_by("id").values()),
    }


def test_signing_triggered_delivered_twice_changes_nothing_the_second_time(sent):
    # Given a run of 3 batches, one in flight
    seed(records=30, keys=3)
    run = start_run(batch_size=10, max_in_flight=1)
    [triggered] = sent.named("signing_triggered")

    # When its SigningTriggered is delivered twice
    deliver(triggered)
    after_first = state()
    deliver(triggered)

    # Then the second delivery wrote nothing
    assert state() == after_first
    assert Signature.objects.count() == 10
    assert Batch.objects.get(pk=triggered.kwargs["batch_id"]).status == Batch.Status.SIGNED
    # and it reported again (the first report may be the one that was lost)
    assert [m.kwargs["lease_id"] for m in sent.named("signing_completed")] == [
        triggered.kwargs["lease_id"]
    ] * 2
    assert SigningRun.objects.get(pk=run.pk).status == SigningRun.Status.RUNNING


def test_signing_completed_delivered_twice_changes_nothing_the_second_time(sent):
    # Given a batch signed and reported
    seed(records=30, keys=3)
    start_run(batch_size=10, max_in_flight=1)
    deliver(sent.named("signing_triggered")[0])
    [completed] = sent.named("signing_completed")

    # When its SigningCompleted is delivered twice
    deliver(completed)
    after_first = state()
    triggered_after_first = len(sent.named("signing_triggered"))
    deliver(completed)

    # Then the first released the lease and dispatched the next batch; the second nothing
    lease = KeyLease.objects.get(pk=completed.kwargs["lease_id"])
    assert lease.outcome == KeyLease.Outcome.COMPLETED
    assert SigningKey.objects.get(pk=lease.key_id).last_used_at == lease.released_at
    assert triggered_after_first == 2
    assert state() == after_first
    assert len(sent.named("signing_triggered")) == 2


def test_a_late_signing_triggered_after_its_batch_was_signed_by_another_writes_nothing(sent):
    # Given a batch whose first lease was taken away and whose second attempt signed it
    seed(records=10, keys=2)
    run = start_run(batch_size=10, max_in_flight=1)
    [late] = sent.named("signing_triggered")
    from signing.runs.dispatch import dispatch_batches
    from signing.runs.leases import release_lease

    release_lease(lease_id=late.kwargs["lease_id"], outcome=KeyLease.Outcome.EXPIRED)
    Batch.objects.filter(pk=late.kwargs["batch_id"]).update(status=Batch.Status.PENDING)
    dispatch_batches(run.pk)
    second = sent.named("signing_triggered")[1]
    assert second.kwargs["key_id"] != late.kwargs["key_id"]
    deliver(second)
    before = state()

    # When the first SigningTriggered arrives late
    deliver(late)

    # Then nothing changes and nothing is reported for it
    assert state() == before
    assert [m.kwargs["lease_id"] for m in sent.named("signing_completed")] == [
        second.kwargs["lease_id"]
    ]


def test_the_last_completion_finishes_the_run(sent):
    seed(records=20, keys=2)
    run = start_run(batch_size=10, max_in_flight=2)
    for triggered in sent.named("signing_triggered"):
        deliver(triggered)
    for completed in sent.named("signing_completed"):
        deliver(completed)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED
    assert run.finished_at is not None
    assert not KeyLease.objects.filter(released_at=None).exists()
