"""The seed's Signing Executor: start and plan a run, dispatch its batches, finish it.

One verb per step of a batch's straight path: `start_run` (checks, then `plan_run` and the
first `dispatch_batches`), `dispatch_batches` (claim batches, lease each the LRU free key,
send SigningTriggered once that commits), `advance_run` (SigningCompleted messages: release
and dispatch again, or `finish_run` when nothing is left). Signing and storing are the worker's
(signing.runs.services, signing.runs.store); what a lost or late message leaves behind is
signing.runs.recovery's. A run moves forward by events only: nothing here sleeps or polls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Final, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, OuterRef, Value, When

from kernel.connectivity import check_broker
from kernel.events import EventLogger, log_context
from kernel.vendor import Now, constraint_name
from keyring import sealing
from keyring.exceptions import KekError
from keyring.leases import GrantedLease
from keyring.models import KeyLease, SigningKey
from keyring.services import Resealed, check_kek_opens_keyring, reseal_keys, rotate_kek
from signing.audit.roots import stored_run_root
from signing.backends import backend
from signing.models import Batch, SigningRun
from signing.runs import messages
from signing.runs.audits import request_audit
from signing.runs.exceptions import (
    InvalidBatchSize,
    NothingToSign,
    NotReadyToSign,
    RunAlreadyActive,
)
from signing.runs.leases import log_granted, release_lease

log = EventLogger(__name__)
T = TypeVar("T")

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
    the reason, when it does not open its key (signing.runs.services.sign_batch). Where the
    workers are this process's threads (embedded mode), the KEK is checked here whatever.
    """
    if backend().signs_in_this_process or sealing.kek_is_set():
        try:
            check_kek_opens_keyring()
        except KekError as error:
            raise NotReadyToSign(str(error)) from None
    # Enabled, not free: every key may be held by the active run's leases (in embedded
    # mode, those of a process killed mid-run, which `sign` takes over); the start then
    # says the run is active, or resumes it, and the keys come back as the leases end.
    if not SigningKey.objects.filter(enabled=True).exists():
        raise NotReadyToSign("no key is enabled: seed keys first (manage.py seed)")
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


def start_run(
    *, batch_size: int, max_in_flight: int | None = None, keep_if_empty: bool = True
) -> SigningRun:
    """Create and plan a run and, once that commits, fill the pipeline.

    A run with nothing to sign is completed at once, and kept: the dashboard and the API
    list it, the answer to the start someone asked for. With `keep_if_empty=False`
    (`manage.py sign`, typed again and again) it is rolled back instead and NothingToSign
    raised: the plan decides, in the same transaction, so no record can slip between a
    check and the start. (A follow run starts with signing.runs.follow.start_follow_run.)
    """
    with transaction.atomic():
        run = plan_run(batch_size=batch_size, max_in_flight=max_in_flight)
        if run.batch_count == 0 and not keep_if_empty:
            log.info("run.discarded_empty", run_id=run.pk)  # after its run.planned line
            raise NothingToSign
        if run.batch_count == 0:
            finish_run(run.pk)
        else:
            transaction.on_commit(partial(dispatch_batches, run.pk))
    run.refresh_from_db()
    return run


def plan_run(*, batch_size: int, max_in_flight: int | None = None) -> SigningRun:
    """Create a running run and cut the unsigned records into its batches; send nothing.

    At most one run is active: the database's unique index decides, so two starts racing
    each other cannot both win. The plan waits out record inserts in flight first (the
    backend's lock_record_inserts): records arrive at any time (ingest), and one committed
    after the plan with an id inside a planned range would be signed by that batch on top
    of its planned size. The plan also stamps the highest record id it saw
    (`planned_through`): every record up to it is signed or in one of the run's batches, so
    the audit names any a completed run left unsigned, even outside every batch's range.
    """
    with transaction.atomic():
        run = create_run(batch_size=batch_size, max_in_flight=max_in_flight)
        backend().lock_record_inserts()
        run.batch_count, run.record_count, run.planned_through = backend().plan_batches(
            run_id=run.pk, batch_size=run.batch_size
        )
        run.save(update_fields=["batch_count", "record_count", "planned_through"])
    log.info(
        "run.planned",
        run_id=run.pk,
        batch_size=run.batch_size,
        batches=run.batch_count,
        records=run.record_count,
    )
    return run


def create_run(
    *, batch_size: int, max_in_flight: int | None = None, follow: bool = False
) -> SigningRun:
    """Insert a running run, or raise RunAlreadyActive: the unique index decides."""
    batch_size = parse_batch_size(batch_size)
    try:
        with transaction.atomic():
            return SigningRun.objects.create(
                batch_size=batch_size,
                status=SigningRun.Status.RUNNING,
                max_in_flight=max_in_flight or settings.SIGNING_MAX_IN_FLIGHT,
                started_at=Now(),
                follow=follow,
            )
    except IntegrityError as error:
        if constraint_name(error) != "run_at_most_one_active":
            raise
        active = SigningRun.objects.filter(status__in=SigningRun.ACTIVE_STATUSES).first()
        raise RunAlreadyActive(active.pk if active else None) from None


def dispatch_batches(run_id: int, *, release_lease_ids: Sequence[int] = ()) -> int:
    """Dispatch batches until the run's in-flight limit, its batches or free keys run out.

    One call of signing_claim_batches_v3 (migration 0010) releases the leases of
    `release_lease_ids` (each only if its batch is stored and of this run), counts what is
    in flight, claims the next pending batches (SKIP LOCKED, by seq) and leases each the LRU
    free key, all under one turn of the keyring lock. The SigningTriggered messages leave
    only after that commits. Returns how many were claimed.
    """
    leases = backend().claim_batches(
        run_id=run_id, ttl_seconds=settings.SIGNING_LEASE_TTL, release_lease_ids=release_lease_ids
    )
    with log_context(run_id=run_id):
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
    with log_context(run_id=run_id):  # the lease.released and batch.returned of a give-back
        _send_each(run_id, leases)


