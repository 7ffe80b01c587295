"""A broker that does not answer only delays a run: sends that fail give their batches back at
once, no attempt is counted for a message no worker got, the reaper waits for the broker, and
a finished run whose audit_run was lost is audited anyway. (The chaos trials pause and kill a
real Redis; these tests make one send fail, in-process.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import dramatiq
import pytest
from django.utils import timezone

from devtools.sandbox import free_port
from keyring.models import KeyLease, SigningKey
from signing.models import Batch, RunAudit, SigningRun
from signing.runs.dispatch import start_run
from signing.runs.recovery import recover, resend_lost_audits
from tests.conftest import hint_of, seed

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_down(broker: dramatiq.Broker) -> Iterator[Callable[[], None]]:
    """Redis out of reach: the broker's client connects to a port nothing listens on (a
    real refused connection); calling the fixture's value brings Redis back."""
    pool = broker.client.connection_pool
    real_port = pool.connection_kwargs["port"]

    def point_at(port: int) -> None:
        pool.disconnect()
        pool.connection_kwargs["port"] = port
        pool.reset()  # forget connections made for the other port

    point_at(free_port())
    yield lambda: point_at(real_port)
    point_at(real_port)


def test_claims_whose_messages_cannot_be_sent_are_given_back_at_once(
    broker_down, sent, django_capture_on_commit_callbacks
):
    seed(records=40, keys=5)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(batch_size=10, max_in_flight=4)
    assert not sent.named("signing_triggered")
    # Every lease granted was closed at once, no key is left held, no attempt counted
    assert KeyLease.objects.count() == 4
    assert not KeyLease.objects.filter(released_at=None).exists()
    assert set(KeyLease.objects.values_list("outcome", flat=True)) == {"failed"}
    assert not SigningKey.objects.exclude(held_by=None).exists()
    assert set(run.batches.values_list("status", "attempts")) == {("pending", 0)}
    assert SigningRun.objects.get(pk=run.pk).status == SigningRun.Status.RUNNING


def test_the_reaper_dispatches_nothing_while_the_broker_is_down_then_resumes(
    broker_down, sent, django_capture_on_commit_callbacks, monkeypatch
):
    seed(records=40, keys=5)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(batch_size=10, max_in_flight=4)
    leases_after_start = KeyLease.objects.count()

    def silent() -> None:
        raise TimeoutError("Timeout reading from socket")

    monkeypatch.setattr("signing.runs.recovery.check_broker", silent)
    for _ in range(3):  # reaper ticks during the outage
        with django_capture_on_commit_callbacks(execute=True):
            recover()
    assert KeyLease.objects.count() == leases_after_start  # no lease churned

    monkeypatch.undo()
    broker_down()  # the broker is back
    with django_capture_on_commit_callbacks(execute=True):
        recover()
    assert len(sent.named("signing_triggered")) == 4
    assert run.batches.filter(status=Batch.Status.LEASED).count() == 4


def test_many_lost_claims_never_fail_a_batch(sent, settings, django_capture_on_commit_callbacks):
    # A broker that loses every message five times over: leases granted, never taken up
    settings.SIGNING_MAX_ATTEMPTS = 2
    seed(records=10, keys=2)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(batch_size=10, max_in_flight=1)
    for _ in range(5):
        KeyLease.objects.filter(released_at=None).update(expires_at=timezone.now())
        with django_capture_on_commit_callbacks(execute=True):
            recover()
    batch = run.batches.get()
    assert (batch.status, batch.attempts) == (Batch.Status.LEASED, 0)
    assert KeyLease.objects.count() == 6
    # and the message that finally arrives signs it
    from signing.runs.services import sign_batch

    assert sign_batch(hint_of(sent.named("signing_triggered")[-1])).outcome.value == "stored"


def test_a_finished_run_whose_audit_was_lost_is_audited_by_the_reaper(
    sent, settings, django_capture_on_commit_callbacks, backend, this_process_plays_the_workers
):
    seed(records=10, keys=2)
    with django_capture_on_commit_callbacks(execute=True):
        run = start_run(batch_size=10, max_in_flight=1)
    from signing.runs.actors import signing_completed, signing_triggered

    with django_capture_on_commit_callbacks(execute=True):
        signing_triggered.fn(**sent.named("signing_triggered")[0].kwargs)
    with django_capture_on_commit_callbacks(execute=True):
        signing_completed.fn(**sent.named("signing_completed")[0].kwargs)
    assert SigningRun.objects.get(pk=run.pk).status == SigningRun.Status.COMPLETED
    assert len(sent.named("audit_run")) == 1  # sent, then lost: never handled

    # Not again before SIGNING_AUDIT_RESEND_SECONDS have passed
    with django_capture_on_commit_callbacks(execute=True):
        assert resend_lost_audits() == 0
    SigningRun.objects.filter(pk=run.pk).update(
        audit_requested_at=timezone.now() - timedelta(seconds=settings.SIGNING_AUDIT_RESEND_SECONDS)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert resend_lost_audits() == 1
        assert resend_lost_audits() == 0  # claimed: one resend per period
    resent = sent.named("audit_run")[-1]
    assert resent.kwargs == {"run_id": run.pk}

    from signing.runs.actors import audit_run

    audit_run.fn(**resent.kwargs)
    assert RunAudit.objects.get(run_id=run.pk).passed
    SigningRun.objects.filter(pk=run.pk).update(audit_requested_at=timezone.now() - timedelta(1))
    assert resend_lost_audits() == 0  # audited: nothing more to ask
