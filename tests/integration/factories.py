"""Small builders for integration tests: leases granted by hand, as dispatch grants them."""

from __future__ import annotations

from django.db import transaction

from keyring.services import GrantedLease, lease_lru_key
from signing.models import Batch


def lease_batch(batch: Batch, *, ttl_seconds: int = 30) -> GrantedLease:
    """Lease the LRU free key to a pending batch and mark it leased, as dispatch does."""
    with transaction.atomic():
        lease = lease_lru_key(batch_id=batch.pk, ttl_seconds=ttl_seconds)
        assert lease is not None, "no free key"
        Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.LEASED)
    return lease
