"""Anyone who can write to the broker can send any message: none makes a worker store what the
database does not hold for the batch under its lease, and the batch is still signed later.

The forgeries are those of an attacker who can read the API (lease ids and tokens are
public there) and write to Redis: a live lease's real ids and token, with altered payloads,
with records of another batch, with another key's kid, or from before a reset.
"""

from __future__ import annotations

import io

import dramatiq
import pytest
from django.core.management import call_command
from dramatiq.message import generate_unique_id

from kernel import crypto
from keyring.models import KeyLease, SigningKey
from records.models import Record, Signature
from signing.audit.rules import audit
from signing.models import Batch, SigningRun
from signing.runs.actors import signing_completed, signing_failed, signing_triggered
from signing.runs.dispatch import start_run
from signing.runs.services import sign_batch
from signing.runs.store import StoreOutcome
from tests.conftest import hint_of, seed, wait_until


def forged(original: dramatiq.Message, **changes: object) -> dramatiq.Message:
    """The same SigningTriggered with some of its fields changed or added (a message of its
    own: Redis keeps a message's body by its id)."""
    return original.copy(message_id=generate_unique_id(), kwargs={**original.kwargs, **changes})


def altered_records(batch: Batch) -> list[list[object]]:
    """What earlier versions carried in the message: here with payloads the database does
    not hold."""
    ids = Record.objects.filter(id__range=(batch.first_record_id, batch.last_record_id))
    return [[record_id, "pay me 1,000,000"] for record_id in ids.values_list("id", flat=True)]


def all_signatures_verify_over_the_database() -> bool:
    for signature in Signature.objects.select_related("record", "key"):
        public_key = crypto.load_public_key(signature.key.public_key_pem)
        data = crypto.signing_input(signature.record_id, signature.record.payload)
        if not crypto.verify(public_key, data, bytes(signature.signature)):
            return False
    return True


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("backend")
class TestInProcess:
    """The actors as a worker runs them, one message at a time."""

    @pytest.fixture
    def run(self, sent) -> SigningRun:
        seed(records=20, keys=3)
        return start_run(batch_size=10, max_in_flight=2)

    def test_altered_payloads_are_ignored_the_database_is_signed(self, run, sent):
        first = sent.named("signing_triggered")[0]
        batch = Batch.objects.get(pk=first.kwargs["batch_id"])
        signing_triggered.fn(**forged(first, records=altered_records(batch)).kwargs)
        assert Signature.objects.filter(batch=batch).count() == 10
        assert all_signatures_verify_over_the_database()

    def test_records_of_another_batch_are_ignored(self, run, sent):
        first, second = sent.named("signing_triggered")[:2]
        other = Batch.objects.get(pk=second.kwargs["batch_id"])
        signing_triggered.fn(**forged(first, records=altered_records(other)).kwargs)
        assert set(Signature.objects.values_list("batch_id", flat=True)) == {
            first.kwargs["batch_id"]
        }
        assert not Signature.objects.filter(record_id__gte=other.first_record_id).exists()

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param({"kid": "key-9999-000000000000"}, id="another kid"),
            pytest.param({"token": 2}, id="another token"),
            pytest.param({"batch_id": 0}, id="another batch"),
            pytest.param({"key_id": 0}, id="another key id"),
            pytest.param({"lease_id": 10**12}, id="no such lease"),
        ],
    )
    def test_a_message_not_matching_its_lease_stores_nothing(self, run, sent, change):
        first = sent.named("signing_triggered")[0]
        if "key_id" in change:
            change = {"key_id": SigningKey.objects.exclude(pk=first.kwargs["key_id"]).first().pk}
        if "batch_id" in change:
            change = {"batch_id": sent.named("signing_triggered")[1].kwargs["batch_id"]}
        assert sign_batch(hint_of(forged(first, **change))).outcome is StoreOutcome.LEASE_LOST
        assert not Signature.objects.exists()
        assert not sent.named("signing_completed")
        # the real message still signs the batch, correctly
        assert sign_batch(hint_of(first)).outcome is StoreOutcome.STORED
        assert all_signatures_verify_over_the_database()

    def test_another_keys_kid_with_its_real_id_stores_nothing(self, run, sent):
        first = sent.named("signing_triggered")[0]
        other = SigningKey.objects.exclude(pk=first.kwargs["key_id"]).first()
        message = forged(first, key_id=other.pk, kid=other.kid)
        assert sign_batch(hint_of(message)).outcome is StoreOutcome.LEASE_LOST
        assert not Signature.objects.exists()

    def test_a_forged_completion_does_not_release_a_live_lease(self, run, sent):
        first = sent.named("signing_triggered")[0]
        signing_completed.fn(run_id=run.pk, lease_id=first.kwargs["lease_id"])
        assert KeyLease.objects.get(pk=first.kwargs["lease_id"]).released_at is None
        # its worker then stores, and the real completion releases it
        signing_triggered.fn(**first.kwargs)
        signing_completed.fn(**sent.named("signing_completed")[0].kwargs)
        assert KeyLease.objects.get(pk=first.kwargs["lease_id"]).outcome == "completed"

    def test_a_completion_naming_another_run_releases_nothing(self, run, sent):
        first = sent.named("signing_triggered")[0]
        signing_triggered.fn(**first.kwargs)
        signing_completed.fn(run_id=run.pk + 1, lease_id=first.kwargs["lease_id"])
        assert KeyLease.objects.get(pk=first.kwargs["lease_id"]).released_at is None

    def test_a_forged_failure_leaves_the_lease_to_its_worker(self, run, sent):
        first = sent.named("signing_triggered")[0]
        failure = {"kwargs": first.kwargs, "options": {"traceback": "Error: forged"}}
        signing_failed.fn(failure, {"retries": 5})
        assert KeyLease.objects.get(pk=first.kwargs["lease_id"]).released_at is None
        assert Batch.objects.get(pk=first.kwargs["batch_id"]).status == Batch.Status.LEASED
        signing_triggered.fn(**first.kwargs)
        assert Batch.objects.get(pk=first.kwargs["batch_id"]).status == Batch.Status.SIGNED

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"run_id": "1", "batch_id": 1, "lease_id": 1, "token": 1, "key_id": 1, "kid": "k"},
            {"run_id": 1, "batch_id": True, "lease_id": 1, "token": 1, "key_id": 1, "kid": "k"},
            {"run_id": 1, "batch_id": 1, "lease_id": 2**70, "token": 1, "key_id": 1, "kid": "k"},
            {"run_id": 1, "batch_id": 1, "lease_id": 1, "token": 1, "key_id": 1, "kid": 7},
        ],
        ids=["string id", "boolean id", "id past bigint", "kid not text"],
    )
    def test_a_message_of_the_wrong_shape_is_dropped_without_a_retry(self, run, kwargs, caplog):
        with caplog.at_level("WARNING", logger="signing.runs.actors"):
            signing_triggered.fn(**kwargs)  # no exception: Dramatiq would retry it
        assert "message.invalid" in caplog.text
        assert not Signature.objects.exists()

    def test_a_message_from_before_a_reset_names_no_lease_of_the_new_data(self, run, sent):
        stale = sent.named("signing_triggered")[0]
        call_command("cancel", str(run.pk), stdout=io.StringIO())
        call_command("seed", records=20, keys=3, reset=True, stdout=io.StringIO())
        start_run(batch_size=10, max_in_flight=2)
        assert sign_batch(hint_of(stale)).outcome is StoreOutcome.LEASE_LOST
        assert not Signature.objects.exists()


