"""Follow runs (signing.runs.follow), in-process: cuts, the max wait, the graceful stop and
the audit's rule 5 for them, on both backends (messages delivered by the test)."""

import io
import random

import pytest
from django.db import connection, transaction

from records.models import Record, Signature
from records.services import random_payloads
from signing.audit.rules import audit
from signing.models import Batch, SigningRun
from signing.runs.dispatch import advance_run, start_run
from signing.runs.exceptions import RunAlreadyActive, RunNotActive, RunNotFollowing, RunNotFound
from signing.runs.follow import cut_if_due, records_arrived, start_follow_run, stop_run
from signing.runs.seeding import load_records
from tests.conftest import seed, wait_until
from tests.support import deliver_all

pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.django_db(transaction=True)]

AN_HOUR_MS = 3_600_000


@pytest.fixture(autouse=True)
def _the_test_is_the_worker(monkeypatch):
    """The test delivers what is sent (deliver_all): with embedded mode's in-process broker
    and no worker thread, messages would otherwise not be sent from here at all."""
    monkeypatch.setattr("signing.runs.messages.reach_workers", lambda: True)


def arrive(count: int) -> None:
    """Records arrive as the ingest path stores them: committed, then records_arrived()."""
    load_records(random_payloads(count, rng=random.Random(count)))
    records_arrived()


def cuts(run: SigningRun) -> list[tuple[int, int]]:
    """(size, waiting) of each batch of the run, in seq order."""
    return list(run.batches.order_by("seq").values_list("size", "waiting"))


def rule_5(run_id: int) -> list[str]:
    [check] = [c for c in audit(run_id=run_id, processes=1).checks if c.rule == "5"]
    return check.breaches


def test_a_follow_run_cuts_full_batches_as_records_arrive_and_keeps_the_rest_waiting(
    settings, sent
):
    # Given 250 records and a follow run in batches of 100 with a max wait of an hour
    settings.SIGNING_FOLLOW_MAX_WAIT_MS = AN_HOUR_MS
    seed(records=250, keys=3)
    run = start_follow_run(batch_size=100)

    # Then the two full batches are cut at once, the 50 left wait
    assert cuts(run) == [(100, 250), (100, 150)]
    assert run.status == SigningRun.Status.RUNNING
    assert run.record_count == 200

    # When 60 more arrive: 110 wait, one full batch is cut, 10 wait on
    arrive(60)
    assert cuts(run) == [(100, 250), (100, 150), (100, 110)]

    # When every message is delivered, the run stays running: it follows
    deliver_all(sent, _no_capture)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.RUNNING
    assert Signature.objects.count() == 300
    advance_run(run.pk)  # what the reaper does: nothing to dispatch, and yet not finished
    run.refresh_from_db()
    assert run.status == SigningRun.Status.RUNNING


def test_a_graceful_stop_cuts_what_is_waiting_signs_it_and_completes(settings, sent):
    settings.SIGNING_FOLLOW_MAX_WAIT_MS = AN_HOUR_MS
    seed(records=130, keys=3)
    run = start_follow_run(batch_size=50)
    assert cuts(run) == [(50, 130), (50, 80)]

    # When it is stopped, the 30 waiting are cut as a smaller batch
    stopped = stop_run(run.pk)
    assert stopped.stop_requested_at is not None
    assert cuts(run) == [(50, 130), (50, 80), (30, 30)]

    # and records arriving after the stop are not taken in
    arrive(70)
    assert cuts(run) == [(50, 130), (50, 80), (30, 30)]

    # When the messages are delivered, it completes, every record it cut signed once
    deliver_all(sent, _no_capture)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED
    assert Signature.objects.count() == 130
    report = audit(run_id=run.pk, processes=1)
    assert report.passed, report.as_dict()


def test_a_completed_follow_run_is_held_to_every_record_it_cut_through(settings, sent):
    # Given a follow run stopped and completed over 30 records, and 5 arriving after the stop
    settings.SIGNING_FOLLOW_MAX_WAIT_MS = AN_HOUR_MS
    seed(records=30, keys=2)
    run = start_follow_run(batch_size=10)
    stop_run(run.pk)
    arrive(5)
    deliver_all(sent, _no_capture)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED
    assert audit(processes=1).passed  # the 5 after the stop: not signed yet

    # When its mark is moved past them, as if its last cut had claimed and dropped them
    late = list(Record.objects.filter(id__gt=run.followed_through).values_list("id", flat=True))
    assert len(late) == 5
    SigningRun.objects.filter(pk=run.pk).update(followed_through=max(late))

    # Then the audit names each, and the run that owed it
    [check] = [c for c in audit(processes=1).checks if c.name == "one_signature_per_record"]
    assert check.breaches == [
        f"record {record_id} was unsigned when follow run {run.pk} cut through it, and run "
        f"{run.pk} completed without it"
        for record_id in sorted(late)
    ]


