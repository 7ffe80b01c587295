"""Prometheus metrics at ``/metrics``: what a run is doing, read from the tables at scrape time.

The database is the truth (docs/architecture.md), and every worker process writes to it, so
the figures are computed there on each scrape rather than kept in per-process counters that
would need a multiprocess directory and would be lost when a worker is killed. A scrape is
five aggregate queries whatever the number of rows: it is scraped every few seconds while a
run signs 100,000 records. Each query sees the tables at its own instant (read committed), so
two figures may be a few batches apart; the next scrape catches up.

Only counts leave this module: never a kid, a key, a payload, a signature or a token, so
scrapers need no login. What a scrape may cost is bounded all the same (issue 15): the text is
cached for SIGNING_METRICS_CACHE_SECONDS, so a burst of scrapes costs one set of queries per
process (per deployment with a shared cache) per interval, and a scrape from outside
SIGNING_METRICS_ALLOWED_NETWORKS, or without SIGNING_METRICS_TOKEN when one is set, is
refused before any query runs.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from datetime import timedelta
from functools import lru_cache
from typing import Any, Final

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db.models import Case, Count, DurationField, F, Q, Sum, Value, When
from django.db.models.functions import Greatest
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from keyring.models import KeyLease
from records.selectors import record_totals
from signing.models import Batch, SigningRun

# The `status` label of the batch counts: the data contract's batch statuses, and
# `cancelled` for a cancelled run's pending batches (_batch_states), which wait for nothing.
BATCH_STATES: Final = (*Batch.Status.values, "cancelled")

# Upper bounds, in seconds, of the batch duration histogram (+Inf is added). A batch of 1,000
# Ed25519 records takes tens of milliseconds; one of 100,000 takes seconds.
BATCH_DURATION_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class SigningCollector:
    """Builds every metric family from a handful of aggregate queries, once per scrape."""

    def collect(self) -> Iterator[Metric]:
        totals = record_totals()
        leases = _lease_counts()
        run = _current_run()
        batches = _batch_figures(run_id=run["id"] if run else None)

        yield CounterMetricFamily(
            "signing_signatures_written_total",
            "Signatures stored (rows of records_signature); falls only when `seed --reset` "
            "empties the tables.",
            value=totals["signed"],
        )
        yield GaugeMetricFamily(
            "signing_records", "Records in the database, signed or not.", totals["records"]
        )
        yield GaugeMetricFamily(
            "signing_records_signed",
            "Records in the database that have their signature.",
            totals["signed"],
        )

        by_status = GaugeMetricFamily(
            "signing_batches",
            "Batches of every run by status: pending (waiting for a key), leased (being "
            "signed), signed, failed (gave up after SIGNING_MAX_ATTEMPTS leases), cancelled "
            "(a cancelled run's batches it did not sign: their records wait for the next "
            "run; the batch rows keep the status pending).",
            labels=["status"],
        )
        for status in BATCH_STATES:
            by_status.add_metric([status], batches[f"batches_{status}"])
        yield by_status
        yield _duration_histogram(batches)

        yield GaugeMetricFamily(
            "signing_active_leases", "Key leases held now (released_at is null).", leases["active"]
        )
        yield CounterMetricFamily(
            "signing_expired_leases_total",
            "Key leases closed because their time ran out (a worker died, stalled or lost its "
            "message); each hands its unsigned batch back to be leased again.",
            value=leases["expired"],
        )
        released = CounterMetricFamily(
            "signing_leases_released_total",
            "Key leases closed, by outcome: completed (batch stored), expired, failed (the "
            "attempt failed, or its run was cancelled).",
            labels=["outcome"],
        )
        for outcome in KeyLease.Outcome.values:
            released.add_metric([outcome], leases[outcome])
        yield released

        if run is not None:
            yield from _run_metrics(run, batches)


def _lease_counts() -> dict[str, int]:
    """Open leases and closed ones by outcome, in one pass over the lease history."""
    return KeyLease.objects.aggregate(
        active=Count("id", filter=Q(released_at=None)),
        **{outcome: Count("id", filter=Q(outcome=outcome)) for outcome in KeyLease.Outcome.values},
    )


def _current_run() -> dict[str, Any] | None:
    """The active run if there is one, else the latest: the run a dashboard would follow."""
    active_first = Case(
        When(status__in=SigningRun.ACTIVE_STATUSES, then=Value(0)), default=Value(1)
    )
    return (
        SigningRun.objects.order_by(active_first, "-id")
        .values("id", "status", "batch_size", "record_count")
        .first()
    )


def _batch_figures(*, run_id: int | None) -> dict[str, Any]:
    """Batch counts by status, the duration histogram and one run's progress, in one pass
    over the batches: every figure is a ``count(…) FILTER (WHERE …)`` in PostgreSQL.

    A batch's duration is ``signed_at - leased_at``, its last lease to its store, both from
    the database's clock (PostgreSQL's clock_timestamp(); embedded mode's process clock). A
    negative difference cannot happen there; it would count as zero, never as a negative
    bucket. A signed batch without ``leased_at`` has no
    duration and is left out of the histogram.
    """
    signed = Q(status=Batch.Status.SIGNED)
    timed = signed & Q(leased_at__isnull=False, signed_at__isnull=False)
    aggregates: dict[str, Any] = {}
    for state, which in _batch_states().items():
        aggregates[f"batches_{state}"] = Count("id", filter=which)
        aggregates[f"run_batches_{state}"] = Count("id", filter=which & Q(run_id=run_id))
    for index, bound in enumerate(BATCH_DURATION_BUCKETS):
        aggregates[f"le_{index}"] = Count(
            "id", filter=timed & Q(duration__lte=timedelta(seconds=bound))
        )
    aggregates["timed"] = Count("id", filter=timed)
    aggregates["seconds"] = Sum("duration", filter=timed)
    aggregates["run_signed_records"] = Sum("size", filter=signed & Q(run_id=run_id), default=0)
    duration = Greatest(
        F("signed_at") - F("leased_at"), Value(timedelta(0)), output_field=DurationField()
    )
    return Batch.objects.annotate(duration=duration).aggregate(**aggregates)


def _batch_states() -> dict[str, Q]:
    """Which batches each BATCH_STATES label counts. A cancelled run's batches keep the
    status pending in the table (the data contract's statuses), but nothing waits for
    them: they are counted as cancelled, never as pending."""
    of_cancelled_run = Q(run__status=SigningRun.Status.CANCELLED)
    states = {status: Q(status=status) for status in Batch.Status.values}
    states[Batch.Status.PENDING] &= ~of_cancelled_run
    states["cancelled"] = Q(status=Batch.Status.PENDING) & of_cancelled_run
    return states


def _duration_histogram(batches: dict[str, Any]) -> HistogramMetricFamily:
    buckets = [
        (floatToGoString(bound), batches[f"le_{index}"])
        for index, bound in enumerate(BATCH_DURATION_BUCKETS)
    ]
    buckets.append(("+Inf", batches["timed"]))
    seconds: timedelta | None = batches["seconds"]
    return HistogramMetricFamily(
        "signing_batch_duration_seconds",
        "Seconds from a signed batch's last lease to its signatures being stored "
        "(signed_at - leased_at), over every run.",
        buckets=buckets,
        sum_value=seconds.total_seconds() if seconds else 0.0,
    )


def _run_metrics(run: dict[str, Any], batches: dict[str, Any]) -> Iterator[Metric]:
    """The progress of the run _current_run chose, named by signing_run_info's labels."""
    yield GaugeMetricFamily(
        "signing_run_records",
        "Records the current run (the active one, else the latest) planned to sign.",
        run["record_count"],
    )
    yield GaugeMetricFamily(
        "signing_run_records_signed",
        "Records of the current run in its signed batches.",
        batches["run_signed_records"],
    )
    by_status = GaugeMetricFamily(
        "signing_run_batches",
        "Batches of the current run by status (see signing_batches).",
        labels=["status"],
    )
    for status in BATCH_STATES:
        by_status.add_metric([status], batches[f"run_batches_{status}"])
    yield by_status
    yield InfoMetricFamily(
        "signing_run",
        "The current run (the active one, else the latest); always 1.",
        value={
            "run_id": str(run["id"]),
            "status": run["status"],
            "batch_size": str(run["batch_size"]),
        },
    )


# A registry of our own: prometheus_client's global one would add this web process's
# Python and process metrics, which say nothing about the workers that do the signing.
registry: Final = CollectorRegistry()
registry.register(SigningCollector())


CACHE_KEY: Final = "signing.ops.metrics.exposition"
# One scrape at a time computes the text in this process; the others wait for it and read it
# from the cache, so a burst arriving together still costs one set of queries.
_computing = threading.Lock()


@login_not_required  # scrapers do not log in; only counts are shown
@require_GET
@never_cache  # for the scraper: every scrape asks again (the server's cache is ours)
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus text exposition of `registry`, at most SIGNING_METRICS_CACHE_SECONDS old."""
    if not _address_allowed(request.META.get("REMOTE_ADDR", "")):
        return HttpResponse("403 Forbidden: not an allowed network\n", status=403)
    if settings.SIGNING_METRICS_TOKEN and not _bearer_matches(request):
        response = HttpResponse("401 Unauthorized: a bearer token is required\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def exposition() -> bytes:
    """The metrics text: from the cache when fresh, else computed once and cached."""
    seconds = settings.SIGNING_METRICS_CACHE_SECONDS
    if not seconds:
        return generate_latest(registry)
    text = cache.get(CACHE_KEY)
    if text is None:
        with _computing:
            text = cache.get(CACHE_KEY)  # another thread may have computed it meanwhile
            if text is None:
                text = generate_latest(registry)
                cache.set(CACHE_KEY, text, timeout=seconds)
    return text


def _address_allowed(address: str) -> bool:
    networks = _networks(settings.SIGNING_METRICS_ALLOWED_NETWORKS)
    if networks is None:
        return True
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # no IPv6 zone id
    except ValueError:
        return False  # no address (a unix socket without a proxy header): not allowed
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks if network.version == ip.version)


@lru_cache(maxsize=4)
def _networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    """The allowed networks, or None when "*" allows any address (checked in settings)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if "*" in parts:
        return None
    return tuple(ipaddress.ip_network(part, strict=False) for part in parts)


def _bearer_matches(request: HttpRequest) -> bool:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and constant_time_compare(
        token.strip(), settings.SIGNING_METRICS_TOKEN
    )