@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_forged_messages_through_real_workers_store_nothing_and_the_run_is_audited(
    broker, start_workers
):
    # Given a run whose first messages wait in Redis (no worker yet), and a message of a
    # run from before a reset
    seed(records=30, keys=5)
    old_run = start_run(batch_size=10, max_in_flight=1)
    [stale] = take_queued(broker)
    call_command("cancel", str(old_run.pk), stdout=io.StringIO())
    call_command("seed", records=400, keys=5, reset=True, stdout=io.StringIO())
    run = start_run(batch_size=100, max_in_flight=4)
    originals = take_queued(broker)
    assert len(originals) == 4
    first, second = originals[:2]
    other_key = SigningKey.objects.exclude(pk=first.kwargs["key_id"]).first()
    # When forgeries go first: altered payloads, another batch's records, another key's
    # kid, the stale lease; then the real messages
    forgeries = [
        forged(first, records=altered_records(Batch.objects.get(pk=first.kwargs["batch_id"]))),
        forged(first, records=altered_records(Batch.objects.get(pk=second.kwargs["batch_id"]))),
        forged(second, key_id=other_key.pk, kid=other_key.kid),
        stale,
    ]
    for message in [*forgeries, *originals]:
        broker.enqueue(message)
    start_workers(processes=1, threads=2)

    # Then the run completes, every signature covers the database's payload, and the audit
    # passes
    wait_until(
        lambda: SigningRun.objects.get(pk=run.pk).status in SigningRun.FINISHED_STATUSES,
        timeout=60,
    )
    assert SigningRun.objects.get(pk=run.pk).status == SigningRun.Status.COMPLETED
    assert Signature.objects.count() == 400
    assert all_signatures_verify_over_the_database()
    for batch in Batch.objects.filter(run=run):
        assert set(
            Signature.objects.filter(batch=batch).values_list("record_id", flat=True)
        ) == set(range(batch.first_record_id, batch.last_record_id + 1))
    report = audit(processes=1)
    assert report.passed, report.as_dict()


def take_queued(broker: dramatiq.Broker) -> list[dramatiq.Message]:
    """Take every queued SigningTriggered out of Redis (consumed and acked), in order."""
    taken = []
    consumer = broker.consume("signing", prefetch=100, timeout=100)
    try:
        while (proxy := next(consumer)) is not None:
            consumer.ack(proxy)
            if proxy.actor_name == "signing_triggered":
                taken.append(dramatiq.Message(**proxy.asdict()))
    finally:
        consumer.close()
    return taken
