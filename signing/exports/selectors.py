"""What an export reads: the runs' signed batches, and each batch's signatures page by page.

Signatures are append-only and a batch's are stored whole, in the statement that marks it
signed (signing/runs/store.py). So a batch read as signed here has all its signatures, and
they never change: the export needs no long transaction to be consistent, even while a run
goes on signing (a follow run, or another run started meanwhile). The list of batches is
taken once, at the start; a batch signed after that is in the next export.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from records.models import Signature
from signing.models import Batch, Checkpoint, SigningRun

PAGE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class BatchToExport:
    id: int
    seq: int
    first_record_id: int
    last_record_id: int
    merkle_root: bytes | None  # as stored when signed; None if signed before roots existed


@dataclass(frozen=True, slots=True)
class CheckpointToExport:
    batches: int
    merkle_root: bytes
    key_id: int
    signature: bytes
    signed_at: datetime


@dataclass(frozen=True, slots=True)
class RunToExport:
    id: int
    status: str
    batch_size: int
    merkle_root: bytes | None  # as stored when completed; None before that
    batches: list[BatchToExport]  # signed ones only, in seq order
    checkpoints: list[CheckpointToExport] = field(default_factory=list)  # by batches


@dataclass(frozen=True, slots=True)
class SignedRow:
    record_id: int
    payload: str
    signature: bytes
    key_id: int
    signed_at: datetime


def runs_to_export(run_id: int | None = None) -> list[RunToExport]:
    """Every run (or the one named), oldest first, with its signed batches in seq order.

    A run's other batches (pending, leased or failed: a cancelled or failed run, a run still
    going) hold no signature, so they are left out; a run with no signed batch still is
    listed, with none.

    A follow run's checkpoints are read first: each covers batches signed before it was
    made, so all of them are among the signed batches read next."""
    runs = SigningRun.objects.order_by("id")
    if run_id is not None:
        runs = runs.filter(pk=run_id)
    checkpoints: dict[int, list[CheckpointToExport]] = {}
    made = Checkpoint.objects.order_by("run_id", "batches").values_list(
        "run_id", "batches", "merkle_root", "key_id", "signature", "signed_at"
    )
    if run_id is not None:
        made = made.filter(run_id=run_id)
    for run, count, root, key_id, signature, signed_at in made:
        checkpoints.setdefault(run, []).append(
            CheckpointToExport(count, bytes(root), key_id, bytes(signature), signed_at)
        )
    batches: dict[int, list[BatchToExport]] = {}
    signed = (
        Batch.objects.filter(status=Batch.Status.SIGNED)
        .order_by("run_id", "seq")
        .values_list("run_id", "id", "seq", "first_record_id", "last_record_id", "merkle_root")
    )
    if run_id is not None:
        signed = signed.filter(run_id=run_id)
    for run, *batch, root in signed.iterator(chunk_size=PAGE_SIZE):
        batches.setdefault(run, []).append(BatchToExport(*batch, _bytes(root)))
    return [
        RunToExport(
            id=run.pk,
            status=run.status,
            batch_size=run.batch_size,
            merkle_root=_bytes(run.merkle_root),
            batches=batches.get(run.pk, []),
            checkpoints=checkpoints.get(run.pk, []),
        )
        for run in runs.only("id", "status", "batch_size", "merkle_root")
    ]


def _bytes(value: bytes | memoryview | None) -> bytes | None:
    return None if value is None else bytes(value)


def signature_count(runs: list[RunToExport]) -> int:
    """How many signatures the runs' signed batches hold (the progress bar's total)."""
    batch_ids = [batch.id for run in runs for batch in run.batches]
    total = 0
    for start in range(0, len(batch_ids), 500):  # a bounded IN list, on SQLite too
        total += Signature.objects.filter(batch_id__in=batch_ids[start : start + 500]).count()
    return total


def batch_signatures(batch: BatchToExport) -> Iterator[tuple[int, bytes]]:
    """The batch's (record id, signature) in record id order, a page at a time: the leaves."""
    for page in _pages(batch, ("record_id", "signature")):
        for record_id, signature in page:
            yield record_id, bytes(signature)


def batch_signed_rows(batch: BatchToExport) -> Iterator[SignedRow]:
    """The batch's signatures with their records' payloads, in record id order, paged."""
    columns = ("record_id", "record__payload", "signature", "key_id", "signed_at")
    for page in _pages(batch, columns):
        for record_id, payload, signature, key_id, signed_at in page:
            yield SignedRow(record_id, payload, bytes(signature), key_id, signed_at)


def _pages(batch: BatchToExport, columns: tuple[str, ...]) -> Iterator[list[tuple]]:
    # Keyset pages over the primary key, inside the batch's id range (its record ids lie
    # there, signature_in_batch says so), so each page is a short index range scan.
    after = batch.first_record_id - 1
    while True:
        page = list(
            Signature.objects.filter(
                batch_id=batch.id, record_id__gt=after, record_id__lte=batch.last_record_id
            )
            .order_by("record_id")
            .values_list(*columns)[:PAGE_SIZE]
        )
        if page:
            yield page
        if len(page) < PAGE_SIZE:
            return
        after = page[-1][0]
