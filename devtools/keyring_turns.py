"""How long the keyring lock is held per batch, and how fast PostgreSQL stores signatures:
the two figures that bound the pipeline whatever the number of worker hosts (issue 17,
docs/scaling.md).

Every dispatch of every host takes one turn of the keyring lock (signing_claim_batches_v3:
release the completed leases, claim and lease the next batches, commit), one after the
other. A turn is timed here from the client, uncontended, as one session would see it: the
statement and its commit, which is as long as the lock is held plus one round trip. With `g`
completions handled per turn, no number of hosts dispatches more than g / turn batches per
second. The store is timed the same way: one fenced statement for a batch of B signatures,
signed beforehand, so records per second is what PostgreSQL's inserts allow one session.

Both leave the database in a state only a reseed cleans (the bench reseeds before each run):
the turns mark their batches signed without signatures, and the run is cancelled at the end.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from django.db.models.functions import Now

from kernel import crypto
from keyring.services import open_private_key
from records.selectors import unsigned_record_pages
from signing.backends import backend
from signing.models import Batch
from signing.runs.dispatch import cancel_run, plan_run
from signing.runs.store import store_signatures

# Turns before the clock starts: the first plans of each statement are made then.
WARM_UP_TURNS = 20
LEASE_TTL_SECONDS = 600.0


@dataclass(frozen=True)
class KeyringTurns:
    completions_per_turn: int
    turn_ms: float  # median: one claim statement and its commit, uncontended
    per_batch_ms: float
    ceiling_batches_per_s: float  # completions_per_turn / turn, for any number of hosts


@dataclass(frozen=True)
class StoreRate:
    batch_size: int
    store_ms: float  # median: one fenced store of a whole batch, uncontended
    records_per_s: float  # of one session, over every batch stored


def measure_turns(*, completions_per_turn: int, turns: int) -> KeyringTurns:
    """Time `turns` turns that each release `completions_per_turn` stored batches and claim
    as many (batches of one record each, as many in flight as one turn completes)."""
    run = plan_run(batch_size=1, max_in_flight=completions_per_turn)
    seconds: list[float] = []
    completed: list[int] = []
    try:
        for turn in range(WARM_UP_TURNS + turns):
            started = time.perf_counter()
            # One statement in autocommit, as a worker's dispatch runs it: one round trip.
            leases = backend().claim_batches(
                run_id=run.pk, ttl_seconds=LEASE_TTL_SECONDS, release_lease_ids=completed
            )
            if turn >= WARM_UP_TURNS:
                seconds.append(time.perf_counter() - started)
            if not leases:
                break
            # As if stored: what a release checks. No signature is written (see above).
            Batch.objects.filter(pk__in=[lease.batch_id for lease in leases]).update(
                status=Batch.Status.SIGNED, signed_at=Now()
            )
            completed = [lease.id for lease in leases]
    finally:
        cancel_run(run.pk)
    turn_ms = statistics.median(seconds) * 1000
    return KeyringTurns(
        completions_per_turn=completions_per_turn,
        turn_ms=round(turn_ms, 3),
        per_batch_ms=round(turn_ms / completions_per_turn, 3),
        ceiling_batches_per_s=round(completions_per_turn / (turn_ms / 1000), 1),
    )


def measure_store(*, batch_size: int, batches: int) -> StoreRate:
    """Time the fenced store of `batches` real batches of `batch_size` signatures."""
    run = plan_run(batch_size=batch_size, max_in_flight=1)
    seconds: list[float] = []
    stored = 0
    completed: list[int] = []
    try:
        for _ in range(batches):
            leases = backend().claim_batches(
                run_id=run.pk, ttl_seconds=LEASE_TTL_SECONDS, release_lease_ids=completed
            )
            if not leases:
                break
            [lease] = leases
            key = open_private_key(key_id=lease.key_id, kid=lease.kid)
            records = [row for page in _pages(lease.batch_id) for row in page]
            signatures = crypto.sign_records(key.private_key, records)
            started = time.perf_counter()
            store_signatures(lease.hint(), signatures=signatures)
            seconds.append(time.perf_counter() - started)
            stored += len(signatures)
            completed = [lease.id]
    finally:
        cancel_run(run.pk)
    store_ms = statistics.median(seconds) * 1000
    return StoreRate(
        batch_size=batch_size,
        store_ms=round(store_ms, 3),
        records_per_s=round(stored / sum(seconds), 1),
    )


def _pages(batch_id: int):
    batch = Batch.objects.only("first_record_id", "last_record_id").get(pk=batch_id)
    return unsigned_record_pages(
        first_record_id=batch.first_record_id, last_record_id=batch.last_record_id
    )
