"""Embedded mode's dispatch: signing/migrations/0004's function and the run planner, for
SQLite. Same steps, same order, same rows returned as the SQL they stand in for; the
transaction's BEGIN IMMEDIATE is the keyring lock (keyring.sqlite says why)."""

from __future__ import annotations

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from keyring import sqlite as keyring_sqlite
from keyring.leases import GrantedLease
from keyring.models import KeyLease, SigningKey
from signing.models import Batch, SigningRun

# PLAN_BATCHES without the data-modifying CTE SQLite lacks: insert, then count.
PLAN_BATCHES = """
INSERT INTO signing_batch
    (run_id, seq, first_record_id, last_record_id, size, status, attempts, last_error,
     created_at)
SELECT %(run_id)s, grp + 1, MIN(id), MAX(id), COUNT(*), 'pending', 0, '', %(now)s
FROM (
    SELECT r.id, (ROW_NUMBER() OVER (ORDER BY r.id) - 1) / %(batch_size)s AS grp
    FROM records_record r
    WHERE NOT EXISTS (SELECT 1 FROM records_signature s WHERE s.record_id = r.id)
)
GROUP BY grp
ORDER BY grp
"""
PLANNED = "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM signing_batch WHERE run_id = %(run_id)s"


def plan_batches(*, run_id: int, batch_size: int) -> tuple[int, int]:
    """PLAN_BATCHES: cut the unsigned records into the run's batches; (batches, records)."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(PLAN_BATCHES, {"run_id": run_id, "batch_size": batch_size, "now": now})
        cursor.execute(PLANNED, {"run_id": run_id})
        return cursor.fetchone()


def claim_batches(
    *, run_id: int, ttl_seconds: float, release_lease_id: int | None
) -> list[tuple[int, int, GrantedLease]]:
    """signing_claim_batches: release a lease (if given), then claim the run's next pending
    batches up to its in-flight limit, leasing each the LRU free key. Each claim: the
    batch's first and last record id, and its lease."""
    claimed = []
    with transaction.atomic():
        if release_lease_id is not None:
            keyring_sqlite.release_lease(
                lease_id=release_lease_id, outcome=KeyLease.Outcome.COMPLETED
            )
        running = SigningRun.objects.filter(pk=run_id, status=SigningRun.Status.RUNNING)
        max_in_flight = running.values_list("max_in_flight", flat=True).first()
        if max_in_flight is None:
            return claimed
        room = max_in_flight - SigningKey.objects.exclude(held_by=None).count()
        if room <= 0:
            return claimed
        pending = Batch.objects.filter(run_id=run_id, status=Batch.Status.PENDING).order_by("seq")
        for batch_id, first_record_id, last_record_id in pending.values_list(
            "id", "first_record_id", "last_record_id"
        )[:room]:
            lease = keyring_sqlite.lease_lru_key(batch_id=batch_id, ttl_seconds=ttl_seconds)
            if lease is None:  # every key is busy: the next release dispatches again
                break
            Batch.objects.filter(pk=batch_id).update(
                status=Batch.Status.LEASED, attempts=F("attempts") + 1, leased_at=lease.acquired_at
            )
            claimed.append((first_record_id, last_record_id, lease))
    return claimed