def _send_each(run_id: int, leases: list[GrantedLease]) -> None:
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


def advance_run(run_id: int, *, release_lease_ids: Sequence[int] = ()) -> None:
    """Move the run forward: dispatch what it can, or finish it when nothing is left.

    With `release_lease_ids` this is how SigningCompleted messages are handled (one, or a
    group: signing.runs.completions): release and dispatch are one statement (one turn of
    the keyring lock), and a lease is released only if its batch is stored and of this run:
    the message is not trusted. Safe to run twice: the second release finds the lease closed
    and changes nothing, and the dispatch finds the run's in-flight limit already met. The
    reaper calls it without a lease to resume a run.
    """
    if not dispatch_batches(run_id, release_lease_ids=release_lease_ids):
        finish_run(run_id)


def finish_run(run_id: int) -> bool:
    """Mark the run completed (or failed) once no batch is pending or held by a lease, and,
    for a follow run, once it was asked to stop (until then it waits for records).

    A compare-and-set: of two completions racing here, exactly one finishes the run. A run
    completed gets its Merkle root in the same transaction.
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
    # recovery's give_back_batch run outside one).
    with transaction.atomic():
        finished = (
            SigningRun.objects.filter(pk=run_id, status=SigningRun.Status.RUNNING)
            .exclude(follow=True, stop_requested_at=None)
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
            _record_merkle_root(run_id)
            backend().announce_run_finished(run_id)
            log.info("run.finished", run_id=run_id)
            request_audit(run_id)
    return bool(finished)


def _record_merkle_root(run_id: int) -> None:
    """A completed run's root over its batches' roots, in the transaction that completed it,
    so a completed run always has its root (unless a batch was signed before roots
    existed: signing.audit.roots.stored_run_root gives none then)."""
    merkle_root = stored_run_root(run_id)
    if merkle_root is not None:
        SigningRun.objects.filter(pk=run_id, status=SigningRun.Status.COMPLETED).update(
            merkle_root=merkle_root
        )


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
    """Re-seal every private key under a new KEK while no run is active; return how many."""
    return _between_runs(partial(rotate_kek, old_kek=old_kek, new_kek=new_kek))


def reseal_keys_between_runs(*, old_kek: bytes, kek: bytes, old_name: str) -> Resealed:
    """Re-seal under `kek` the keys it does not open but `old_kek` does, while no run is
    active: a worker of a run may hold `old_kek` and need the keys as they are sealed now."""
    return _between_runs(partial(reseal_keys, old_kek=old_kek, kek=kek, old_name=old_name))


def _between_runs(reseal: Callable[[], T]) -> T:
    """Change the keys' seals while no run is active; return what the change returns.

    An active run's workers may still need the seals as they are, so this raises
    RunAlreadyActive while one is. The check and the change are one transaction in which
    no run starts or changes status: on PostgreSQL it holds signing_signingrun in SHARE
    mode, so a start not yet committed makes it wait, then refuse, and a start after it
    waits for the change; on SQLite BEGIN IMMEDIATE holds the one write lock. The keyring
    lock comes first, as in cancel_run (keyring lock, then the run), so the two cannot
    wait for each other.
    """
    with transaction.atomic():
        backend().lock_keyring()
        backend().block_run_changes()
        active = SigningRun.objects.filter(status__in=SigningRun.ACTIVE_STATUSES).first()
        if active is not None:
            raise RunAlreadyActive(active.pk)
        return reseal()


def cancel_run(run_id: int) -> bool:
    """Stop an active run: release its open leases (their writers then store nothing).

    Returns False if the run had already finished. Its signed batches stay signed; the
    batches it did not sign stay pending in the table, shown and counted as cancelled
    (docs/architecture.md, Decisions), and their records are planned again by the next run.
    Its audit is asked for as a finished run's is (finish_run, signing.runs.audits): the run
    page shows it, and the reaper sends it again if the message is lost; in a process whose
    messages reach no worker (embedded mode's `cancel`), it is audited here on commit.
    Under the keyring lock, taken before the run changes: a dispatch
    (signing_claim_batches_v3) reads the run's status under that lock, so a lease it grants
    either commits before the cancel, which then sees and releases it, or comes after and
    finds the run cancelled. Without it a lease claimed in that instant stayed open on a
    cancelled run.
    """
    with transaction.atomic():
        backend().lock_keyring()
        cancelled = SigningRun.objects.filter(
            pk=run_id, status__in=SigningRun.ACTIVE_STATUSES
        ).update(status=SigningRun.Status.CANCELLED, finished_at=Now(), audit_requested_at=Now())
        if not cancelled:
            return False
        open_leases = KeyLease.objects.filter(batch__run_id=run_id, released_at=None)
        with log_context(run_id=run_id):
            for lease_id in open_leases.values_list("id", flat=True):
                release_lease(lease_id=lease_id, outcome=KeyLease.Outcome.FAILED)
        Batch.objects.filter(run_id=run_id, status=Batch.Status.LEASED).update(
            status=Batch.Status.PENDING
        )
        backend().announce_run_finished(run_id)
        # robust: the run is cancelled whatever the broker says; a lost audit is resent.
        # Embedded `manage.py cancel` has no worker to hear audit_run: audited here then.
        request_audit(run_id)
    log.info("run.cancelled", run_id=run_id)
    return True
