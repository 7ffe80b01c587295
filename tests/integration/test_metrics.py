"""The Prometheus endpoint: exact figures from the tables, a fixed number of queries, no secrets.

The view is called directly (RequestFactory) and, through the middleware stack, via this
module's own urlconf, so the tests do not depend on the site's routes.
"""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.test import Client, RequestFactory
from django.urls import path
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from keyring.leases import GrantedLease
from keyring.models import KeyLease, SigningKey
from records.models import Record, Signature
from signing.models import Batch, SigningRun
from signing.ops.metrics import BATCH_DURATION_BUCKETS, metrics_view
from signing.runs.dispatch import cancel_run, plan_run
from signing.runs.leases import release_lease
from signing.runs.recovery import return_batch
from tests.conftest import seed
from tests.integration.factories import lease_batch, sign_and_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("backend")]


@pytest.fixture(autouse=True)
def _every_scrape_computed(settings) -> None:
    """The figures tests change the tables between scrapes: no cache for them. The tests of
    the cache (test_metrics_cost.py) switch it back on."""
    settings.SIGNING_METRICS_CACHE_SECONDS = 0


# Lets the tests below reach the view through every middleware, as a scraper would.
urlpatterns = [path("metrics", metrics_view, name="metrics")]


def scrape() -> dict[str, list[Sample]]:
    """Call the view and parse its text; the samples of each family, by family name."""
    response = metrics_view(RequestFactory().get("/metrics"))
    assert response.status_code == 200
    families = text_string_to_metric_families(response.content.decode())
    return {family.name: family.samples for family in families}


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    """The value of the one sample called `name` with exactly these labels."""
    (match,) = [
        s for family in samples.values() for s in family if s.name == name and s.labels == labels
    ]
    return match.value


def buckets(samples: dict[str, list[Sample]]) -> dict[str, float]:
    return {
        s.labels["le"]: s.value
        for s in samples["signing_batch_duration_seconds"]
        if s.name == "signing_batch_duration_seconds_bucket"
    }


def sign(batch: Batch, lease: GrantedLease, *, seconds: float) -> None:
    """Sign a leased batch for real, release its lease, and pin its duration to `seconds`."""
    sign_and_release(lease.id)
    leased_at = timezone.now() - timedelta(minutes=1)
    Batch.objects.filter(pk=batch.pk).update(
        leased_at=leased_at, signed_at=leased_at + timedelta(seconds=seconds)
    )


@pytest.fixture
def busy_run() -> SigningRun:
    """25 records in 5 batches of 5: two signed (0.03 s and 3 s), one of them after an
    expired lease; two leased now; one failed."""
    seed(records=25, keys=4)
    run = plan_run(batch_size=5)
    first, second, third, fourth, fifth = run.batches.order_by("seq")
    sign(first, lease_batch(first), seconds=0.03)
    expired = lease_batch(second)
    release_lease(lease_id=expired.id, outcome=KeyLease.Outcome.EXPIRED)
    return_batch(batch_id=second.pk, reason="lease expired")
    sign(second, lease_batch(second), seconds=3)
    lease_batch(third)
    lease_batch(fourth)
    failed = lease_batch(fifth)
    release_lease(lease_id=failed.id, outcome=KeyLease.Outcome.FAILED)
    Batch.objects.filter(pk=fifth.pk).update(status=Batch.Status.FAILED)
    return run


def test_every_figure_matches_the_tables(busy_run):
    samples = scrape()

    assert value(samples, "signing_signatures_written_total") == 10
    assert value(samples, "signing_records") == 25
    assert value(samples, "signing_records_signed") == 10
    for status, count in {"pending": 0, "leased": 2, "signed": 2, "failed": 1}.items():
        assert value(samples, "signing_batches", status=status) == count, status
    assert value(samples, "signing_batches", status="cancelled") == 0
    assert value(samples, "signing_active_leases") == 2
    assert value(samples, "signing_expired_leases_total") == 1
    for outcome, count in {"completed": 2, "expired": 1, "failed": 1}.items():
        assert value(samples, "signing_leases_released_total", outcome=outcome) == count

    assert value(samples, "signing_run_records") == 25
    assert value(samples, "signing_run_records_signed") == 10
    for status, count in {"pending": 0, "leased": 2, "signed": 2, "failed": 1}.items():
        assert value(samples, "signing_run_batches", status=status) == count, status
    info = {"run_id": str(busy_run.pk), "status": "running", "batch_size": "5"}
    assert value(samples, "signing_run_info", **info) == 1


def test_the_duration_histogram_counts_signed_batches_in_cumulative_buckets(busy_run):
    samples = scrape()

    signed = Batch.objects.filter(status=Batch.Status.SIGNED).count()
    assert value(samples, "signing_batch_duration_seconds_count") == signed == 2
    assert value(samples, "signing_batch_duration_seconds_sum") == pytest.approx(3.03)
    assert buckets(samples) == {
        "0.01": 0,
        "0.05": 1,
        "0.1": 1,
        "0.25": 1,
        "0.5": 1,
        "1.0": 1,
        "2.5": 1,
        "5.0": 2,
        "10.0": 2,
        "30.0": 2,
        "+Inf": 2,
    }
    assert len(buckets(samples)) == len(BATCH_DURATION_BUCKETS) + 1


