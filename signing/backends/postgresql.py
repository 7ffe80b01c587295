"""The PostgreSQL backend: each operation one named statement (signing.backends.sql), most
of them calls of the PL/pgSQL functions the migrations define, under the keyring lock
(an advisory lock, keyring migration 0003)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import psycopg
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from kernel.roles import ResetNeedsOwner, insufficient_privilege
from keyring.leases import GrantedLease, LeaseHint
from signing.backends import sql
from signing.backends.base import Planned, StoreCounts, TakeUp

REAPER_LOCK_ID = zlib.crc32(b"signing reaper")


class PostgreSQLBackend:
    """The servers' backend: PostgreSQL's functions, locks and clock."""

    signs_in_this_process = False  # rundramatiq processes, each with its own KEK

    def lock_keyring(self) -> None:
        assert connection.in_atomic_block, "the keyring lock lives as long as a transaction"
        with connection.cursor() as cursor:
            cursor.execute(sql.LOCK_KEYRING)

    def clock(self) -> datetime:
        with connection.cursor() as cursor:
            cursor.execute(sql.CLOCK)
            return cursor.fetchone()[0]

    def lease_lru_key(self, *, batch_id: int, ttl_seconds: float) -> GrantedLease | None:
        with connection.cursor() as cursor:
            cursor.execute(sql.LEASE_LRU_KEY, {"batch_id": batch_id, "ttl_seconds": ttl_seconds})
            row = cursor.fetchone()
        return GrantedLease(*row) if row is not None else None

    def release_lease(self, *, lease_id: int, outcome: str) -> int | None:
        with connection.cursor() as cursor:
            cursor.execute(sql.RELEASE_LEASE, {"lease_id": lease_id, "outcome": outcome})
            (batch_id,) = cursor.fetchone()
        return batch_id

    def extend_lease(self, lease: LeaseHint, *, ttl_seconds: float) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                sql.EXTEND_LEASE,
                {"lease_id": lease.lease_id, "token": lease.token, "ttl_seconds": ttl_seconds},
            )
            return cursor.fetchone() is not None

    def expire_leases(self) -> list[tuple[int, int, int]]:
        with transaction.atomic():
            self.lock_keyring()
            with connection.cursor() as cursor:
                cursor.execute(sql.EXPIRE_LEASES)
                return cursor.fetchall()

    def plan_batches(self, *, run_id: int, batch_size: int) -> Planned:
        with connection.cursor() as cursor:
            cursor.execute(sql.PLAN_BATCHES, {"run_id": run_id, "batch_size": batch_size})
            planned = cursor.fetchone()
            # Up to one row per record just landed: plan the run's queries for them.
            cursor.execute(sql.ANALYZE_BATCHES)
        return planned

    def claim_batches(
        self, *, run_id: int, ttl_seconds: float, release_lease_ids: Sequence[int] = ()
    ) -> list[GrantedLease]:
        claim = {
            "run_id": run_id,
            "ttl_seconds": ttl_seconds,
            "release_lease_ids": list(release_lease_ids),
        }
        with _binary_cursor() as cursor:  # prepared once per session: it runs per completion
            cursor.execute(sql.CLAIM_BATCHES, claim)
            return [GrantedLease(*row) for row in cursor.fetchall()]

    def take_up(self, lease: LeaseHint, *, ttl_seconds: float, page_size: int) -> TakeUp | None:
        params = {
            "lease_id": lease.lease_id,
            "token": lease.token,
            "batch_id": lease.batch_id,
            "key_id": lease.key_id,
            "kid": lease.kid,
            "ttl_seconds": ttl_seconds,
            "page_size": page_size,
        }
        with _binary_cursor() as cursor:  # prepared once per session: it runs per batch
            cursor.execute(sql.TAKE_UP_BATCH, params)
            rows = cursor.fetchall()
        if not rows:
            return None
        status, first_record_id, last_record_id, follow = rows[0][:4]
        page = [(record_id, payload) for *_, record_id, payload in rows if record_id is not None]
        return status, first_record_id, last_record_id, follow, page

    def block_run_changes(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql.BLOCK_RUN_CHANGES)

    def lock_record_inserts(self) -> None:
        assert connection.in_atomic_block, "the lock lives as long as a transaction"
        with connection.cursor() as cursor:
            cursor.execute(sql.LOCK_RECORD_INSERTS)

    def announce_run_finished(self, run_id: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql.ANNOUNCE_RUN_FINISHED, {"run_id": run_id})

    def listen_for_finished_runs(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql.LISTEN_FOR_FINISHED_RUNS)

    def wait_for_finished_run(self, *, timeout: float) -> None:
        """Notifications that came while the connection ran other queries wait in psycopg's
        backlog, and end this wait at once."""
        connection.ensure_connection()
        with connection.wrap_database_errors:
            for _ in connection.connection.notifies(timeout=timeout, stop_after=1):
                return

    def store_signatures(
        self,
        lease: LeaseHint,
        *,
        record_ids: list[int],
        signatures: list[bytes],
        merkle_root: bytes,
    ) -> StoreCounts:
        params = {
            **_fence(lease),
            "record_ids": record_ids,
            "signatures": signatures,
            "merkle_root": merkle_root,
        }
        with _binary_cursor() as cursor:
            cursor.execute(sql.STORE_SIGNATURES, params)
            return cursor.fetchone()

    def empty_stage(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql.CREATE_STAGE)
            cursor.execute(sql.CLEAR_STAGE)

    def stage(self, *, record_ids: list[int], signatures: list[bytes]) -> None:
        with _binary_cursor() as cursor:
            cursor.execute(
                sql.STAGE_SIGNATURES, {"record_ids": record_ids, "signatures": signatures}
            )

    def store_staged_signatures(
        self, lease: LeaseHint, *, staged: int, merkle_root: bytes
    ) -> StoreCounts:
        params = {**_fence(lease), "staged": staged, "merkle_root": merkle_root}
        with _binary_cursor() as cursor:
            cursor.execute(sql.STORE_STAGED_SIGNATURES, params)
            return cursor.fetchone()

    def load_records(self, payloads: Iterable[str]) -> int:
        """COPY, then ANALYZE at once: plans of the first run would otherwise be made for an
        empty table until autovacuum comes round (up to a minute later)."""
        now = timezone.now()
        loaded = 0
        with connection.cursor() as cursor:
            with cursor.copy(sql.COPY_RECORDS) as copy:
                for payload in payloads:
                    copy.write_row((payload, now))
                    loaded += 1
            cursor.execute(sql.ANALYZE_RECORDS)
        return loaded

    def reset_all(self) -> None:
        """TRUNCATE: only the database owner may; the app role gets ResetNeedsOwner."""
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql.RESET_ALL)
        except DatabaseError as error:
            if insufficient_privilege(error):  # the app role: kernel/roles.py says why
                raise ResetNeedsOwner() from None
            raise

    def overlapping_leases(self, *, run_id: int | None) -> list[tuple[int, int, str]]:
        with connection.cursor() as cursor:
            cursor.execute(sql.OVERLAPPING_LEASES, {"run_id": run_id})
            return cursor.fetchall()

    @contextmanager
    def reaper_turn(self) -> Iterator[bool]:
        """Every thread may try: the advisory lock (try_reaper_lock) picks one process."""
        yield True

    def try_reaper_lock(self) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(sql.TRY_REAPER_LOCK, [REAPER_LOCK_ID])
            return cursor.fetchone()[0]


def _fence(lease: LeaseHint) -> dict[str, int]:
    return {
        "lease_id": lease.lease_id,
        "token": lease.token,
        "batch_id": lease.batch_id,
        "key_id": lease.key_id,
    }


@contextmanager
def _binary_cursor() -> Iterator[psycopg.Cursor]:
    """A cursor that binds parameters server-side, so they can travel in binary, and the
    statements a worker runs per batch are prepared once per session (psycopg prepares a
    query from its fifth execution).

    Django's cursors bind on the client (values spelled into the query text, parsed and
    planned by PostgreSQL each time). This one shares Django's connection and transaction,
    and its errors are Django's.
    """
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        yield cursor
