"""Lease expiry, heartbeats and the reaper's pass (signing.runs.recovery.recover), in-process."""

from dataclasses import replace
from datetime import timedelta

import pytest
from django.db import connections
from django.db.models import F

from keyring.models import KeyLease
from keyring.services import forget_private_keys, retire_key
from records.models import Signature
from signing.backends.postgresql import REAPER_LOCK_ID
from signing.models import Batch, SigningRun
from signing.runs.dispatch import dispatch_batches, plan_run
from signing.runs.leases import extend_lease, release_lease
from signing.runs.reaper import reap_once
from signing.runs.recovery import recover
from signing.runs.services import sign_batch, take_up_batch
from signing.runs.store import StoreOutcome
from tests.conftest import hint_of, seed


@pytest.fixture
def run(db, django_capture_on_commit_callbacks, sent, backend) -> SigningRun:
    """A run of 2 batches of 5, both dispatched (their messages recorded, not consumed)."""
    seed(records=10, keys=3)
    run = plan_run(batch_size=5, max_in_flight=2)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch_batches(run.pk)
    return run


def expire_now(lease_id: int) -> None:
    """Move a lease's expiry into the past: what waiting a TTL would do, without waiting."""
    KeyLease.objects.filter(pk=lease_id).update(
        expires_at=F("acquired_at") + timedelta(microseconds=1)
    )


def sign(message) -> StoreOutcome:
    return sign_batch(hint_of(message)).outcome


def test_an_expired_lease_is_closed_and_its_batch_dispatched_again(
    run, sent, django_capture_on_commit_callbacks
):
    first = sent.named("signing_triggered")[0]
    expire_now(first.kwargs["lease_id"])

    with django_capture_on_commit_callbacks(execute=True):
        assert recover() == 1

    lease = KeyLease.objects.get(pk=first.kwargs["lease_id"])
    assert lease.outcome == KeyLease.Outcome.EXPIRED
    assert lease.key.last_used_at == lease.released_at
    again = sent.named("signing_triggered")[-1]
    assert again.kwargs["batch_id"] == first.kwargs["batch_id"]
    assert again.kwargs["lease_id"] != first.kwargs["lease_id"]
    # no worker took the first lease up (its message was lost, say): not an attempt
    assert Batch.objects.get(pk=first.kwargs["batch_id"]).attempts == 0


def test_an_attempt_is_counted_once_when_a_worker_takes_its_lease_up(run, sent):
    first = sent.named("signing_triggered")[0]
    assert take_up_batch(hint_of(first)) is not None
    assert take_up_batch(hint_of(first)) is not None  # a redelivery: the same attempt
    lease = KeyLease.objects.get(pk=first.kwargs["lease_id"])
    assert lease.started_at is not None
    assert lease.expires_at > lease.started_at
    assert Batch.objects.get(pk=first.kwargs["batch_id"]).attempts == 1


def test_a_worker_whose_lease_expired_writes_nothing_even_before_the_reaper_runs(run, sent):
    first = sent.named("signing_triggered")[0]
    expire_now(first.kwargs["lease_id"])
    assert sign(first) is StoreOutcome.LEASE_LOST
    assert not Signature.objects.exists()
    assert Batch.objects.get(pk=first.kwargs["batch_id"]).status == Batch.Status.LEASED


def test_a_batch_that_keeps_expiring_fails_and_the_run_says_why(
    run, sent, settings, django_capture_on_commit_callbacks
):
    settings.SIGNING_MAX_ATTEMPTS = 2
    batch_id = sent.named("signing_triggered")[0].kwargs["batch_id"]
    for _ in range(2):
        lease = KeyLease.objects.get(batch_id=batch_id, released_at=None)
        message = next(
            m for m in sent.named("signing_triggered") if m.kwargs["lease_id"] == lease.pk
        )
        assert take_up_batch(hint_of(message)) is not None  # a worker starts, then stalls
        expire_now(lease.pk)
        with django_capture_on_commit_callbacks(execute=True):
            recover()
    batch = Batch.objects.get(pk=batch_id)
    assert batch.status == Batch.Status.FAILED
    assert "expired" in batch.last_error

    # the other batch completes; the run then finishes as failed, with the reason
    other = next(m for m in sent.named("signing_triggered") if m.kwargs["batch_id"] != batch_id)
    assert sign(other) is StoreOutcome.STORED
    release_lease(lease_id=other.kwargs["lease_id"], outcome=KeyLease.Outcome.COMPLETED)
    with django_capture_on_commit_callbacks(execute=True):
        recover()
    run.refresh_from_db()
    assert run.status == SigningRun.Status.FAILED
    assert "1 batch(es) failed after 2 attempts" in run.failure_reason
    assert "expired" in run.failure_reason


