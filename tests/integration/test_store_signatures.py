"""signing.runs.store.store_signatures: the fenced write, with two writers of one batch."""

from dataclasses import replace

import pytest

from keyring.models import KeyLease
from records.models import Signature
from signing.models import Batch
from signing.runs.leases import release_lease
from signing.runs.store import StoreOutcome, store_signatures
from tests.conftest import run_together
from tests.integration.factories import lease_batch, signatures_for, store

# Runs on both backends: the servers, and embedded mode (tests/conftest.py). Each test
# starts from one batch of 20 records, leased (`cast`).
pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.cast(records=20, batch_size=20)]


def expire(lease) -> None:
    """Take a lease away as the reaper will: closed, its batch pending again."""
    release_lease(lease_id=lease.id, outcome=KeyLease.Outcome.EXPIRED)
    Batch.objects.filter(pk=lease.batch_id).update(status=Batch.Status.PENDING)


def test_a_batch_is_stored_whole_and_marked_signed(cast):
    batch, lease = cast.batch, cast.lease
    assert store(lease, signatures_for(lease)) == (StoreOutcome.STORED, 0)
    assert (
        Signature.objects.filter(batch=batch, key_id=lease.key_id, lease_id=lease.id).count() == 20
    )
    batch.refresh_from_db()
    assert batch.status == Batch.Status.SIGNED


def test_the_same_attempt_stored_twice_writes_once(cast):
    lease = cast.lease
    signatures = signatures_for(lease)
    store(lease, signatures)
    before = list(Signature.objects.order_by("record_id").values())
    assert store(lease, signatures) == (StoreOutcome.ALREADY_STORED, 0)
    assert list(Signature.objects.order_by("record_id").values()) == before


def test_a_writer_whose_lease_was_taken_away_writes_nothing(cast):
    stale = cast.lease
    signatures = signatures_for(stale)
    expire(stale)
    assert store(stale, signatures) == (StoreOutcome.LEASE_LOST, 0)
    assert not Signature.objects.exists()


def test_a_wrong_token_writes_nothing(cast):
    lease = cast.lease
    outcome, _ = store_signatures(
        replace(lease.hint(), token=lease.token + 1), signatures=signatures_for(lease)
    )
    assert outcome is StoreOutcome.LEASE_LOST
    assert not Signature.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.cast(records=50, keys=3, batch_size=50)
def test_two_writers_of_one_batch_at_once_land_exactly_one_set_of_signatures(cast):
    # Given a batch whose first lease expired and was granted again to another key,
    # and both attempts holding their signatures, ready to store
    stale = cast.lease
    stale_signatures = signatures_for(stale)
    expire(stale)
    current = lease_batch(cast.batch)
    current_signatures = signatures_for(current)
    assert current.key_id != stale.key_id

    # When both store at the same moment
    stale_outcome, current_outcome = run_together(
        lambda: store(stale, stale_signatures), lambda: store(current, current_signatures)
    )

    # Then only the current lease's signatures exist, one per record
    assert stale_outcome == (StoreOutcome.LEASE_LOST, 0)
    assert current_outcome == (StoreOutcome.STORED, 0)
    stored = list(Signature.objects.values_list("record_id", "key_id", "lease_id", "signature"))
    assert len(stored) == 50
    assert {(key, lease) for _, key, lease, _ in stored} == {(current.key_id, current.id)}
    by_record = {s.record_id: s.signature for s in current_signatures}
    assert all(bytes(signature) == by_record[record_id] for record_id, _, _, signature in stored)


@pytest.mark.django_db(transaction=True)
@pytest.mark.cast(records=50, keys=2, batch_size=50)
def test_a_duplicate_delivery_racing_itself_stores_once(cast):
    lease = cast.lease
    signatures = signatures_for(lease)
    outcomes = run_together(lambda: store(lease, signatures), lambda: store(lease, signatures))

    assert sorted(outcome.value for outcome, _ in outcomes) == ["already_stored", "stored"]
    assert Signature.objects.count() == 50