def test_the_oldest_waiting_record_is_cut_after_the_max_wait(settings, sent):
    # Given a follow run in batches of 100 with a max wait of 50 ms, and 30 records arriving
    settings.SIGNING_FOLLOW_MAX_WAIT_MS = AN_HOUR_MS
    seed(records=0, keys=2)
    run = start_follow_run(batch_size=100)
    arrive(30)
    assert cuts(run) == []

    # When the max wait has passed, the next look cuts them as one batch of 30
    settings.SIGNING_FOLLOW_MAX_WAIT_MS = 50
    wait_until(lambda: cut_if_due().batches, timeout=5)
    assert cuts(run) == [(30, 30)]
    deliver_all(sent, _no_capture)
    assert Signature.objects.count() == 30
    assert rule_5(run.pk) == []


def test_records_arrived_inside_a_transaction_waits_for_its_commit(settings):
    settings.SIGNING_FOLLOW_MAX_WAIT_MS = AN_HOUR_MS
    seed(records=0, keys=2)
    run = start_follow_run(batch_size=5)

    # Records whose transaction rolls back are never cut
    class RolledBack(Exception):
        pass

    def store_then_fail() -> None:
        with transaction.atomic():
            load_records(random_payloads(5, rng=random.Random(1)))
            records_arrived()
            raise RolledBack

    with pytest.raises(RolledBack):
        store_then_fail()
    assert cuts(run) == []

    # Records are cut once their transaction commits, not before
    with transaction.atomic():
        load_records(random_payloads(5, rng=random.Random(2)))
        records_arrived()
        assert cuts(run) == []
    assert cuts(run) == [(5, 5)]


def test_a_follow_run_with_nothing_to_sign_stays_running_until_stopped(settings, sent):
    seed(records=0, keys=2)
    run = start_follow_run(batch_size=10)
    advance_run(run.pk)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.RUNNING

    assert stop_run(run.pk).status == SigningRun.Status.COMPLETED


def test_only_one_run_is_active_follow_or_not(settings):
    seed(records=10, keys=2)
    start_follow_run(batch_size=10)
    with pytest.raises(RunAlreadyActive):
        start_follow_run(batch_size=10)
    with pytest.raises(RunAlreadyActive):
        start_run(batch_size=10)


def test_a_stop_says_what_is_wrong_with_the_run_it_names(settings, sent):
    seed(records=10, keys=2)
    with pytest.raises(RunNotFound, match="no run has id 999"):
        stop_run(999)
    ordinary = start_run(batch_size=10)
    with pytest.raises(RunNotFollowing, match="not a follow run"):
        stop_run(ordinary.pk)
    deliver_all(sent, _no_capture)
    with pytest.raises(RunNotFollowing):
        stop_run(ordinary.pk)

    following = start_follow_run(batch_size=10)
    assert stop_run(following.pk).status == SigningRun.Status.COMPLETED
    with pytest.raises(RunNotActive, match="is not active: it is completed"):
        stop_run(following.pk)


def test_the_audit_refuses_a_follow_batch_smaller_than_what_was_waiting(settings, sent):
    settings.SIGNING_FOLLOW_MAX_WAIT_MS = AN_HOUR_MS
    seed(records=20, keys=2)
    run = start_follow_run(batch_size=10)
    assert rule_5(run.pk) == []
    batch = run.batches.order_by("seq").last()

    # When a batch's record of what was waiting says more were there than it took
    with connection.cursor() as cursor:
        cursor.execute("UPDATE signing_batch SET waiting = 15 WHERE id = %s", [batch.pk])

    # Then rule 5 names it (this batch of 10 is full; claim the other was cut small)
    first = run.batches.order_by("seq").first()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE signing_batch SET waiting = 25 WHERE id = %s", [first.pk])
    assert rule_5(run.pk) == []  # full batches with more waiting are right
    Batch.objects.filter(pk=first.pk).update(size=5, last_record_id=first.first_record_id + 4)
    assert rule_5(run.pk) == [
        f"run {run.pk} batch #1 has 5 records for a batch size of 10, cut with 25 waiting"
    ]


class _NoCapture:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _no_capture(execute: bool = True) -> _NoCapture:
    """deliver_all's on_commit for tests whose transactions commit (transaction=True)."""
    return _NoCapture()


