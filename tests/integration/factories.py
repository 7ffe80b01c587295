"""Small builders for integration tests: leases granted by hand, as dispatch grants them,
and batches signed as workers sign them."""

from __future__ import annotations

from django.db import transaction

from kernel import crypto
from keyring.leases import GrantedLease, LeaseHint
from keyring.models import KeyLease
from keyring.services import open_private_key
from records.selectors import batch_records
from signing.backends import backend
from signing.models import Batch
from signing.runs.leases import release_lease
from signing.runs.store import StoreOutcome, store_signatures


def lease_batch(batch: Batch, *, ttl_seconds: int = 30) -> GrantedLease:
    """Lease the LRU free key to a pending batch and mark it leased, as dispatch does."""
    with transaction.atomic():
        lease = backend().lease_lru_key(batch_id=batch.pk, ttl_seconds=ttl_seconds)
        assert lease is not None, "no free key"
        Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.LEASED)
    return lease


def sign_and_release(lease_id: int) -> None:
    """What a worker and SigningCompleted do for a leased batch: sign, store, release."""
    lease = KeyLease.objects.select_related("key", "batch").get(pk=lease_id)
    key = open_private_key(key_id=lease.key_id, kid=lease.key.kid)
    records = batch_records(
        first_record_id=lease.batch.first_record_id, last_record_id=lease.batch.last_record_id
    )
    outcome, conflicts = store_signatures(
        LeaseHint(lease.pk, lease.token, lease.batch_id, lease.key_id, lease.key.kid),
        signatures=crypto.sign_records(key.private_key, records),
    )
    assert (outcome, conflicts) == (StoreOutcome.STORED, 0)
    release_lease(lease_id=lease.pk, outcome=KeyLease.Outcome.COMPLETED)
