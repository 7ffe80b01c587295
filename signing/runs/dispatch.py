"""The seed's Signing Executor: plan a run, lease keys to its batches, finish it.

A run moves forward by events only: start fills the pipeline, and every SigningCompleted
releases one lease and dispatches again. Nothing here sleeps or polls.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import partial
from typing import Final

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, F, OuterRef, TextField, Value, When
from django.utils import timezone

from kernel.connectivity import check_broker
from kernel.events import EventLogger
from kernel.vendor import Now, constraint_name
from keyring import sealing
from keyring.exceptions import KekError
from keyring.leases import GrantedLease
from keyring.models import KeyLease
from keyring.selectors import free_keys
from keyring.services import check_kek_opens_keyring, rotate_kek
from signing.backends import backend
from signing.models import Batch, SigningRun
from signing.runs import messages
from signing.runs.exceptions import InvalidBatchSize, NotReadyToSign, RunAlreadyActive
from signing.runs.leases import expire_leases, log_granted, release_lease

log = EventLogger(__name__)

# The largest batch size PostgreSQL's integer column holds; far more than any keyring needs.
MAX_BATCH_SIZE: Final = 2_147_483_647


# A decimal string as a user types it: one optional sign, then ASCII digits only. Not
# str.isdigit(), which also says yes to "²" and fullwidth digits, nor a strip of every
# sign, which let "--5" through to int().
_DECIMAL: Final = re.compile(r"[+-]?([0-9]+)")


def parse_batch_size(raw: object) -> int:
    """Accept a whole number from 1 to MAX_BATCH_SIZE (or its decimal string), nothing else."""
    if isinstance(raw, bool):
        raise InvalidBatchSize("batch size must be a whole number, not a boolean")
    if isinstance(raw, str):
        text = raw.strip()
        decimal = _DECIMAL.fullmatch(text)
        if decimal is None:
            raise InvalidBatchSize(f"batch size must be a whole number, got {raw!r}")
        digits = decimal[1].lstrip("0")
        if len(digits) > len(str(MAX_BATCH_SIZE)):  # and int() refuses past 4,300 digits
            raise InvalidBatchSize(
                f"batch size must be from 1 to {MAX_BATCH_SIZE}, got a {len(digits)}-digit number"
            )
        raw = int(text)
    if not isinstance(raw, int):
        raise InvalidBatchSize(f"batch size must be a whole number, got {raw!r}")
    if not 1 <= raw <= MAX_BATCH_SIZE:
        raise InvalidBatchSize(f"batch size must be from 1 to {MAX_BATCH_SIZE}, got {raw}")
    return raw


def check_ready_to_sign() -> None:
    """Refuse to start a run that could never progress; the message says how to fix it.

    Checked where the run is started (the CLI, the dashboard, the API); the workers' own
    environment may still differ, and a run whose batches cannot be signed fails there.
    A process without a KEK (the web tier of a deployment: it never signs) leaves the KEK
    to the workers, which check it when they start and give a batch back at once, with
    the reason, when it does not open its key (signing.runs.services.sign_batch). In embedded
    mode the workers are this process's threads, so the KEK is checked here whatever.
    """
    if settings.SIGNING_EMBEDDED or sealing.kek_is_set():
        try:
            check_kek_opens_keyring()
        except KekError as error:
            raise NotReadyToSign(str(error)) from None
    if not free_keys().exists():
        raise NotReadyToSign("no enabled key is free: seed keys first (manage.py seed)")
    check_broker_reachable()


def check_broker_reachable() -> None:
    """Raise NotReadyToSign, saying how to fix it, unless the broker answers."""
    try:
        check_broker()
    except Exception as error:  # whatever the client raises, the run could not be dispatched
        raise NotReadyToSign(
            f"cannot reach the broker at BROKER_URL ({type(error).__name__}: {error}): "
            "start Redis (or RabbitMQ) or fix BROKER_URL"
        ) from None


def start_run(*, batch_size: int, max_in_flight: int | None = None) -> SigningRun:
    """Create and plan a run and, once that commits, fill the pipeline.

    A run with nothing to sign is completed at once.
    """
    with transaction.atomic():
        run = plan_run(batch_size=batch_size, max_in_flight=max_in_flight)
        if run.batch_count == 0:
            finish_run_if_done(run.pk)
        else:
            transaction.on_commit(partial(fill_run, run.pk))
    run.refresh_from_db()
    return run


def plan_run(*, batch_size: int, max_in_flight: int | None = None) -> SigningRun:
    """Create a running run and cut the unsigned records into its batches; send nothing.

    At most one run is active: the database's unique index decides, so two starts racing
    each other cannot both win.
    """
    batch_size = parse_batch_size(batch_size)
    with transaction.atomic():
        try:
            with transaction.atomic():
                run = SigningRun.objects.create(
                    batch_size=batch_size,
                    status=SigningRun.Status.RUNNING,
                    max_in_flight=max_in_flight or settings.SIGNING_MAX_IN_FLIGHT,
                    started_at=Now(),
                )
        except IntegrityError as error:
            if constraint_name(error) != "run_at_most_one_active":
                raise
            active = SigningRun.objects.filter(status__in=SigningRun.ACTIVE_STATUSES).first()
            raise RunAlreadyActive(active.pk if active else None) from None
        run.batch_count, run.record_count = backend().plan_batches(
            run_id=run.pk, batch_size=batch_size
        )
        run.save(update_fields=["batch_count", "record_count"])
    log.info(
        "run.planned",
        run_id=run.pk,
        batch_size=batch_size,
        batches=run.batch_count,
        records=run.record_count,
    )
    return run


def fill_run(run_id: int, *, release_lease_id: int | None = None) -> int:
    """Dispatch batches until the run's in-flight limit, its batches or free keys run out.

    One call of signing_claim_batches_v2 (migration 0007) releases `release_lease_id` if
    given (and only if its batch is stored), counts what is in flight, claims the next
    pending batches (SKIP LOCKED, by seq) and leases each the LRU free key, all under one
    turn of the keyring lock. The SigningTriggered messages leave only after that commits.
    Returns how many were claimed.
    """
    leases = backend().claim_batches(
        run_id=run_id, ttl_seconds=settings.SIGNING_LEASE_TTL, release_lease_id=release_lease_id
    )
    for lease in leases:
        log_granted(lease)
    if leases:
        transaction.on_commit(partial(_send_signing_triggered, run_id, leases))
    return len(leases)


def _send_signing_triggered(run_id: int, leases: list[GrantedLease]) -> None:
    """Send one SigningTriggered per lease: ids only, the lease's hint to its worker.

    No record and no key travels: the worker reads both from the database under the lease.
    If the broker refuses a send, the leases not sent yet are given back at once (their
    batches go back to pending, no attempt counted), and the reaper dispatches them again
    once the broker answers: an outage only delays the run.
    """
    for sent, lease in enumerate(leases):
        try:
            messages.send(
                messages.SIGNING_TRIGGERED,
                run_id=run_id,
                batch_id=lease.batch_id,
                lease_id=lease.id,
                token=lease.token,
                key_id=lease.key_id,
                kid=lease.kid,
            )
        except Exception as error:  # whatever the client raises, these were not sent
            log.warning(
                "dispatch.send_failed", run_id=run_id, unsent=len(leases) - sent, error=error
            )
            _give_back_unsent([unsent.id for unsent in leases[sent:]])
            return


def _give_back_unsent(lease_ids: list[int]) -> None:
    """Close leases whose SigningTriggered could not be sent, and put their batches back.

    Had a message left after all (the client gave up waiting for the broker's answer), its
    worker finds the lease closed and signs nothing.
    """
    with transaction.atomic():
        for lease_id in lease_ids:
            batch_id = release_lease(lease_id=lease_id, outcome=KeyLease.Outcome.FAILED)
            if batch_id is not None:
                Batch.objects.filter(pk=batch_id, status=Batch.Status.LEASED).update(
                    status=Batch.Status.PENDING
                )


def complete_batch(*, run_id: int, lease_id: int) -> None:
    """Handle SigningCompleted: release the lease, dispatch the next batch, maybe finish.

    Release and dispatch are one statement (one turn of the keyring lock). The lease is
    released only if its batch is stored and of this run: the message is not trusted.
    Safe to run twice: the second release finds the lease closed and changes nothing, and
    the dispatch finds the run's in-flight limit already met.
    """
    advance_run(run_id, release_lease_id=lease_id)
    log.debug("batch.completed", run_id=run_id, lease_id=lease_id)


def record_batch_failure(*, lease_id: int, token: int, reason: str) -> None:
    """Note why a SigningTriggered gave up (its retries ran out) on the batch it names.

    Nothing else changes: the lease runs out and the reaper gives the batch back, counting
    the attempt (a worker took it up). A failure is a broker message, and the broker is not
    trusted: were it to close the lease, a forged one could take any live batch from its
    worker. Only a lease still open under this token gets its batch's reason written.
    """
    open_lease = KeyLease.objects.filter(pk=lease_id, token=token, released_at=None)
    batch_id = open_lease.values_list("batch_id", flat=True).first()
    if batch_id is not None:
        Batch.objects.filter(pk=batch_id, status=Batch.Status.LEASED).update(
            last_error=f"{_failure_prefix(lease_id)}{reason}"[:2000]
        )
        log.warning("batch.attempt_failed", batch_id=batch_id, lease_id=lease_id, reason=reason)


def give_back_batch(*, lease_id: int, reason: str) -> None:
    """Close a lease whose worker cannot sign its batch (its KEK does not open the key) and
    give the batch back at once, with the reason, instead of letting the lease run out; then
    keep the run moving.

    Called by the worker that took the batch up under this lease, never on a broker
    message's word. The attempt counted at take-up stands, so a batch that no worker can
    sign fails after SIGNING_MAX_ATTEMPTS take-ups, within seconds, and its run with it,
    with the reason; a worker whose KEK is right takes it up meanwhile.
    """
    with transaction.atomic():
        batch_id = release_lease(lease_id=lease_id, outcome=KeyLease.Outcome.FAILED)
        if batch_id is None:  # expired or released already: whoever closed it gave it back
            return
        return_batch(batch_id=batch_id, reason=f"{_failure_prefix(lease_id)}{reason}")
        run_id = Batch.objects.values_list("run_id", flat=True).get(pk=batch_id)
    advance_run(run_id)


def return_batch(*, batch_id: int, reason: str, lease_id: int | None = None) -> None:
    """Put a batch whose lease ended unsigned back to pending, or fail it for good once
    workers have taken it up SIGNING_MAX_ATTEMPTS times. A batch already signed stays
    signed. A failure its worker recorded under `lease_id` is kept as the reason."""
    reason_kept = Value(reason[:2000], output_field=TextField())
    if lease_id is not None:
        reason_kept = Case(
            When(last_error__startswith=_failure_prefix(lease_id), then=F("last_error")),
            default=reason_kept,
        )
    returned = Batch.objects.filter(pk=batch_id, status=Batch.Status.LEASED).update(
        status=Case(
            When(attempts__gte=settings.SIGNING_MAX_ATTEMPTS, then=Value(Batch.Status.FAILED)),
            default=Value(Batch.Status.PENDING),
        ),
        last_error=reason_kept,
    )
    if returned:
        log.warning("batch.returned", batch_id=batch_id, reason=reason)


def _failure_prefix(lease_id: int) -> str:
    return f"lease {lease_id} failed: "


def _return_orphaned_batches() -> None:
    """Batches marked leased with no open lease (none should exist): give them back."""
    held = KeyLease.objects.filter(batch_id=OuterRef("pk"), released_at=None)
    orphaned = Batch.objects.filter(status=Batch.Status.LEASED).exclude(Exists(held))
    for batch_id in orphaned.values_list("id", flat=True):
        return_batch(batch_id=batch_id, reason="leased without an open lease")


def recover() -> int:
    """The reaper's tick: expire overdue leases, give their batches back, resume runs.

    Messages are hints and the tables are the truth: whatever was lost (a SigningTriggered
    in a restarted Redis, a SigningCompleted from a killed worker, an audit_run), an expired
    lease frees its key and batch here, every running run is filled again or finished, and
    a finished run still waiting for its audit gets its audit_run again. Returns how many
    leases expired.
    """
    expired = reclaim_expired_leases()
    resume_runs()
    return expired


def reclaim_expired_leases() -> int:
    """Close every overdue lease and give its batch back, in one transaction (a batch is
    never left leased with its lease closed); return how many expired."""
    with transaction.atomic():
        expired = expire_leases()
        for lease_id, batch_id in expired:
            return_batch(
                batch_id=batch_id,
                reason=f"lease {lease_id} expired before its batch was stored",
                lease_id=lease_id,
            )
        _return_orphaned_batches()
    return len(expired)


def resume_runs() -> bool:
    """Fill or finish every running run, and ask again for audits that never came; False,
    doing nothing, while the broker does not answer.

    A claim whose message cannot leave would only churn leases (each is given back at once,
    but stamps its key), so an outage is waited out here. Run outside any transaction: the
    broker check may take seconds, and a transaction left idle that long is cut off
    (idle_in_transaction_session_timeout).
    """
    try:
        check_broker()
    except Exception as error:  # whatever the client raises, no message could leave now
        log.warning("reaper.broker_unreachable", error=error)
        return False
    running = SigningRun.objects.filter(status=SigningRun.Status.RUNNING)
    for run_id in running.values_list("id", flat=True):
        advance_run(run_id)
    resend_lost_audits()
    return True


def resend_lost_audits() -> int:
    """Send audit_run again for finished runs with no audit SIGNING_AUDIT_RESEND_SECONDS
    after it was last sent (the message was lost, or its worker died); return how many.

    Each resend is claimed with a compare-and-set on `audit_requested_at`, so however many
    reapers look, one sends. Runs that never asked for an audit (cancelled ones) are left.
    """
    now = timezone.now()
    overdue = now - timedelta(seconds=settings.SIGNING_AUDIT_RESEND_SECONDS)
    waiting = SigningRun.objects.filter(
        status__in=SigningRun.FINISHED_STATUSES, audit=None, audit_requested_at__lt=overdue
    )
    resent = 0
    for run_id in waiting.values_list("id", flat=True):
        claimed = waiting.filter(pk=run_id).update(audit_requested_at=now)
        if claimed:
            log.warning("run.audit_resent", run_id=run_id)
            transaction.on_commit(partial(_send_audit_run, run_id))
            resent += 1
    return resent


def advance_run(run_id: int, *, release_lease_id: int | None = None) -> None:
    """Keep the run moving: dispatch what it can, or finish it when nothing is left."""
    if not fill_run(run_id, release_lease_id=release_lease_id):
        finish_run_if_done(run_id)


def finish_run_if_done(run_id: int) -> bool:
    """Mark the run completed (or failed) once no batch is pending or held by a lease.

    A compare-and-set: of two completions racing here, exactly one finishes the run.
    """
    unfinished = Batch.objects.filter(status__in=[Batch.Status.PENDING, Batch.Status.LEASED])
    if unfinished.filter(run_id=run_id).exists():
        # The common answer, from one probe of an index: every reaper tick asks, and so
        # does a completion whose claim found no free key, while most batches remain.
        return False
    unfinished = unfinished.filter(run_id=OuterRef("pk"))
    held = KeyLease.objects.filter(batch__run_id=OuterRef("pk"), released_at=None)
    failed = Batch.objects.filter(run_id=OuterRef("pk"), status=Batch.Status.FAILED)
    # One transaction: nobody may see a failed run before its reason (callers such as
    # give_back_batch's advance_run run outside one).
    with transaction.atomic():
        finished = (
            SigningRun.objects.filter(pk=run_id, status=SigningRun.Status.RUNNING)
            .exclude(Exists(unfinished))
            .exclude(Exists(held))
            .update(
                status=Case(
                    When(Exists(failed), then=Value(SigningRun.Status.FAILED)),
                    default=Value(SigningRun.Status.COMPLETED),
                ),
                finished_at=Now(),
                audit_requested_at=Now(),
            )
        )
        if finished:
            _record_failure_reason(run_id)
            log.info("run.finished", run_id=run_id)
            transaction.on_commit(partial(_send_audit_run, run_id))
    return bool(finished)


def _send_audit_run(run_id: int) -> None:
    messages.send(messages.AUDIT_RUN, run_id=run_id)


def _record_failure_reason(run_id: int) -> None:
    failed = Batch.objects.filter(run_id=run_id, status=Batch.Status.FAILED)
    count = failed.count()
    if count:
        first = failed.order_by("seq").values("seq", "last_error").first()
        SigningRun.objects.filter(pk=run_id).update(
            failure_reason=(
                f"{count} batch(es) failed after {settings.SIGNING_MAX_ATTEMPTS} attempts; "
                f"first, batch #{first['seq']}: {first['last_error']}"
            )[:2000]
        )


def rotate_kek_between_runs(*, old_kek: bytes, new_kek: bytes) -> int:
    """Re-seal every private key under a new KEK while no run is active; return how many.

    An active run's workers may still need the current KEK, so this raises
    RunAlreadyActive while one is. The check and the rotation are one transaction in
    which no run starts or changes status: on PostgreSQL it holds signing_signingrun in
    SHARE mode, so a start not yet committed makes it wait, then refuse, and a start
    after it waits for the rotation; on SQLite BEGIN IMMEDIATE holds the one write lock.
    The keyring lock comes first, as in cancel_run (keyring lock, then the run), so the
    two cannot wait for each other.
    """
    with transaction.atomic():
        backend().lock_keyring()
        backend().block_run_changes()
        active = SigningRun.objects.filter(status__in=SigningRun.ACTIVE_STATUSES).first()
        if active is not None:
            raise RunAlreadyActive(active.pk)
        return rotate_kek(old_kek=old_kek, new_kek=new_kek)


def cancel_run(run_id: int) -> bool:
    """Stop an active run: release its open leases (their writers then store nothing).

    Returns False if the run had already finished. Its signed batches stay signed; the
    records it did not reach are planned again by the next run. Under the keyring lock,
    taken before the run changes: a dispatch (signing_claim_batches) reads the run's
    status under that lock, so a lease it grants either commits before the cancel, which
    then sees and releases it, or comes after and finds the run cancelled. Without it a
    lease claimed in that instant stayed open on a cancelled run.
    """
    with transaction.atomic():
        backend().lock_keyring()
        cancelled = SigningRun.objects.filter(
            pk=run_id, status__in=SigningRun.ACTIVE_STATUSES
        ).update(status=SigningRun.Status.CANCELLED, finished_at=Now())
        if not cancelled:
            return False
        open_leases = KeyLease.objects.filter(batch__run_id=run_id, released_at=None)
        for lease_id in open_leases.values_list("id", flat=True):
            release_lease(lease_id=lease_id, outcome=KeyLease.Outcome.FAILED)
        Batch.objects.filter(run_id=run_id, status=Batch.Status.LEASED).update(
            status=Batch.Status.PENDING
        )
    log.info("run.cancelled", run_id=run_id)
    return True
