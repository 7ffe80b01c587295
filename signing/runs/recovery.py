"""Recovery: what the run's messages cannot be trusted to do, done from the tables.

The straight path (signing.runs.dispatch) assumes every message arrives once. Here is what
happens when one does not: a SigningTriggered that ran out of retries notes its reason, a
worker that cannot open its key gives the batch back, and the reaper's tick expires overdue
leases, returns their batches (or fails them after SIGNING_MAX_ATTEMPTS), and moves every
running run forward again.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Exists, F, OuterRef, TextField, Value, When
from django.utils import timezone

from kernel.connectivity import check_broker
from kernel.events import EventLogger, log_context
from keyring.leases import LeaseHint
from keyring.models import KeyLease
from signing.models import Batch, SigningRun
from signing.runs import messages
from signing.runs.dispatch import advance_run
from signing.runs.leases import expire_leases, release_lease

log = EventLogger(__name__)


def record_batch_failure(lease: LeaseHint, *, reason: str) -> None:
    """Note why a SigningTriggered gave up (its retries ran out) on the batch it names.

    Nothing else changes: the lease runs out and the reaper gives the batch back, counting
    the attempt (a worker took it up). A failure is a broker message, and the broker is not
    trusted: were it to close the lease, a forged one could take any live batch from its
    worker. Only a lease still open under this token gets its batch's reason written.
    """
    open_lease = KeyLease.objects.filter(pk=lease.lease_id, token=lease.token, released_at=None)
    batch_id = open_lease.values_list("batch_id", flat=True).first()
    if batch_id is not None:
        Batch.objects.filter(pk=batch_id, status=Batch.Status.LEASED).update(
            last_error=f"{_failure_prefix(lease.lease_id)}{reason}"[:2000]
        )
        log.warning(
            "batch.attempt_failed", batch_id=batch_id, lease_id=lease.lease_id, reason=reason
        )


def give_back_batch(lease: LeaseHint, *, reason: str) -> None:
    """Close a lease whose worker cannot sign its batch (its KEK does not open the key) and
    give the batch back at once, with the reason, instead of letting the lease run out; then
    keep the run moving.

    Called by the worker that took the batch up under this lease, never on a broker
    message's word. The attempt counted at take-up stands, so a batch that no worker can
    sign fails after SIGNING_MAX_ATTEMPTS take-ups, within seconds, and its run with it,
    with the reason; a worker whose KEK is right takes it up meanwhile.
    """
    with transaction.atomic():
        batch_id = release_lease(lease_id=lease.lease_id, outcome=KeyLease.Outcome.FAILED)
        if batch_id is None:  # expired or released already: whoever closed it gave it back
            return
        return_batch(batch_id=batch_id, reason=f"{_failure_prefix(lease.lease_id)}{reason}")
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
    for batch_id, run_id in orphaned.values_list("id", "run_id"):
        with log_context(run_id=run_id):
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
        for lease_id, batch_id, run_id in expired:
            with log_context(run_id=run_id):
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
    reapers look, one sends. Runs that never asked for an audit (those cancelled before
    cancel_run asked for one too, issue 20) are left.
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
            transaction.on_commit(partial(messages.send, messages.AUDIT_RUN, run_id=run_id))
            resent += 1
    return resent
