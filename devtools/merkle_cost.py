"""What a batch's Merkle root costs the worker (issue 18, point 5).

Two figures, both in this one process:

- against signing alone (`measure`): `kernel.crypto.sign_records` over seeded-like payloads
  (16 to 256 characters), as a worker signs a page, against what signing.runs.store adds on
  the hot path: the signatures just made split into the statement's arrays, then
  `batch_root` over them. Each pair is timed `repeat` times, alternating, and the medians
  kept, so a neighbour's burst on a shared machine moves a sample, not the figure.
- against the worker's whole batch (`measure_hot_path`): `sign_batch` on a database of its
  own (take-up, read, sign, store), batch after batch of one run, with `batch_root` timed
  inside it: the root's share of the time the worker spends per batch.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kernel import crypto
from keyring import sealing
from records.services import random_payloads
from signing.audit.roots import batch_root
from signing.backends import backend
from signing.runs import store
from signing.runs.dispatch import finish_run, plan_run
from signing.runs.seeding import seed_database
from signing.runs.services import sign_batch


@dataclass(frozen=True, slots=True)
class MerkleCost:
    label: str
    batch_size: int
    samples: int
    base_seconds: float  # median per batch: signing, or the worker's whole batch
    root_seconds: float  # median per batch

    @property
    def overhead_percent(self) -> float:
        """The root's time as a share of the base's."""
        return 100.0 * self.root_seconds / self.base_seconds


def measure(*, algorithm: str, batch_size: int, repeat: int, seed: int = 18) -> MerkleCost:
    """The root of a batch's signatures against signing the batch."""
    private_key = crypto.generate_private_key(algorithm)
    payloads = random_payloads(batch_size, rng=random.Random(seed))
    records = [(record_id, payload) for record_id, payload in enumerate(payloads, start=1)]
    signed = crypto.sign_records(private_key, records)
    sign_samples, root_samples = [], []
    for _ in range(repeat):
        sign_samples.append(_timed(lambda: crypto.sign_records(private_key, records)))
        root_samples.append(_timed(lambda: _root_as_the_store_computes_it(signed)))
    return MerkleCost(
        label=f"{algorithm}, root / signing",
        batch_size=batch_size,
        samples=repeat,
        base_seconds=statistics.median(sign_samples),
        root_seconds=statistics.median(root_samples),
    )


def _root_as_the_store_computes_it(signed: list[crypto.SignedRecord]) -> bytes:
    record_ids = [one.record_id for one in signed]
    raw = [one.signature for one in signed]
    return batch_root(zip(record_ids, raw, strict=True))


def measure_hot_path(*, batch_size: int, batches: int) -> MerkleCost:
    """sign_batch per batch, and batch_root's part of it, over `batches` batches of one run.

    Resets the database (the caller asked first) and seeds it with the records needed.
    """
    seed_database(
        records=batch_size * batches,
        keys=2,
        kek=sealing.kek_from_environment(),
        reset=True,
        payload_seed=7,
    )
    run = plan_run(batch_size=batch_size, max_in_flight=1)
    root_samples: list[float] = []
    timed_root = _timing(batch_root, root_samples)
    original = store.batch_root
    store.batch_root = timed_root
    try:
        batch_samples = []
        released: list[int] = []
        for _ in range(batches):
            [lease] = backend().claim_batches(
                run_id=run.pk, ttl_seconds=120, release_lease_ids=released
            )
            batch_samples.append(_timed(lambda lease=lease: sign_batch(lease.hint())))
            released = [lease.id]
        backend().claim_batches(run_id=run.pk, ttl_seconds=120, release_lease_ids=released)
        finish_run(run.pk)
    finally:
        store.batch_root = original
    first = 1 if batches > 1 else 0  # the first batch unseals the key: not a steady batch
    return MerkleCost(
        label="root / the worker's whole batch (sign_batch)",
        batch_size=batch_size,
        samples=batches - first,
        base_seconds=statistics.median(batch_samples[first:]),
        root_seconds=statistics.median(root_samples[first:]),
    )


def _timing(
    function: Callable[[Iterable[tuple[int, bytes]]], bytes], samples: list[float]
) -> Callable[[Iterable[tuple[int, bytes]]], bytes]:
    def timed(signatures: Iterable[tuple[int, bytes]]) -> bytes:
        started = time.perf_counter()
        try:
            return function(signatures)
        finally:
            samples.append(time.perf_counter() - started)

    return timed


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started
