"""Reads that draw a run: its key lease timeline and its throughput, as SVG coordinates.

Coordinates are computed here so templates only place shapes (and hold no queries). The
drawing is 1000 units wide; x is time from the run's start to its end (or now).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import (
    BigIntegerField,
    Case,
    Count,
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from keyring.models import KeyLease
from signing.models import Batch, SigningRun

WIDTH = 1000
ROW_HEIGHT = 12
CHART_HEIGHT = 160


@dataclass(frozen=True, slots=True)
class LeaseBar:
    x: float
    width: float
    title: str
    state: str  # completed / expired / failed / held
    # A summary segment is drawn as opaque as the share of its span its key was leased.
    opacity: float = 1.0


@dataclass(frozen=True, slots=True)
class KeyRow:
    kid: str
    y: int
    bars: list[LeaseBar]


@dataclass(frozen=True, slots=True)
class Timeline:
    rows: list[KeyRow]
    height: int
    seconds: float
    lease_count: int
    expired_count: int
    # True when the run had more leases than SIGNING_TIMELINE_MAX_LEASES: each bar is then
    # one key's leases in one slice of the run, not one lease.
    summary: bool = False
    segment_count: int = 0


def _span(run: SigningRun) -> tuple[datetime, float]:
    start = run.started_at or run.created_at
    end = run.finished_at or timezone.now()
    return start, max((end - start).total_seconds(), 1e-3)


def lease_timeline(
    run: SigningRun, *, max_leases: int | None = None, max_segments: int | None = None
) -> Timeline:
    """One row per key the run leased, in order of first use; one bar per lease, or, for a
    run with more than `max_leases` leases, one bar per key per slice of the run.

    Either way the page is bounded: at most `max_leases` bars, or at most `max_segments`
    (one per key if the run used more keys than that) read by one GROUP BY, so a run of
    100,000 leases costs the database one pass over them and the page a few hundred KB.
    """
    max_leases = settings.SIGNING_TIMELINE_MAX_LEASES if max_leases is None else max_leases
    max_segments = settings.SIGNING_TIMELINE_MAX_SEGMENTS if max_segments is None else max_segments
    leases = KeyLease.objects.filter(batch__run=run)
    shape = leases.aggregate(
        count=Count("id"),
        first_id=Min("id"),
        last_id=Max("id"),
        keys=Count("key_id", distinct=True),
        expired=Count("id", filter=Q(outcome=KeyLease.Outcome.EXPIRED)),
    )
    if shape["count"] > max_leases:
        return _summary_timeline(run, leases, shape, max_segments=max_segments)
    start, seconds = _span(run)
    now = timezone.now()
    rows: dict[str, list[LeaseBar]] = {}
    every_lease = leases.order_by("acquired_at", "id").values(
        "id",
        "token",
        "acquired_at",
        "released_at",
        "outcome",
        kid=F("key__kid"),
        seq=F("batch__seq"),
    )
    for lease in every_lease:
        left = (lease["acquired_at"] - start).total_seconds() / seconds * WIDTH
        right = ((lease["released_at"] or now) - start).total_seconds() / seconds * WIDTH
        state = lease["outcome"] or "held"
        rows.setdefault(lease["kid"], []).append(
            LeaseBar(
                x=round(max(left, 0.0), 2),
                width=round(max(right - left, 0.8), 2),
                title=(
                    f"{lease['kid']} · batch #{lease['seq']} · token {lease['token']} · "
                    f"lease {lease['id']} · {state}"
                ),
                state=state,
            )
        )
    return _timeline(rows, seconds=seconds, lease_count=shape["count"], shape=shape)


def _summary_timeline(
    run: SigningRun, leases: QuerySet[KeyLease], shape: dict[str, int], *, max_segments: int
) -> Timeline:
    """The run cut into slices of consecutive leases (by id: leases are granted one at a
    time under the keyring lock, so id order is time order), one bar per key per slice,
    from its first lease's start to its last one's end; how much of that its key was
    leased sets the bar's opacity. Integer arithmetic on ids, so SQLite runs it too."""
    start, seconds = _span(run)
    now = Value(timezone.now(), output_field=DateTimeField())
    slices = max(1, max_segments // max(shape["keys"], 1))
    span = shape["last_id"] - shape["first_id"] + 1
    chunk = ExpressionWrapper(
        (F("id") - shape["first_id"]) * slices / span, output_field=BigIntegerField()
    )
    ended = Coalesce("released_at", now)
    outcome = KeyLease.Outcome
    segments = (
        leases.annotate(chunk=chunk)
        .values("key__kid", "chunk")
        .annotate(
            first=Min("acquired_at"),
            last=Max(ended),
            leases=Count("id"),
            expired=Count("id", filter=Q(outcome=outcome.EXPIRED)),
            failed=Count("id", filter=Q(outcome=outcome.FAILED)),
            held=Count("id", filter=Q(released_at=None)),
            busy=Sum(ExpressionWrapper(ended - F("acquired_at"), output_field=DurationField())),
        )
        .order_by("first")
    )
    rows: dict[str, list[LeaseBar]] = {}
    for segment in segments:
        left = (segment["first"] - start).total_seconds()
        right = (segment["last"] - start).total_seconds()
        length = max(right - left, 1e-6)
        busy = min(segment["busy"].total_seconds() / length, 1.0) if segment["busy"] else 0.0
        state = next((name for name in ("expired", "failed", "held") if segment[name]), "completed")
        problems = ", ".join(
            f"{segment[name]} {name}" for name in ("expired", "failed", "held") if segment[name]
        )
        rows.setdefault(segment["key__kid"], []).append(
            LeaseBar(
                x=round(max(left / seconds * WIDTH, 0.0), 2),
                width=round(max(length / seconds * WIDTH, 0.8), 2),
                title=(
                    f"{segment['key__kid']} · {segment['leases']:,} leases"
                    f"{f' ({problems})' if problems else ''} · {left:.1f} to {right:.1f} s · "
                    f"leased {busy:.0%} of that time"
                ),
                state=state,
                opacity=round(max(busy, 0.2), 2),
            )
        )
    return _timeline(rows, seconds=seconds, lease_count=shape["count"], shape=shape, summary=True)


def _timeline(
    rows: dict[str, list[LeaseBar]],
    *,
    seconds: float,
    lease_count: int,
    shape: dict[str, int],
    summary: bool = False,
) -> Timeline:
    key_rows = [
        KeyRow(kid=kid, y=index * ROW_HEIGHT, bars=bars)
        for index, (kid, bars) in enumerate(rows.items())
    ]
    return Timeline(
        rows=key_rows,
        height=max(len(key_rows), 1) * ROW_HEIGHT,
        seconds=round(seconds, 2),
        lease_count=lease_count,
        expired_count=shape["expired"],
        summary=summary,
        segment_count=sum(len(bars) for bars in rows.values()),
    )


@dataclass(frozen=True, slots=True)
class Throughput:
    points: str  # an SVG polyline's points
    peak: float
    buckets: int
    height: int = CHART_HEIGHT


def throughput(run: SigningRun, *, max_buckets: int = 60) -> Throughput:
    """Records signed per second over the run, from when each batch was stored.

    Buckets are at least half a second wide, so a short run is not drawn as spikes. The
    database sums each bucket (one row per bucket, not one per batch: a run at batch size 10
    has 100,000 batches per million records); a batch stored before the run's start counts
    in the first bucket, one after its end in the last.
    """
    start, seconds = _span(run)
    buckets = min(max_buckets, max(5, int(seconds / 0.5)))
    width = seconds / buckets
    counts = [0] * buckets
    bucket = Case(
        *[
            When(signed_at__lt=start + timedelta(seconds=width * (index + 1)), then=Value(index))
            for index in range(buckets - 1)
        ],
        default=Value(buckets - 1),
    )
    signed = Batch.objects.filter(run=run, status=Batch.Status.SIGNED, signed_at__isnull=False)
    for index, size in (
        signed.annotate(bucket=bucket).values("bucket").annotate(size=Sum("size")).order_by()
    ).values_list("bucket", "size"):
        counts[index] += size
    rates = [count / width for count in counts]
    peak = max(rates, default=0.0) or 1.0
    step = WIDTH / buckets
    scale = (CHART_HEIGHT - 8) / peak
    points = " ".join(
        f"{round(i * step + step / 2, 1)},{round(CHART_HEIGHT - rate * scale, 1)}"
        for i, rate in enumerate(rates)
    )
    return Throughput(points=points, peak=round(max(rates, default=0.0)), buckets=buckets)
