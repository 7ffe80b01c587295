"""Reads that draw a run: its key lease timeline and its throughput, as SVG coordinates.

Coordinates are computed here so templates only place shapes (and hold no queries). The
drawing is 1000 units wide; x is time from the run's start to its end (or now).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import F
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


def _span(run: SigningRun) -> tuple[datetime, float]:
    start = run.started_at or run.created_at
    end = run.finished_at or timezone.now()
    return start, max((end - start).total_seconds(), 1e-3)


def lease_timeline(run: SigningRun) -> Timeline:
    """One row per key the run leased, in order of first use; one bar per lease."""
    start, seconds = _span(run)
    now = timezone.now()
    leases = (
        KeyLease.objects.filter(batch__run=run)
        .order_by("acquired_at", "id")
        .values(
            "id",
            "token",
            "acquired_at",
            "released_at",
            "outcome",
            kid=F("key__kid"),
            seq=F("batch__seq"),
        )
    )
    rows: dict[str, list[LeaseBar]] = {}
    expired = 0
    for lease in leases:
        left = (lease["acquired_at"] - start).total_seconds() / seconds * WIDTH
        right = ((lease["released_at"] or now) - start).total_seconds() / seconds * WIDTH
        state = lease["outcome"] or "held"
        expired += state == KeyLease.Outcome.EXPIRED
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
    key_rows = [
        KeyRow(kid=kid, y=index * ROW_HEIGHT, bars=bars)
        for index, (kid, bars) in enumerate(rows.items())
    ]
    return Timeline(
        rows=key_rows,
        height=max(len(key_rows), 1) * ROW_HEIGHT,
        seconds=round(seconds, 2),
        lease_count=sum(len(bars) for bars in rows.values()),
        expired_count=expired,
    )


@dataclass(frozen=True, slots=True)
class Throughput:
    points: str  # an SVG polyline's points
    peak: float
    buckets: int
    height: int = CHART_HEIGHT


def throughput(run: SigningRun, *, max_buckets: int = 60) -> Throughput:
    """Records signed per second over the run, from when each batch was stored.

    Buckets are at least half a second wide, so a short run is not drawn as spikes.
    """
    start, seconds = _span(run)
    buckets = min(max_buckets, max(5, int(seconds / 0.5)))
    width = seconds / buckets
    counts = [0] * buckets
    signed = Batch.objects.filter(run=run, status=Batch.Status.SIGNED, signed_at__isnull=False)
    for signed_at, size in signed.values_list("signed_at", "size"):
        index = int((signed_at - start).total_seconds() / width)
        counts[min(max(index, 0), buckets - 1)] += size
    rates = [count / width for count in counts]
    peak = max(rates, default=0.0) or 1.0
    step = WIDTH / buckets
    scale = (CHART_HEIGHT - 8) / peak
    points = " ".join(
        f"{round(i * step + step / 2, 1)},{round(CHART_HEIGHT - rate * scale, 1)}"
        for i, rate in enumerate(rates)
    )
    return Throughput(points=points, peak=round(max(rates, default=0.0)), buckets=buckets)