def test_a_signed_batch_whose_completion_was_lost_stays_signed(
    run, sent, django_capture_on_commit_callbacks
):
    for message in sent.named("signing_triggered"):
        assert sign(message) is StoreOutcome.STORED
        expire_now(message.kwargs["lease_id"])  # SigningCompleted never arrived
    with django_capture_on_commit_callbacks(execute=True):
        assert recover() == 2
    run.refresh_from_db()
    assert run.status == SigningRun.Status.COMPLETED
    assert set(Batch.objects.values_list("status", flat=True)) == {Batch.Status.SIGNED}
    assert Signature.objects.count() == 10


def test_a_heartbeat_extends_a_live_lease_only(run, sent):
    message = sent.named("signing_triggered")[0]
    hint = hint_of(message)
    before = KeyLease.objects.get(pk=hint.lease_id).expires_at
    assert extend_lease(hint, ttl_seconds=60)
    assert KeyLease.objects.get(pk=hint.lease_id).expires_at > before
    assert not extend_lease(replace(hint, token=hint.token + 1), ttl_seconds=60)
    expire_now(hint.lease_id)
    assert not extend_lease(hint, ttl_seconds=60)


def test_a_batch_that_loses_its_lease_while_signing_stops_and_writes_nothing(
    run, sent, settings, monkeypatch, caplog
):
    monkeypatch.setattr("signing.runs.services.HEARTBEAT_EVERY_RECORDS", 1)
    settings.SIGNING_LEASE_TTL = 1e-6  # every chunk is "a third of a TTL" later: beat each time
    message = sent.named("signing_triggered")[0]

    def take_up_then_lose_the_lease(hint):
        taken = take_up_batch(hint)
        release_lease(lease_id=hint.lease_id, outcome=KeyLease.Outcome.EXPIRED)
        return taken

    monkeypatch.setattr("signing.runs.services.take_up_batch", take_up_then_lose_the_lease)
    with caplog.at_level("WARNING", logger="signing.runs.leases"):
        assert sign(message) is StoreOutcome.LEASE_LOST
    assert f"lease.lost lease_id={message.kwargs['lease_id']}" in caplog.text
    assert not Signature.objects.exists()


def test_a_key_retired_once_its_taken_up_lease_ended_signs_nothing_and_raises_nothing(
    run, sent, monkeypatch, caplog
):
    # Given a worker that took its lease up, not holding the key open yet; the lease then
    # expired and was closed, and the key, free now, retired before the worker opened it
    message = sent.named("signing_triggered")[0]
    forget_private_keys()

    def take_up_then_the_key_is_retired(hint):
        taken = take_up_batch(hint)
        release_lease(lease_id=hint.lease_id, outcome=KeyLease.Outcome.EXPIRED)
        retire_key(kid=hint.kid)
        return taken

    monkeypatch.setattr("signing.runs.services.take_up_batch", take_up_then_the_key_is_retired)

    # When the worker goes on, then the lease is lost (not a KEK error that gives the batch
    # back and the message up): nothing written
    with caplog.at_level("WARNING", logger="signing.runs.services"):
        assert sign(message) is StoreOutcome.LEASE_LOST
    assert "key retired" in caplog.text
    assert not Signature.objects.exists()
    assert KeyLease.objects.get(pk=message.kwargs["lease_id"]).outcome == KeyLease.Outcome.EXPIRED


@pytest.mark.django_db(transaction=True)
def test_only_one_reaper_runs_at_a_time():
    seed(records=2, keys=1)
    other_worker = connections.create_connection("default")
    try:
        with other_worker.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [REAPER_LOCK_ID])
        assert reap_once() is False
        with other_worker.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [REAPER_LOCK_ID])
        assert reap_once() is True
    finally:
        other_worker.close()