def test_clock_skew_counts_as_zero_seconds(busy_run):
    """signed_at (a worker's clock) before leased_at (PostgreSQL's): no negative duration."""
    now = timezone.now()
    Batch.objects.filter(status=Batch.Status.SIGNED).update(
        leased_at=now, signed_at=now - timedelta(seconds=2)
    )
    samples = scrape()

    assert buckets(samples)["0.01"] == 2
    assert value(samples, "signing_batch_duration_seconds_sum") == 0


def test_an_empty_database_gives_zeros_and_no_run(db):
    samples = scrape()

    assert value(samples, "signing_signatures_written_total") == 0
    assert value(samples, "signing_records") == 0
    assert value(samples, "signing_active_leases") == 0
    assert value(samples, "signing_batches", status="pending") == 0
    assert value(samples, "signing_batch_duration_seconds_count") == 0
    assert set(buckets(samples).values()) == {0}
    assert not {name for name in samples if name.startswith("signing_run_")}


def test_the_active_run_is_shown_before_a_later_one_then_the_latest(db):
    seed(records=12, keys=2)
    active = plan_run(batch_size=4)
    later = SigningRun.objects.create(
        batch_size=7, status=SigningRun.Status.COMPLETED, record_count=3, max_in_flight=1
    )
    assert later.pk > active.pk

    samples = scrape()
    assert value(
        samples, "signing_run_info", run_id=str(active.pk), status="running", batch_size="4"
    )
    assert value(samples, "signing_run_records") == 12

    assert value(samples, "signing_run_batches", status="pending") == 3

    cancel_run(active.pk)
    samples = scrape()
    assert value(
        samples, "signing_run_info", run_id=str(later.pk), status="completed", batch_size="7"
    )
    assert value(samples, "signing_run_records") == 3
    assert value(samples, "signing_run_records_signed") == 0
    assert value(samples, "signing_run_batches", status="pending") == 0
    # the cancelled run's 3 batches, never signed, wait for nothing: cancelled, not pending
    assert value(samples, "signing_batches", status="pending") == 0
    assert value(samples, "signing_batches", status="cancelled") == 3
    assert Batch.objects.filter(run=active, status=Batch.Status.PENDING).count() == 3  # rows
    assert len(samples["signing_run_info"]) == 1


def test_a_scrape_costs_the_same_few_queries_however_many_rows(busy_run, django_assert_num_queries):
    with django_assert_num_queries(5):
        scrape()
    Record.objects.bulk_create(Record(payload=f"one more record {n}") for n in range(50))
    cancel_run(busy_run.pk)  # one active run at a time
    grown = plan_run(batch_size=1)
    assert grown.batch_count > 50
    with django_assert_num_queries(5):
        samples = scrape()
    assert value(samples, "signing_run_batches", status="pending") == grown.batch_count
    pending = Batch.objects.filter(status=Batch.Status.PENDING).count()  # of every run
    cancelled = value(samples, "signing_batches", status="cancelled")
    assert cancelled > 0  # busy_run's
    assert value(samples, "signing_batches", status="pending") == grown.batch_count
    assert grown.batch_count + cancelled == pending


def test_the_response_is_prometheus_text_and_only_get_is_allowed(db):
    factory = RequestFactory()
    response = metrics_view(factory.get("/metrics"))
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    assert "no-cache" in response["Cache-Control"]

    for method in ("post", "put", "delete"):
        refused = metrics_view(getattr(factory, method)("/metrics"))
        assert refused.status_code == 405, method
        assert refused["Allow"] == "GET"
    assert Signature.objects.count() == 0


@pytest.mark.urls(__name__)
def test_scrapers_need_no_login(settings, busy_run):
    """Anonymous, through every middleware, even if the site later requires logins."""
    for middleware in (
        settings.MIDDLEWARE,
        [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"],
    ):
        settings.MIDDLEWARE = middleware
        scraper = Client()  # a new handler: a client keeps the middleware it first loaded
        response = scraper.get("/metrics")
        assert response.status_code == 200, middleware
        assert b"\nsigning_signatures_written_total 10.0\n" in response.content
        assert scraper.post("/metrics").status_code == 405


def test_no_secret_or_identifier_leaves(busy_run):
    body = metrics_view(RequestFactory().get("/metrics")).content
    text = body.decode()

    assert b"PRIVATE KEY" not in body
    assert b"PUBLIC KEY" not in body
    for key in SigningKey.objects.all():
        sealed = bytes(key.encrypted_private_key)
        assert len(sealed) > 16
        assert sealed not in body
        assert sealed.hex() not in text
        assert base64.b64encode(sealed).decode() not in text
        assert key.kid not in text
    for payload in Record.objects.values_list("payload", flat=True)[:25]:
        assert payload not in text
    for signature in Signature.objects.values_list("signature", flat=True):
        assert bytes(signature).hex() not in text
