"""The run page's charts stay bounded: a run of 100,000 leases is drawn as a summary by one
GROUP BY, a small run still gets one bar per lease (issue 15)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from keyring.models import KeyLease, SigningKey
from signing.models import Batch, SigningRun
from signing.runs.dispatch import plan_run
from signing.web.charts import lease_timeline, throughput
from tests.conftest import seed
from tests.integration.factories import lease_batch, sign_and_release

KEYS = 100

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client):
    client.force_login(get_user_model().objects.create_user("viewer", password="x"))
    return client


@pytest.fixture
def long_run(db) -> SigningRun:
    """A run of 100 batches over 100 keys whose leases the tests insert in bulk."""
    seed(records=1000, keys=KEYS)
    run = plan_run(batch_size=10)
    SigningRun.objects.filter(pk=run.pk).update(
        started_at=run.created_at, finished_at=run.created_at + timedelta(seconds=100)
    )
    run.refresh_from_db()
    return run


def insert_leases(run: SigningRun, count: int, *, expired_every: int = 0) -> None:
    """`count` closed leases of the run's batches, one every millisecond of its 100 s,
    key after key in id order (so each key's leases are 100 ms apart and never overlap,
    rule 2), tokens rising per key; one in `expired_every` expired. One INSERT … SELECT
    through every constraint and trigger of the table, as fast as PostgreSQL goes."""
    assert connection.vendor == "postgresql", "generate_series: the bulk test needs PostgreSQL"
    key_ids = list(SigningKey.objects.order_by("id").values_list("id", flat=True))
    batch_ids = list(run.batches.order_by("seq").values_list("id", flat=True))
    step = run.finished_at - run.started_at
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO keyring_keylease
                (key_id, batch_id, token, acquired_at, expires_at, released_at, outcome)
            SELECT (%(keys)s::bigint[])[g %% %(key_count)s + 1],
                   (%(batches)s::bigint[])[g %% %(batch_count)s + 1],
                   g / %(key_count)s + 1,
                   %(start)s + %(step)s * g / %(count)s,
                   %(start)s + %(step)s * g / %(count)s + interval '30 seconds',
                   %(start)s + %(step)s * g / %(count)s + interval '500 microseconds',
                   CASE WHEN %(expired_every)s > 0 AND g %% %(expired_every)s = 0
                        THEN 'expired' ELSE 'completed' END
            FROM generate_series(0, %(count)s - 1) AS g
            """,
            {
                "keys": key_ids,
                "key_count": len(key_ids),
                "batches": batch_ids,
                "batch_count": len(batch_ids),
                "start": run.started_at,
                "step": step,
                "count": count,
                "expired_every": expired_every,
            },
        )
    assert KeyLease.objects.filter(batch__run=run).count() == count


def leases_in_titles(html: str) -> int:
    return sum(int(n.replace(",", "")) for n in re.findall(r"· ([\d,]+) leases", html))


def test_a_run_of_100000_leases_is_drawn_as_a_bounded_summary(
    viewer, long_run, settings, django_assert_max_num_queries
):
    insert_leases(long_run, 100_000, expired_every=1001)
    url = reverse("run-charts", args=[long_run.pk])

    with CaptureQueriesContext(connection) as queries:
        response = viewer.get(url)
    html = response.content.decode()

    assert response.status_code == 200
    assert "Showing a summary: 100,000 leases" in html
    bars = html.count('<rect x="')
    assert KEYS <= bars <= settings.SIGNING_TIMELINE_MAX_SEGMENTS
    assert html.count('<g class="row">') == KEYS
    assert len(response.content) < 600_000  # one bar per lease was ~15 MB
    assert leases_in_titles(html) == 100_000  # every lease is in one bar, once
    assert 0 < html.count("lease expired") <= 100  # a bar holding an expired lease is red
    assert "100 expired leases in red" in html
    # A bounded number of statements, none of which reads leases one row each: the lease
    # rows reach PostgreSQL's GROUP BY, never Python.
    assert len(queries) <= 8, [q["sql"][:120] for q in queries]
    lease_reads = [q["sql"] for q in queries if "keyring_keylease" in q["sql"]]
    assert len(lease_reads) == 2
    assert all("GROUP BY" in sql or "COUNT(" in sql for sql in lease_reads), lease_reads


