"""Reads of runs and their progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, Sum
from django.utils import timezone

from keyring.models import KeyLease
from signing.models import Batch, SigningRun


@dataclass(frozen=True, slots=True)
class RunProgress:
    run_id: int
    status: str
    batch_size: int
    total_records: int
    signed_records: int
    total_batches: int
    batches_signed: int
    batches_in_flight: int
    batches_pending: int
    batches_failed: int
    keys_used: int
    started_at: datetime | None
    finished_at: datetime | None
    failure_reason: str

    @property
    def finished(self) -> bool:
        return self.status in SigningRun.FINISHED_STATUSES

    @property
    def seconds(self) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at or timezone.now()
        return max((end - self.started_at).total_seconds(), 0.0)

    @property
    def records_per_second(self) -> float:
        return self.signed_records / self.seconds if self.seconds else 0.0

    @property
    def percent(self) -> float:
        if not self.total_records:
            return 100.0 if self.finished else 0.0
        return round(100.0 * self.signed_records / self.total_records, 1)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate, or None when unknown or finished."""
        rate = self.records_per_second
        if self.finished or not rate:
            return None
        return round((self.total_records - self.signed_records) / rate, 1)

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "finished": self.finished,
            "batch_size": self.batch_size,
            "total_records": self.total_records,
            "signed_records": self.signed_records,
            "percent": self.percent,
            "total_batches": self.total_batches,
            "batches_signed": self.batches_signed,
            "batches_in_flight": self.batches_in_flight,
            "batches_pending": self.batches_pending,
            "batches_failed": self.batches_failed,
            "keys_used": self.keys_used,
            "seconds": round(self.seconds, 2),
            "records_per_second": round(self.records_per_second, 1),
            "eta_seconds": self.eta_seconds,
            "failure_reason": self.failure_reason,
        }


def active_run() -> SigningRun | None:
    return SigningRun.objects.filter(status__in=SigningRun.ACTIVE_STATUSES).first()


def run_progress(run_id: int) -> RunProgress:
    return progress_of(SigningRun.objects.get(pk=run_id))


def progress_of(run: SigningRun) -> RunProgress:
    """Progress of a run already loaded (a page or serializer has it: no second read)."""
    run_id = run.pk
    status = Batch.Status
    counts = Batch.objects.filter(run_id=run_id).aggregate(
        signed_records=Sum("size", filter=Q(status=status.SIGNED), default=0),
        signed=Count("id", filter=Q(status=status.SIGNED)),
        leased=Count("id", filter=Q(status=status.LEASED)),
        pending=Count("id", filter=Q(status=status.PENDING)),
        failed=Count("id", filter=Q(status=status.FAILED)),
    )
    keys_used = (
        KeyLease.objects.filter(batch__run_id=run_id, outcome=KeyLease.Outcome.COMPLETED)
        .values("key_id")
        .distinct()
        .count()
    )
    return RunProgress(
        run_id=run.pk,
        status=run.status,
        batch_size=run.batch_size,
        total_records=run.record_count,
        signed_records=counts["signed_records"],
        total_batches=run.batch_count,
        batches_signed=counts["signed"],
        batches_in_flight=counts["leased"],
        batches_pending=counts["pending"],
        batches_failed=counts["failed"],
        keys_used=keys_used,
        started_at=run.started_at,
        finished_at=run.finished_at,
        failure_reason=run.failure_reason,
    )


def recent_runs(limit: int = 20) -> list[SigningRun]:
    return list(SigningRun.objects.select_related("audit").order_by("-id")[:limit])
