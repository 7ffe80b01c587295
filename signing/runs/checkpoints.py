"""Signed checkpoints of a follow run (issue 18, point 5): every
SIGNING_FOLLOW_CHECKPOINT_BATCHES batches, "the first `batches` batches of run `run_id`, in
seq order, have this root", signed by a key of the keyring (docs/architecture.md,
"Checkpoints").

Who signs: the worker that has just stored one of the run's batches, with the key its lease
names, while it still holds that lease (before its SigningCompleted is sent): the key is
leased to it alone, so rule 2 holds; rule 3 is about records, and a checkpoint is not one.

Why none is missed: each worker looks after its own store has committed. Of two stores that
together complete a prefix, the one that commits last sees both (every look is a fresh
statement reading committed rows, and a batch once signed stays signed), so at least one of
them makes the checkpoint; both may, and the unique (run, batches) keeps one. A checkpoint
that could not be made (its lease lost, a database error) is logged and made by the next
store of the run that looks: each look starts from the run's latest checkpoint, so the
multiples are made in order and none is skipped.

A checkpoint never fails or retries its batch: `make_checkpoints` logs what went wrong and
returns.
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max

from kernel import crypto, merkle
from kernel.events import EventLogger
from kernel.vendor import Now
from keyring.leases import LeaseHint
from keyring.models import KeyLease
from signing.audit.roots import stored_run_root
from signing.models import Batch, Checkpoint

log = EventLogger(__name__)

# At most this many checkpoints per store: a catch-up after many failed ones goes on at the
# next store, so no batch waits long for its SigningCompleted.
MAX_PER_STORE = 4


def make_checkpoints(hint: LeaseHint, *, private_key: crypto.PrivateKey) -> list[int]:
    """After the batch of `hint` was stored: sign every checkpoint of its run now due, each
    fenced by the lease. Returns the batch counts checkpointed (made here, or found made by
    another worker). Never raises: a checkpoint failure must not fail the batch."""
    try:
        return _make_checkpoints(hint, private_key=private_key)
    except Exception as error:  # whatever it is, the batch is stored: it goes on
        # The type only: an error's text may quote the statement's parameters.
        log.error(
            "checkpoint.failed",
            batch_id=hint.batch_id,
            lease_id=hint.lease_id,
            error=type(error).__name__,
        )
        return []


def _make_checkpoints(hint: LeaseHint, *, private_key: crypto.PrivateKey) -> list[int]:
    run_id = (
        Batch.objects.filter(pk=hint.batch_id, run__follow=True)
        .values_list("run_id", flat=True)
        .first()
    )
    if run_id is None:  # an ordinary run: its root at completion is its checkpoint
        return []
    every = settings.SIGNING_FOLLOW_CHECKPOINT_BATCHES
    latest = Checkpoint.objects.filter(run_id=run_id).aggregate(latest=Max("batches"))["latest"]
    made: list[int] = []
    due = (latest or 0) + every
    while len(made) < MAX_PER_STORE and _prefix_signed(run_id, after=due - every, through=due):
        root = stored_run_root(run_id, through_seq=due)
        if root is None:  # a batch signed before roots existed: no checkpoint can cover it
            break
        signature = crypto.sign(private_key, merkle.checkpoint_input(run_id, due, root))
        if not _insert_fenced(hint, run_id=run_id, batches=due, root=root, signature=signature):
            break
        made.append(due)
        due += every
    return made


def _prefix_signed(run_id: int, *, after: int, through: int) -> bool:
    """Whether batches 1..`through` of the run all exist and are signed, given that those up
    to `after` are (the latest checkpoint covers them, and a batch once signed stays
    signed): one probe of the last (usually enough to say no), then the N batches between."""
    batches = Batch.objects.filter(run_id=run_id)
    if not batches.filter(seq=through, status=Batch.Status.SIGNED).exists():
        return False
    return not (
        batches.filter(seq__gt=after, seq__lte=through).exclude(status=Batch.Status.SIGNED).exists()
    )


def _insert_fenced(
    hint: LeaseHint, *, run_id: int, batches: int, root: bytes, signature: bytes
) -> bool:
    """Insert the checkpoint if the lease is still open, unexpired and under its token (as
    the store's fence: the lease row locked, so a release or expiry waits for this
    transaction, and signed_at falls inside the lease); a unique conflict means another
    worker made it first, which is as good. False if the lease is gone: nothing inserted."""
    with transaction.atomic():
        live = list(
            KeyLease.objects.select_for_update(no_key=True)
            .filter(
                pk=hint.lease_id,
                token=hint.token,
                batch_id=hint.batch_id,
                key_id=hint.key_id,
                released_at=None,
                expires_at__gt=Now(),
            )
            .values_list("pk", flat=True)[:1]
        )
        if not live:
            log.warning(
                "checkpoint.lease_lost", run_id=run_id, batches=batches, lease_id=hint.lease_id
            )
            return False
        try:
            with transaction.atomic():
                Checkpoint.objects.create(
                    run_id=run_id,
                    batches=batches,
                    merkle_root=root,
                    lease_id=hint.lease_id,
                    key_id=hint.key_id,
                    signature=signature,
                    signed_at=Now(),
                )
        except IntegrityError:
            log.info("checkpoint.made_by_another", run_id=run_id, batches=batches)
            return True
    log.info(
        "checkpoint.signed",
        run_id=run_id,
        batches=batches,
        root=root.hex(),
        kid=hint.kid,
        lease_id=hint.lease_id,
    )
    return True
