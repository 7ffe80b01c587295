"""Dashboard views: who may see and do what, and what bad input gets."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from keyring.models import SigningKey
from signing.audit.roots import stored_run_root
from signing.models import SigningRun
from signing.runs.dispatch import cancel_run, finish_run, plan_run
from tests.conftest import seed
from tests.integration.factories import keyring_in_use, lease_batch, sign_and_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("backend")]


@pytest.fixture
def viewer(client):
    """Logged in, not staff: may watch, may not start or cancel."""
    user = get_user_model().objects.create_user("viewer", password="x")
    client.force_login(user)
    return client


@pytest.fixture
def operator(client):
    """Staff: may start and cancel runs."""
    user = get_user_model().objects.create_user("operator", password="x", is_staff=True)
    client.force_login(user)
    return client


@pytest.fixture
def run(cast):
    """A run of 4 batches of 5 records, batch 1 leased (the integration tests' cast)."""
    return cast.run


def page_urls(run) -> list[str]:
    kid = SigningKey.objects.first().kid
    return [
        reverse("dashboard"),
        reverse("keys"),
        reverse("key-pem", args=[kid]),
        reverse("run-detail", args=[run.pk]),
        reverse("run-progress", args=[run.pk]),
        reverse("run-charts", args=[run.pk]),
    ]


def test_anonymous_visitors_are_sent_to_log_in(client, run):
    for url in page_urls(run):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("login")), url


def test_a_viewer_sees_every_page(viewer, run):
    for url in page_urls(run):
        assert viewer.get(url).status_code == 200, url


def test_the_keys_page_numbers_the_enabled_keys_in_lease_order_then_lists_the_disabled(viewer):
    keyring = keyring_in_use()

    page = viewer.get(reverse("keys")).content.decode()

    rows = page.split("<tr>")[2:]  # after the header's row
    kids = keyring.next_leases + keyring.disabled
    assert [kid in row for kid, row in zip(kids, rows, strict=True)] == [True] * 5
    positions = [row.split('<td class="num">')[1].split("</td>")[0] for row in rows]
    assert positions == ["1", "2", "3", "—", "—"]


