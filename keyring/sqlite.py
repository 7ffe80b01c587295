"""Embedded mode's keyring critical section: migration 0003's functions, in Python.

Each runs in a transaction that starts with BEGIN IMMEDIATE (settings), which takes
SQLite's one write lock before it reads anything. That lock is the keyring lock's
counterpart, held until commit: every lease sees every release committed before it, and
the times, read from one clock under the lock, are totally ordered. Each function returns
what its SQL counterpart returns (a lease as a GrantedLease), so keyring.services treats
the two alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Max, QuerySet
from django.utils import timezone

from keyring.leases import GrantedLease
from keyring.models import KeyLease, SigningKey


def lease_lru_key(*, batch_id: int, ttl_seconds: float) -> GrantedLease | None:
    """keyring_lease_lru_key: lease the LRU free enabled key to a batch, or None."""
    with transaction.atomic():
        key = (
            SigningKey.objects.filter(enabled=True, held_by=None)
            .order_by(F("last_used_at").asc(nulls_first=True), "id")
            .only("id", "kid", "public_key_pem")
            .first()
        )
        if key is None:
            return None
        granted_at = timezone.now()
        last_token = KeyLease.objects.filter(key_id=key.pk).aggregate(last=Max("token"))["last"]
        lease = KeyLease.objects.create(
            key_id=key.pk,
            batch_id=batch_id,
            token=(last_token or 0) + 1,
            acquired_at=granted_at,
            expires_at=granted_at + timedelta(seconds=ttl_seconds),
        )
        SigningKey.objects.filter(pk=key.pk).update(held_by=lease)
    return GrantedLease(
        lease.pk,
        key.pk,
        key.kid,
        key.public_key_pem,
        batch_id,
        lease.token,
        lease.acquired_at,
        lease.expires_at,
    )


def release_lease(*, lease_id: int, outcome: str) -> int | None:
    """keyring_release_lease: close an open lease, stamp its key; its batch id, or None."""
    with transaction.atomic():
        held = KeyLease.objects.filter(pk=lease_id, released_at=None)
        found = held.values_list("key_id", "batch_id").first()
        if found is None:
            return None
        key_id, batch_id = found
        released_at = timezone.now()
        held.update(released_at=released_at, outcome=outcome)
        SigningKey.objects.filter(pk=key_id).update(last_used_at=released_at, held_by=None)
    return batch_id


def live_lease(
    *, lease_id: int, token: int, batch_id: int, key_id: int, now: datetime
) -> QuerySet[KeyLease]:
    """The fence, as the SQL statements write it: this lease, if it is still open and
    unexpired, under this token, for this batch and key."""
    return KeyLease.objects.filter(
        pk=lease_id,
        token=token,
        batch_id=batch_id,
        key_id=key_id,
        released_at=None,
        expires_at__gt=now,
    )


def extend_lease(*, lease_id: int, token: int, ttl_seconds: float) -> bool:
    """EXTEND_LEASE: push an open, unexpired lease's expiry one TTL past now."""
    now = timezone.now()
    return bool(
        KeyLease.objects.filter(
            pk=lease_id, token=token, released_at=None, expires_at__gt=now
        ).update(expires_at=now + timedelta(seconds=ttl_seconds))
    )


def expire_leases() -> list[tuple[int, int]]:
    """EXPIRE_LEASES: close every open lease past its expiry; (lease id, batch id) of each."""
    with transaction.atomic():
        now = timezone.now()
        overdue = KeyLease.objects.filter(released_at=None, expires_at__lte=now)
        expired = list(overdue.order_by("id").values_list("id", "key_id", "batch_id"))
        if expired:
            lease_ids = [lease_id for lease_id, _, _ in expired]
            key_ids = [key_id for _, key_id, _ in expired]
            KeyLease.objects.filter(pk__in=lease_ids).update(
                released_at=now, outcome=KeyLease.Outcome.EXPIRED
            )
            SigningKey.objects.filter(pk__in=key_ids).update(last_used_at=now, held_by=None)
    return [(lease_id, batch_id) for lease_id, _, batch_id in expired]
