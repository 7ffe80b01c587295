"""Embedded mode's run domain: signing/migrations/0007's function, the take-up of a batch,
the run planner and the store, for SQLite. Same steps, same order, same rows returned as the
SQL they stand in for; the transaction's BEGIN IMMEDIATE is the keyring lock (keyring.sqlite
says why).

store_signatures keeps the PostgreSQL statement's order and fencing, in one BEGIN
IMMEDIATE transaction: SQLite's write lock stands in for the lease row's lock, so a
release or expiry cannot slip between the lease check and the insert.
"""

from __future__ import annotations

from datetime import timedelta

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
) -> list[GrantedLease]:
    """signing_claim_batches_v2: release a lease (if given, and only if its batch is signed
    and of this run), then claim the run's next pending batches up to its in-flight limit,
    leasing each the LRU free key. Returns the leases granted."""
    claimed: list[GrantedLease] = []
    with transaction.atomic():
        if (
            release_lease_id is not None
            and KeyLease.objects.filter(
                pk=release_lease_id, batch__run_id=run_id, batch__status=Batch.Status.SIGNED
            ).exists()
        ):
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
        for batch_id in pending.values_list("id", flat=True)[:room]:
            lease = keyring_sqlite.lease_lru_key(batch_id=batch_id, ttl_seconds=ttl_seconds)
            if lease is None:  # every key is busy: the next release dispatches again
                break
            Batch.objects.filter(pk=batch_id).update(
                status=Batch.Status.LEASED, leased_at=lease.acquired_at
            )
            claimed.append(lease)
    return claimed


def take_up_batch(
    *, lease_id: int, token: int, batch_id: int, key_id: int, kid: str, ttl_seconds: float
) -> tuple[str, int, int] | None:
    """TAKE_UP_BATCH: check the message against its lease; on the first take-up stamp the
    lease, count the batch's attempt and give the lease a full TTL. (status, first, last)
    of the batch, or None when the message names no live lease."""
    with transaction.atomic():
        now = timezone.now()
        fence = {"lease_id": lease_id, "token": token, "batch_id": batch_id, "key_id": key_id}
        lease = keyring_sqlite.live_lease(**fence, now=now).filter(key__kid=kid)
        found = lease.values_list(
            "started_at",
            "expires_at",
            "batch__status",
            "batch__first_record_id",
            "batch__last_record_id",
        ).first()
        if found is None:
            return None
        started_at, expires_at, status, first_record_id, last_record_id = found
        if started_at is None and status == Batch.Status.LEASED:
            lease.update(
                started_at=now, expires_at=max(expires_at, now + timedelta(seconds=ttl_seconds))
            )
            Batch.objects.filter(pk=batch_id).update(attempts=F("attempts") + 1)
    return status, first_record_id, last_record_id


INSERT_SIGNATURES = """
INSERT INTO records_signature (record_id, key_id, batch_id, lease_id, signature, signed_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (record_id) DO NOTHING
"""


def store_signatures(
    *,
    lease_id: int,
    token: int,
    batch_id: int,
    key_id: int,
    record_ids: list[int],
    signatures: list[bytes],
) -> tuple[int, int, int]:
    """STORE_SIGNATURES: (lease still held?, batch claimed?, signatures inserted)."""
    with transaction.atomic():
        now = timezone.now()
        fence = {"lease_id": lease_id, "token": token, "batch_id": batch_id, "key_id": key_id}
        if not keyring_sqlite.live_lease(**fence, now=now).exists():
            return 0, 0, 0
        claimed = Batch.objects.filter(pk=batch_id, status=Batch.Status.LEASED).update(
            status=Batch.Status.SIGNED, signed_at=now
        )
        if not claimed:
            return 1, 0, 0
        signed_at = connection.ops.adapt_datetimefield_value(now)
        with connection.cursor() as cursor:
            cursor.executemany(
                INSERT_SIGNATURES,
                [
                    (record_id, key_id, batch_id, lease_id, signature, signed_at)
                    for record_id, signature in zip(record_ids, signatures, strict=True)
                ],
            )
            return 1, 1, cursor.rowcount


# CREATE_STAGE's table; `temp.` names it in the connection's own temporary database.
STAGE = "temp.signing_staged_signature"


def empty_stage() -> None:
    """CREATE_STAGE and CLEAR_STAGE: this connection's temporary table, made if missing,
    and emptied (before a big batch is staged, and after it is stored)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {STAGE} "
            "(record_id INTEGER NOT NULL, signature BLOB NOT NULL)"
        )
        cursor.execute(f"DELETE FROM {STAGE}")


def stage(record_ids: list[int], signatures: list[bytes]) -> None:
    """STAGE_SIGNATURES."""
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {STAGE} (record_id, signature) VALUES (%s, %s)",
            list(zip(record_ids, signatures, strict=True)),
        )


def store_staged_signatures(
    *, lease_id: int, token: int, batch_id: int, key_id: int, staged: int
) -> tuple[int, int, int]:
    """STORE_STAGED_SIGNATURES: store_signatures, from the stage, if it holds `staged`."""
    with transaction.atomic(), connection.cursor() as cursor:
        now = timezone.now()
        fence = {"lease_id": lease_id, "token": token, "batch_id": batch_id, "key_id": key_id}
        if not keyring_sqlite.live_lease(**fence, now=now).exists():
            return 0, 0, 0
        cursor.execute(f"SELECT count(*) FROM {STAGE}")
        if cursor.fetchone()[0] != staged:
            return 1, 0, 0
        claimed = Batch.objects.filter(pk=batch_id, status=Batch.Status.LEASED).update(
            status=Batch.Status.SIGNED, signed_at=now
        )
        if not claimed:
            return 1, 0, 0
        cursor.execute(
            "INSERT INTO records_signature "
            "(record_id, key_id, batch_id, lease_id, signature, signed_at) "
            f"SELECT record_id, %s, %s, %s, signature, %s FROM {STAGE} WHERE true "
            "ON CONFLICT (record_id) DO NOTHING",
            [key_id, batch_id, lease_id, connection.ops.adapt_datetimefield_value(now)],
        )
        return 1, 1, cursor.rowcount