def test_the_summary_honours_its_segment_budget(long_run):
    insert_leases(long_run, 5_000)
    timeline = lease_timeline(long_run, max_leases=100, max_segments=500)
    assert timeline.summary
    assert len(timeline.rows) == KEYS
    assert timeline.segment_count <= 500
    assert all(0.2 <= bar.opacity <= 1 for row in timeline.rows for bar in row.bars)


def test_up_to_the_threshold_every_lease_has_its_own_bar(viewer, long_run, settings):
    settings.SIGNING_TIMELINE_MAX_LEASES = 2000
    insert_leases(long_run, 2000)
    html = viewer.get(reverse("run-charts", args=[long_run.pk])).content.decode()
    assert "Showing a summary" not in html
    assert html.count('class="lease completed"') == 2000
    assert "batch #1 · token 1 · lease" in html


def test_the_leases_api_pages_a_long_run_1000_at_a_time(long_run):
    from rest_framework.test import APIClient

    insert_leases(long_run, 3000)
    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("reader", password="x"))
    page = client.get(f"/api/runs/{long_run.pk}/leases/", {"limit": "1000"}).json()
    assert page["count"] == 3000
    assert len(page["results"]) == 1000
    assert page["next"].endswith("limit=1000&offset=1000")
    too_many = client.get(f"/api/runs/{long_run.pk}/leases/", {"limit": "1001"})
    assert too_many.status_code == 400  # refused, not quietly another page size


def test_throughput_sums_a_run_of_many_batches_in_the_database(long_run):
    Batch.objects.filter(run=long_run).update(
        status=Batch.Status.SIGNED, signed_at=long_run.started_at + timedelta(seconds=50)
    )
    with CaptureQueriesContext(connection) as queries:
        chart = throughput(long_run)
    (read,) = queries
    assert "GROUP BY" in read["sql"]
    assert chart.buckets == 60
    assert chart.peak == round(1000 / (100 / 60))  # 1,000 records in one 1.67 s bucket


@pytest.mark.usefixtures("backend")
def test_a_small_run_and_its_summary_agree_on_both_databases(db):
    """The summary's SQL (integer slices of lease ids, durations summed) runs on SQLite
    too: four real leases, drawn whole and then summarised into at most one bar per key."""
    seed(records=20, keys=2)
    run = plan_run(batch_size=5)
    for batch in run.batches.order_by("seq"):
        sign_and_release(lease_batch(batch).id)
    run.refresh_from_db()

    whole = lease_timeline(run)
    summary = lease_timeline(run, max_leases=3, max_segments=2)

    assert not whole.summary
    assert whole.segment_count == whole.lease_count == 4
    assert summary.summary
    assert summary.lease_count == 4
    assert [row.kid for row in summary.rows] == [row.kid for row in whole.rows]
    assert summary.segment_count == 2
    titles = " ".join(bar.title for row in summary.rows for bar in row.bars)
    assert sum(int(n) for n in re.findall(r"· (\d+) leases", titles)) == 4


def test_viewers_of_a_running_run_share_one_drawing_until_it_finishes(viewer, long_run):
    insert_leases(long_run, 3000)
    url = reverse("run-charts", args=[long_run.pk])
    first = viewer.get(url).content
    with CaptureQueriesContext(connection) as queries:
        again = viewer.get(url).content
    assert again == first
    assert not [q for q in queries if "keyring_keylease" in q["sql"]]

    SigningRun.objects.filter(pk=long_run.pk).update(status=SigningRun.Status.COMPLETED)
    with CaptureQueriesContext(connection) as queries:
        viewer.get(url)
    assert [q for q in queries if "keyring_keylease" in q["sql"]]