def test_a_viewer_cannot_start_or_cancel_a_run(viewer, run):
    assert viewer.post(reverse("dashboard"), {"batch_size": "5"}).status_code == 403
    assert viewer.post(reverse("run-cancel", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert run.status == SigningRun.Status.RUNNING
    assert b"Only staff can start runs" in viewer.get(reverse("dashboard")).content


def test_an_operator_starts_a_run_and_is_taken_to_it(operator):
    seed(records=20, keys=3)
    response = operator.post(reverse("dashboard"), {"batch_size": "7"})
    run = SigningRun.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("run-detail", args=[run.pk])
    assert run.batch_size == 7
    assert run.batch_count == 3


def test_a_run_with_nothing_to_sign_takes_the_operator_to_it_completed(operator):
    seed(records=5, keys=2)
    earlier = plan_run(batch_size=5)
    sign_and_release(lease_batch(earlier.batches.get()).id)
    assert finish_run(earlier.pk)

    response = operator.post(reverse("dashboard"), {"batch_size": "5"}, follow=True)

    run = SigningRun.objects.exclude(pk=earlier.pk).get()
    assert (run.status, run.batch_count) == (SigningRun.Status.COMPLETED, 0)
    assert response.redirect_chain == [(reverse("run-detail", args=[run.pk]), 302)]
    assert f"Run {run.pk} had nothing to sign: every record is already signed." in (
        response.content.decode()
    )


@pytest.mark.parametrize(
    ("batch_size", "message"),
    [
        ("0", "at least 1"),
        ("-1", "at least 1"),
        ("abc", "whole number"),
        ("1.5", "whole number"),
        ("", "Enter a batch size"),
        (str(10**12), "at most"),
    ],
)
def test_a_bad_batch_size_is_an_inline_error_and_creates_nothing(operator, batch_size, message):
    seed(records=20, keys=3)
    response = operator.post(reverse("dashboard"), {"batch_size": batch_size})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not SigningRun.objects.exists()


def test_a_second_run_is_refused_with_a_message(operator, run):
    response = operator.post(reverse("dashboard"), {"batch_size": "5"})
    assert response.status_code == 400
    assert f"Run {run.pk} is still active" in response.content.decode()
    assert SigningRun.objects.count() == 1


def test_progress_json_has_what_the_page_shows(viewer, run):
    progress = viewer.get(reverse("run-progress", args=[run.pk])).json()
    assert progress["total_records"] == 20
    assert progress["batches_in_flight"] == 1
    assert progress["batches_pending"] == 3
    assert progress["finished"] is False
    assert progress["audit"] is None
    assert set(progress) >= {"percent", "records_per_second", "eta_seconds", "batches_failed"}


def test_a_cancelled_runs_unsigned_batches_are_shown_as_not_signed_not_pending(viewer, cast):
    # Given the cast's run (4 batches, batch 1 leased) with batch 1 signed, then cancelled
    sign_and_release(cast.lease.id)
    assert cancel_run(cast.run.pk)

    # Then its 3 other batches are "not signed (run cancelled)": none is pending any more
    progress = viewer.get(reverse("run-progress", args=[cast.run.pk])).json()
    assert progress["status"] == "cancelled"
    assert progress["batches_signed"] == 1
    assert progress["batches_pending"] == 0
    assert progress["batches_cancelled"] == 3
    page = viewer.get(reverse("run-detail", args=[cast.run.pk])).content.decode()
    assert '<div data-figure="pending" hidden><dt>Pending</dt>' in page
    assert (
        '<div data-figure="cancelled"><dt>Not signed (run cancelled)</dt>'
        '<dd data-field="batches_cancelled">3</dd>'
    ) in page
    # and the rows keep the data contract's statuses: the run's status says it ended
    assert set(cast.run.batches.values_list("status", flat=True)) == {"signed", "pending"}


def test_an_active_runs_page_shows_pending_batches_and_hides_the_cancelled_figure(viewer, run):
    page = viewer.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert '<div data-figure="pending"><dt>Pending</dt><dd data-field="batches_pending">3' in page
    assert '<div data-figure="cancelled" hidden>' in page


def test_a_completed_runs_page_shows_its_merkle_root(viewer, cast):
    run = cast.run
    sign_and_release(cast.lease.id)
    for batch in run.batches.filter(seq__gt=1).order_by("seq"):
        sign_and_release(lease_batch(batch).id)
    assert finish_run(run.pk)
    run.refresh_from_db()
    root = bytes(run.merkle_root).hex()
    assert root == stored_run_root(run.pk).hex()
    page = viewer.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert f'<code data-field="merkle_root">{root}</code>' in page
    assert viewer.get(reverse("run-progress", args=[run.pk])).json()["merkle_root"] == root


def test_a_running_runs_page_has_no_merkle_root_yet(viewer, run):
    page = viewer.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert '<code data-field="merkle_root">\u2013</code>' in page
    assert viewer.get(reverse("run-progress", args=[run.pk])).json()["merkle_root"] is None


def test_the_timeline_draws_each_lease_with_its_batch_and_token(viewer, run):
    html = viewer.get(reverse("run-charts", args=[run.pk])).content.decode()
    assert html.count('class="lease held"') == 1
    assert "batch #1 · token 1" in html


def test_a_key_downloads_as_public_pem_only(viewer, run):
    key = SigningKey.objects.first()
    response = viewer.get(reverse("key-pem", args=[key.kid]))
    assert response["Content-Disposition"] == f'attachment; filename="{key.kid}.pem"'
    assert response.content.decode() == key.public_key_pem
    assert b"PRIVATE" not in response.content


def test_pages_never_show_private_key_material(viewer, run):
    sealed = [bytes(k.encrypted_private_key) for k in SigningKey.objects.all()]
    for url in page_urls(run):
        body = viewer.get(url).content
        assert b"PRIVATE KEY" not in body, url
        assert not any(blob.hex().encode() in body or blob in body for blob in sealed), url


def test_an_operator_cancels_the_active_run(operator, run):
    response = operator.post(reverse("run-cancel", args=[run.pk]))
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == SigningRun.Status.CANCELLED


def test_prometheus_scrapes_metrics_without_logging_in(client, run):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "signing_active_leases 1.0" in response.content.decode()
