"""Embedded mode's backend: the PostgreSQL functions and statements, in Python, for SQLite.

Same steps, same order, same rows returned as the SQL they stand in for
(signing.backends.sql). Each runs in a transaction that starts with BEGIN IMMEDIATE
(settings), which takes SQLite's one write lock before it reads anything. That lock is the
keyring lock's counterpart, held until commit: every lease sees every release committed
before it, and the times, read from one clock (this process's: embedded mode is one
process) under the lock, are totally ordered. The store keeps the PostgreSQL statement's
order and fencing in one such transaction: the write lock stands in for the lease row's
lock, so a release or expiry cannot slip between the lease check and the insert.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from itertools import islice

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import F, Max, QuerySet
from django.utils import timezone

from keyring.leases import GrantedLease, LeaseHint
from keyring.models import KeyLease, SigningKey
from records.selectors import unsigned_record_pages
from signing.backends.base import Planned, StoreCounts, TakeUp
from signing.models import Batch, SigningRun

INSERT_RECORD = "INSERT INTO records_record (payload, created_at) VALUES (%s, %s)"
ROWS_PER_INSERT = 10_000

# The keys first: a lease, a signature or a record may be deleted only once the keyring
# is empty (keyring migration 0006, records migration 0007), which only a reset does.
# Foreign keys are checked at commit, when all are gone.
RESET_TABLES = (
    "signing_checkpoint",
    "keyring_keydisabledperiod",
    "keyring_signingkey",
    "keyring_keylease",
    "records_signature",
    "signing_runaudit",
    "signing_batch",
    "signing_signingrun",
    "records_record",
)

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
# Read in the plan's transaction, under the one write lock: no record lands in between.
PLANNED = """
SELECT COUNT(*), COALESCE(SUM(size), 0), (SELECT COALESCE(MAX(id), 0) FROM records_record)
FROM signing_batch WHERE run_id = %(run_id)s
"""

INSERT_SIGNATURES = """
INSERT INTO records_signature (record_id, key_id, batch_id, lease_id, signature, signed_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (record_id) DO NOTHING
"""

# CREATE_STAGE's table; `temp.` names it in the connection's own temporary database.
STAGE = "temp.signing_staged_signature"

# Rule 2's pairs of overlapping leases (sql.OVERLAPPING_LEASES), each lease the half-open
# range [acquired_at, released_at), open-ended while held, an empty range overlapping
# nothing (as tstzrange's && has it).
OVERLAPPING_LEASES = """
SELECT a.id, b.id, k.kid FROM keyring_keylease a
JOIN keyring_keylease b ON b.key_id = a.key_id AND b.id > a.id
 AND (a.released_at IS NULL OR (a.released_at > b.acquired_at AND a.released_at > a.acquired_at))
 AND (b.released_at IS NULL OR (b.released_at > a.acquired_at AND b.released_at > b.acquired_at))
JOIN keyring_signingkey k ON k.id = a.key_id
JOIN signing_batch ba ON ba.id = a.batch_id
JOIN signing_batch bb ON bb.id = b.batch_id
WHERE CAST(%(run_id)s AS bigint) IS NULL OR %(run_id)s IN (ba.run_id, bb.run_id)
"""

# The advisory lock's counterpart in embedded mode, where every worker is a thread here.
_reaper = threading.Lock()


class SQLiteBackend:
    """Embedded mode's backend: SQLite's write lock, this process's clock."""

    signs_in_this_process = True  # embedded mode: the workers are this process's threads

    def __init__(self) -> None:
        # Runs finished so far in this process, and how many each listening thread has heard.
        self._finished_runs = threading.Condition()
        self._finished_runs_seen = 0
        self._listeners = threading.local()

    def lock_keyring(self) -> None:
        assert connection.in_atomic_block, "the keyring lock lives as long as a transaction"
        # BEGIN IMMEDIATE took SQLite's write lock when the transaction began.

    def clock(self) -> datetime:
        return timezone.now()

    def lease_lru_key(self, *, batch_id: int, ttl_seconds: float) -> GrantedLease | None:
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

    def release_lease(self, *, lease_id: int, outcome: str) -> int | None:
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

    def extend_lease(self, lease: LeaseHint, *, ttl_seconds: float) -> bool:
        """EXTEND_LEASE: push an open, unexpired lease's expiry one TTL past now."""
        now = timezone.now()
        return bool(
            KeyLease.objects.filter(
                pk=lease.lease_id, token=lease.token, released_at=None, expires_at__gt=now
            ).update(expires_at=now + timedelta(seconds=ttl_seconds))
        )

    def expire_leases(self) -> list[tuple[int, int, int]]:
        """EXPIRE_LEASES: close every open lease past its expiry."""
        with transaction.atomic():
            now = timezone.now()
            overdue = KeyLease.objects.filter(released_at=None, expires_at__lte=now)
            expired = list(
                overdue.order_by("id").values_list("id", "key_id", "batch_id", "batch__run_id")
            )
            if expired:
                lease_ids = [lease_id for lease_id, _, _, _ in expired]
                key_ids = [key_id for _, key_id, _, _ in expired]
                KeyLease.objects.filter(pk__in=lease_ids).update(
                    released_at=now, outcome=KeyLease.Outcome.EXPIRED
                )
                SigningKey.objects.filter(pk__in=key_ids).update(last_used_at=now, held_by=None)
        return [(lease_id, batch_id, run_id) for lease_id, _, batch_id, run_id in expired]

    def plan_batches(self, *, run_id: int, batch_size: int) -> Planned:
        """PLAN_BATCHES: cut the unsigned records into the run's batches."""
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        with connection.cursor() as cursor:
            cursor.execute(PLAN_BATCHES, {"run_id": run_id, "batch_size": batch_size, "now": now})
            cursor.execute(PLANNED, {"run_id": run_id})
            return cursor.fetchone()

    def claim_batches(
        self, *, run_id: int, ttl_seconds: float, release_lease_ids: Sequence[int] = ()
    ) -> list[GrantedLease]:
        """signing_claim_batches_v3, a release and a lease at a time."""
        claimed: list[GrantedLease] = []
        with transaction.atomic():
            completed = KeyLease.objects.filter(
                pk__in=release_lease_ids, batch__run_id=run_id, batch__status=Batch.Status.SIGNED
            )
            for lease_id in completed.order_by("pk").values_list("pk", flat=True):
                self.release_lease(lease_id=lease_id, outcome=KeyLease.Outcome.COMPLETED)
            running = SigningRun.objects.filter(pk=run_id, status=SigningRun.Status.RUNNING)
            max_in_flight = running.values_list("max_in_flight", flat=True).first()
            if max_in_flight is None:
                return claimed
            room = max_in_flight - SigningKey.objects.exclude(held_by=None).count()
            if room <= 0:
                return claimed
            pending = Batch.objects.filter(run_id=run_id, status=Batch.Status.PENDING)
            for batch_id in pending.order_by("seq").values_list("id", flat=True)[:room]:
                lease = self.lease_lru_key(batch_id=batch_id, ttl_seconds=ttl_seconds)
                if lease is None:  # every key is busy: the next release dispatches again
                    break
                Batch.objects.filter(pk=batch_id).update(
                    status=Batch.Status.LEASED, leased_at=lease.acquired_at
                )
                claimed.append(lease)
        return claimed

    def take_up(self, lease: LeaseHint, *, ttl_seconds: float, page_size: int) -> TakeUp | None:
        """TAKE_UP_BATCH; the first page is read after the take-up commits, so SQLite's one
        write lock is not held while up to a page of records is read."""
        with transaction.atomic():
            now = timezone.now()
            live = _live_lease(lease, now=now).filter(key__kid=lease.kid)
            found = live.values_list(
                "started_at",
                "expires_at",
                "batch__status",
                "batch__first_record_id",
                "batch__last_record_id",
                "batch__run__follow",
            ).first()
            if found is None:
                return None
            started_at, expires_at, status, first_record_id, last_record_id, follow = found
            if started_at is None and status == Batch.Status.LEASED:
                live.update(
                    started_at=now,
                    expires_at=max(expires_at, now + timedelta(seconds=ttl_seconds)),
                )
                Batch.objects.filter(pk=lease.batch_id).update(attempts=F("attempts") + 1)
        page: list[tuple[int, str]] = []
        if status == Batch.Status.LEASED:
            pages = unsigned_record_pages(
                first_record_id=first_record_id, last_record_id=last_record_id, page_size=page_size
            )
            page = next(pages, [])
        return status, first_record_id, last_record_id, follow, page

    def block_run_changes(self) -> None:
        """BEGIN IMMEDIATE holds the one write lock already: no run changes meanwhile."""

    def lock_record_inserts(self) -> None:
        """BEGIN IMMEDIATE holds the one write lock already: an insert is a write, so none is
        in flight, and the ids of committed records never leave a gap one could fill later."""
        assert connection.in_atomic_block, "the lock lives as long as a transaction"

    def announce_run_finished(self, run_id: int) -> None:
        """Embedded, a run is signed and watched by threads of one process: a condition."""
        transaction.on_commit(self._announce)

    def _announce(self) -> None:
        with self._finished_runs:
            self._finished_runs_seen += 1
            self._finished_runs.notify_all()

    def listen_for_finished_runs(self) -> None:
        with self._finished_runs:
            self._listeners.heard = self._finished_runs_seen

    def wait_for_finished_run(self, *, timeout: float) -> None:
        with self._finished_runs:
            heard = getattr(self._listeners, "heard", self._finished_runs_seen)
            self._finished_runs.wait_for(lambda: self._finished_runs_seen != heard, timeout=timeout)
            self._listeners.heard = self._finished_runs_seen

    def store_signatures(
        self,
        lease: LeaseHint,
        *,
        record_ids: list[int],
        signatures: list[bytes],
        merkle_root: bytes,
    ) -> StoreCounts:
        """STORE_SIGNATURES."""
        with transaction.atomic():
            now = timezone.now()
            if not _live_lease(lease, now=now).exists():
                return 0, 0, 0
            if not _claim(lease, now=now, merkle_root=merkle_root):
                return 1, 0, 0
            signed_at = connection.ops.adapt_datetimefield_value(now)
            with connection.cursor() as cursor:
                cursor.executemany(
                    INSERT_SIGNATURES,
                    [
                        (record_id, lease.key_id, lease.batch_id, lease.lease_id, raw, signed_at)
                        for record_id, raw in zip(record_ids, signatures, strict=True)
                    ],
                )
                return 1, 1, cursor.rowcount

    def empty_stage(self) -> None:
        """CREATE_STAGE and CLEAR_STAGE."""
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {STAGE} "
                "(record_id INTEGER NOT NULL, signature BLOB NOT NULL)"
            )
            cursor.execute(f"DELETE FROM {STAGE}")

    def stage(self, *, record_ids: list[int], signatures: list[bytes]) -> None:
        """STAGE_SIGNATURES."""
        with connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {STAGE} (record_id, signature) VALUES (%s, %s)",
                list(zip(record_ids, signatures, strict=True)),
            )

    def store_staged_signatures(
        self, lease: LeaseHint, *, staged: int, merkle_root: bytes
    ) -> StoreCounts:
        """STORE_STAGED_SIGNATURES."""
        with transaction.atomic(), connection.cursor() as cursor:
            now = timezone.now()
            if not _live_lease(lease, now=now).exists():
                return 0, 0, 0
            cursor.execute(f"SELECT count(*) FROM {STAGE}")
            if cursor.fetchone()[0] != staged:
                return 1, 0, 0
            if not _claim(lease, now=now, merkle_root=merkle_root):
                return 1, 0, 0
            cursor.execute(
                "INSERT INTO records_signature "
                "(record_id, key_id, batch_id, lease_id, signature, signed_at) "
                f"SELECT record_id, %s, %s, %s, signature, %s FROM {STAGE} WHERE true "
                "ON CONFLICT (record_id) DO NOTHING",
                [
                    lease.key_id,
                    lease.batch_id,
                    lease.lease_id,
                    connection.ops.adapt_datetimefield_value(now),
                ],
            )
            return 1, 1, cursor.rowcount

    def load_records(self, payloads: Iterable[str]) -> int:
        """COPY_RECORDS: insert the payloads, ROWS_PER_INSERT at a time.

        One transaction: in autocommit each row would be a commit of its own, each synced to
        disk (synchronous=FULL): 15 s for 100k rows instead of 1.5 s.
        """
        created_at = connection.ops.adapt_datetimefield_value(timezone.now())
        loaded = 0
        with transaction.atomic(), connection.cursor() as cursor:
            for chunk in _chunks(payloads, ROWS_PER_INSERT):
                cursor.executemany(INSERT_RECORD, [(payload, created_at) for payload in chunk])
                loaded += len(chunk)
            cursor.execute("ANALYZE records_record")
        return loaded

    def reset_all(self) -> None:
        reset_tables()

    def overlapping_leases(self, *, run_id: int | None) -> list[tuple[int, int, str]]:
        with connection.cursor() as cursor:
            cursor.execute(OVERLAPPING_LEASES, {"run_id": run_id})
            return cursor.fetchall()

    @contextmanager
    def reaper_turn(self) -> Iterator[bool]:
        """Every worker is a thread of this process, so a thread lock picks one."""
        if not _reaper.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            _reaper.release()

    def try_reaper_lock(self) -> bool:
        return True


def reset_tables(*, using: str = DEFAULT_DB_ALIAS) -> None:
    """RESET_ALL: empty every table of the service (also `flush`'s first step). Ids go on
    from where they were (AUTOINCREMENT keeps its counters in sqlite_sequence)."""
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        for table in RESET_TABLES:  # names from the fixed list above, never from input
            cursor.execute(f"DELETE FROM {table}")


def _live_lease(lease: LeaseHint, *, now: datetime) -> QuerySet[KeyLease]:
    """The fence, as the SQL statements write it: this lease, if it is still open and
    unexpired, under this token, for this batch and key."""
    return KeyLease.objects.filter(
        pk=lease.lease_id,
        token=lease.token,
        batch_id=lease.batch_id,
        key_id=lease.key_id,
        released_at=None,
        expires_at__gt=now,
    )


def _claim(lease: LeaseHint, *, now: datetime, merkle_root: bytes) -> int:
    """Move the lease's batch from leased to signed, with its Merkle root; 1 if it moved."""
    return Batch.objects.filter(pk=lease.batch_id, status=Batch.Status.LEASED).update(
        status=Batch.Status.SIGNED, signed_at=now, merkle_root=merkle_root
    )


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