# --- The API and the dashboard -----------------------------------------------------------
def api_client(*, staff: bool):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    user = get_user_model().objects.create_user("ops" if staff else "auditor", is_staff=staff)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_staff_start_a_follow_run_through_the_api_see_its_activity_and_stop_it(settings, sent):
    settings.SIGNING_FOLLOW_MAX_WAIT_MS = AN_HOUR_MS
    seed(records=25, keys=2)
    staff = api_client(staff=True)

    started = staff.post("/api/runs/", {"batch_size": 10, "follow": True}, format="json")
    assert started.status_code == 201, started.content
    run = started.json()
    assert (run["follow"], run["status"], run["batch_count"]) == (True, "running", 2)
    assert run["follow_activity"]["waiting"] == 5
    assert run["follow_activity"]["arrivals"] == 25
    assert run["follow_activity"]["backlog"] == 25

    deliver_all(sent, _no_capture)
    detail = staff.get(f"/api/runs/{run['id']}/").json()["follow_activity"]
    assert (detail["backlog"], detail["signed"]) == (5, 20)
    assert 0 <= detail["latency_p50_ms"] <= detail["latency_p99_ms"] <= detail["latency_max_ms"]

    stopped = staff.post(f"/api/runs/{run['id']}/stop/")
    assert stopped.status_code == 200, stopped.content
    assert stopped.json()["stop_requested_at"] is not None
    assert staff.post(f"/api/runs/{run['id']}/stop/").status_code == 200  # still stopping
    deliver_all(sent, _no_capture)
    again = staff.post(f"/api/runs/{run['id']}/stop/")
    assert again.status_code == 409
    finished = f"run {run['id']} is not active: it is completed"
    assert again.json() == {"errors": {"detail": [finished]}}
    assert Signature.objects.count() == 25


@pytest.mark.parametrize("follow", ["true", 1, None, "yes"])
def test_follow_must_be_a_json_boolean(follow):
    seed(records=5, keys=1)
    refused = api_client(staff=True).post("/api/runs/", {"follow": follow}, format="json")
    assert refused.status_code == 400
    assert list(refused.json()["errors"]) == ["follow"]
    assert not SigningRun.objects.exists()


def test_the_api_stop_refuses_what_it_cannot_stop(sent):
    seed(records=5, keys=1)
    staff = api_client(staff=True)
    assert staff.post("/api/runs/123456/stop/").status_code == 404
    ordinary = start_run(batch_size=5)
    refused = staff.post(f"/api/runs/{ordinary.pk}/stop/")
    assert refused.status_code == 409
    assert "not a follow run" in refused.json()["errors"]["detail"][0]
    following = SigningRun.objects.get(pk=ordinary.pk)
    assert following.status == SigningRun.Status.RUNNING
    assert api_client(staff=False).post(f"/api/runs/{ordinary.pk}/stop/").status_code == 403


def test_an_operator_starts_a_follow_run_from_the_dashboard_and_stops_it(client, settings, sent):
    from django.contrib.auth import get_user_model

    settings.SIGNING_FOLLOW_MAX_WAIT_MS = AN_HOUR_MS
    seed(records=12, keys=2)
    client.force_login(get_user_model().objects.create_user("ops", is_staff=True))

    started = client.post("/", {"batch_size": "5", "follow": "on"})
    run = SigningRun.objects.get()
    assert started.status_code == 302
    assert run.follow
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "Arrivals (last minute)" in page
    assert "Stop: sign what has arrived" in page
    progress = client.get(f"/runs/{run.pk}/progress.json").json()
    assert progress["follow_activity"]["waiting"] == 2

    client.post(f"/runs/{run.pk}/stop/")
    deliver_all(sent, _no_capture)
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED
    assert cuts(run) == [(5, 12), (5, 7), (2, 2)]
    assert "Stop: sign what has arrived" not in client.get(f"/runs/{run.pk}/").content.decode()


def test_records_ingested_through_the_api_or_the_command_are_cut_at_once(settings, tmp_path):
    import json

    from django.core.management import call_command

    settings.SIGNING_FOLLOW_MAX_WAIT_MS = AN_HOUR_MS
    seed(records=0, keys=2)
    run = start_follow_run(batch_size=4)

    # POST /api/records/ with 5 records: one full batch is cut before the answer, 1 waits
    body = {"records": [{"payload": f"api {n}"} for n in range(5)]}
    stored = api_client(staff=True).post("/api/records/", body, format="json")
    assert stored.status_code == 201, stored.content
    assert cuts(run) == [(4, 5)]

    # `manage.py ingest` with 3 more: 4 wait, another full batch
    lines = tmp_path / "records.jsonl"
    lines.write_text("".join(json.dumps({"payload": f"file {n}"}) + "\n" for n in range(3)))
    call_command("ingest", str(lines), stdout=io.StringIO())
    assert cuts(run) == [(4, 5), (4, 4)]
