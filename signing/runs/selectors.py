"""Reads of runs and their progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Exists, Max, Min, OuterRef, Q, Sum
from django.utils import timezone

from keyring.models import KeyLease
from records.models import Record, Signature
from signing.models import Batch, Checkpoint, SigningRun

# The follow figures cover this much time, up to now (or to the run's end).
FOLLOW_WINDOW = timedelta(minutes=1)
# At most this many signatures of the window are read for the latency: a sample, so a
# busy minute costs a page no more than a quiet one.
LATENCY_SAMPLE = 20_000


@dataclass(frozen=True, slots=True)
class RunProgress:
    run_id: int
    status: str
    follow: bool
    batch_size: int
    total_records: int
    signed_records: int
    total_batches: int
    batches_signed: int
    batches_in_flight: int
    batches_pending: int
    batches_failed: int
    # A cancelled run's batches it never signed: their rows keep the status `pending` (the
    # data contract's batch statuses are pending / leased / signed / failed; the run's
    # status says it ended), but nothing waits for them any more: their records are planned
    # again by the next run. Shown as "not signed (run cancelled)", never as pending.
    batches_cancelled: int
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
            "follow": self.follow,
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
            "batches_cancelled": self.batches_cancelled,
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
    cancelled = run.status == SigningRun.Status.CANCELLED
    return RunProgress(
        run_id=run.pk,
        status=run.status,
        follow=run.follow,
        batch_size=run.batch_size,
        total_records=run.record_count,
        signed_records=counts["signed_records"],
        total_batches=run.batch_count,
        batches_signed=counts["signed"],
        batches_in_flight=counts["leased"],
        batches_pending=0 if cancelled else counts["pending"],
        batches_failed=counts["failed"],
        batches_cancelled=counts["pending"] if cancelled else 0,
        keys_used=keys_used,
        started_at=run.started_at,
        finished_at=run.finished_at,
        failure_reason=run.failure_reason,
    )


@dataclass(frozen=True, slots=True)
class LeasesLeftOpen:
    """A run's leases still open that were granted before some moment: in embedded mode,
    the leases of the process that signed the run before this one took it over."""

    count: int
    last_expiry: datetime | None  # when the last of them expires (they may be extended)


def leases_left_open(run_id: int, *, granted_before: datetime) -> LeasesLeftOpen:
    """The run's open leases granted before `granted_before` (by the leases' own clock,
    signing.backends' clock()), with the latest expiry among them; one aggregate."""
    left = KeyLease.objects.filter(
        batch__run_id=run_id, released_at=None, acquired_at__lt=granted_before
    ).aggregate(count=Count("id"), last_expiry=Max("expires_at"))
    return LeasesLeftOpen(left["count"], left["last_expiry"])


def recent_runs(limit: int = 20) -> list[SigningRun]:
    return list(SigningRun.objects.select_related("audit").order_by("-id")[:limit])


@dataclass(frozen=True, slots=True)
class FollowActivity:
    """A follow run's last minute: records that arrived, what waits now, how long records
    took from arrival (`created_at`) to signature (`signed_at`), in milliseconds."""

    window_seconds: int
    arrivals: int
    waiting: int  # arrived, not cut into a batch yet
    backlog: int  # arrived, not signed yet: waiting plus the records of unsigned batches
    signed: int  # records signed in the window (the latency's sample is at most LATENCY_SAMPLE)
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    stop_requested_at: datetime | None

    def as_dict(self) -> dict[str, object]:
        return {
            "window_seconds": self.window_seconds,
            "arrivals": self.arrivals,
            "waiting": self.waiting,
            "backlog": self.backlog,
            "signed": self.signed,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "latency_max_ms": self.latency_max_ms,
            "stop_requested_at": self.stop_requested_at,
        }


def follow_activity(run: SigningRun) -> FollowActivity | None:
    """The follow figures of a follow run (None for an ordinary run), over the minute up to
    now, or up to its end once it has finished.

    Arrivals are read among the records after the first one cut in the window (ids grow
    with time), so the read is a minute of records, not the table.
    """
    if not run.follow:
        return None
    end = run.finished_at or timezone.now()
    since = end - FOLLOW_WINDOW
    batches = Batch.objects.filter(run_id=run.pk)
    first_cut = batches.filter(created_at__gte=since).aggregate(first=Min("first_record_id"))
    low = first_cut["first"] or run.followed_through + 1
    arrived = Record.objects.filter(id__gte=low, created_at__gte=since, created_at__lte=end)
    if not run.is_following:  # records after the stop were not the run's
        arrived = arrived.filter(id__lte=run.followed_through)
    waiting = 0
    if run.is_following:
        signed = Signature.objects.filter(record_id=OuterRef("pk"))
        waiting = Record.objects.filter(id__gt=run.followed_through).exclude(Exists(signed)).count()
    unsigned = batches.filter(status__in=[Batch.Status.PENDING, Batch.Status.LEASED])
    in_batches = unsigned.aggregate(records=Sum("size", default=0))["records"]
    latencies = sorted(
        (signed_at - created_at).total_seconds() * 1000
        # A signature's signed_at is its batch's: found through the batches signed in the
        # window (indexed by batch), not by a scan of every signature.
        for signed_at, created_at in Signature.objects.filter(
            batch__run_id=run.pk, batch__signed_at__gte=since, batch__signed_at__lte=end
        ).values_list("signed_at", "record__created_at")[:LATENCY_SAMPLE]
    )
    return FollowActivity(
        window_seconds=int(FOLLOW_WINDOW.total_seconds()),
        arrivals=arrived.count(),
        waiting=waiting,
        backlog=waiting + in_batches,
        signed=len(latencies),
        latency_p50_ms=_percentile(latencies, 0.50),
        latency_p99_ms=_percentile(latencies, 0.99),
        latency_max_ms=round(latencies[-1], 1) if latencies else None,
        stop_requested_at=run.stop_requested_at,
    )


def _percentile(ordered: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of an ordered list, or None if it is empty."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil, at least the first
    return round(ordered[int(rank) - 1], 1)


@dataclass(frozen=True, slots=True)
class LatestCheckpoint:
    """A follow run's latest signed checkpoint, as the API and the run page show it."""

    batches: int
    merkle_root: str  # hex
    kid: str
    signed_at: datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "batches": self.batches,
            "merkle_root": self.merkle_root,
            "kid": self.kid,
            "signed_at": self.signed_at.isoformat(),
        }


def latest_checkpoint(run: SigningRun) -> LatestCheckpoint | None:
    """The checkpoint over the most batches of a follow run (one index probe on its unique
    (run, batches)); None for an ordinary run, or before the first is signed."""
    if not run.follow:
        return None
    row = (
        Checkpoint.objects.filter(run=run)
        .order_by("-batches")
        .values_list("batches", "merkle_root", "key__kid", "signed_at")
        .first()
    )
    if row is None:
        return None
    batches, root, kid, signed_at = row
    return LatestCheckpoint(batches, bytes(root).hex(), kid, signed_at)
