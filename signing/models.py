"""Runs and their batches (the seed's Signing Executor keeps its plan here).

Table and column names are a contract read by outside auditors (docs/architecture.md).
"""

from django.db import models
from django.db.models import Q, Value


class RunStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BatchStatus(models.TextChoices):
    PENDING = "pending"
    LEASED = "leased"
    SIGNED = "signed"
    FAILED = "failed"


class SigningRun(models.Model):
    Status = RunStatus
    ACTIVE_STATUSES = (Status.PENDING, Status.RUNNING)
    FINISHED_STATUSES = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    # Rule 5: set at start; a trigger (migration 0002) refuses any later change.
    batch_size = models.PositiveIntegerField()
    status = models.TextField(choices=Status.choices, default=Status.PENDING)
    record_count = models.PositiveIntegerField(default=0)
    batch_count = models.PositiveIntegerField(default=0)
    max_in_flight = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.TextField(blank=True, default="")
    # When the audit_run message for this finished run was last sent: the reaper sends it
    # again (a compare-and-set on this column, so one process does) while no audit has
    # been recorded SIGNING_AUDIT_RESEND_SECONDS after it, so a lost message only delays it.
    audit_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The Merkle root (SHA-256, 32 bytes) over its batches' roots in seq order
    # (kernel.merkle.batch_leaf), set in the transaction that marks it completed
    # (signing.runs.dispatch.finish_run). NULL for a run that did not complete, or one with
    # a batch signed before roots existed.
    merkle_root = models.BinaryField(null=True, blank=True, editable=False)
    # A follow run stays running and signs records as they arrive (signing.runs.follow),
    # until a graceful stop (`stop_requested_at`) or a cancel. Set at start, never changed.
    # db_default: SQLite adds the column in place instead of rebuilding the table (which
    # would drop its triggers).
    follow = models.BooleanField(default=False, db_default=False, editable=False)
    # Follow runs: every record with an id up to this one is signed or in one of the run's
    # batches; the records after it are the ones waiting to be cut.
    followed_through = models.BigIntegerField(default=0, db_default=0, editable=False)
    # Ordinary runs: the highest record id committed when the run was planned (plan_run
    # reads it in the plan's statement, under the record-insert lock), so every record up
    # to it was signed already or in one of the run's batches; 0 when there was none. NULL
    # for a run planned before signing 0015 (and for follow runs: `followed_through`). The
    # audit holds a completed run to it: a plan that dropped records cannot hide them.
    planned_through = models.BigIntegerField(null=True, blank=True, editable=False)
    # Follow runs: when a graceful stop was asked. From then on nothing more is cut; the run
    # completes once the batches cut so far are signed.
    stop_requested_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(batch_size__gt=0), name="run_batch_size_positive"),
            models.CheckConstraint(
                condition=Q(max_in_flight__gt=0), name="run_max_in_flight_positive"
            ),
            models.CheckConstraint(
                condition=Q(status__in=RunStatus.values), name="run_known_status"
            ),
            # At most one active run: a unique index over a constant, for active rows only.
            models.UniqueConstraint(
                Value(True),
                condition=Q(status__in=[RunStatus.PENDING, RunStatus.RUNNING]),
                name="run_at_most_one_active",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk}"

    def __repr__(self) -> str:
        return f"<SigningRun {self.pk} {self.status} batch_size={self.batch_size}>"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def is_following(self) -> bool:
        """Still taking records in: a follow run, running, with no stop asked."""
        return self.follow and self.status == self.Status.RUNNING and not self.stop_requested_at

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class Batch(models.Model):
    Status = BatchStatus

    run = models.ForeignKey(SigningRun, on_delete=models.CASCADE, related_name="batches")
    seq = models.PositiveIntegerField()
    # A contiguous range of record ids that were unsigned when the run was planned.
    first_record_id = models.BigIntegerField()
    last_record_id = models.BigIntegerField()
    size = models.PositiveIntegerField()
    status = models.TextField(choices=Status.choices, default=Status.PENDING)
    # Leases of this batch a worker took up (keyring KeyLease.started_at), not leases granted.
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    leased_at = models.DateTimeField(null=True, blank=True)
    signed_at = models.DateTimeField(null=True, blank=True)
    # The Merkle root (SHA-256, 32 bytes) over its signatures in record id order
    # (kernel.merkle.record_leaf), set by the statement that stores them
    # (signing.runs.store). NULL until then, and for a batch signed before roots existed
    # (signing migration 0012).
    merkle_root = models.BinaryField(null=True, blank=True, editable=False)
    # Follow runs: how many records were waiting, this batch's first among them, when the
    # batch was cut; its size is then min(waiting, the run's batch size), which the audit
    # checks (rule 5). NULL for the batches of an ordinary run's plan.
    waiting = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "seq"], name="batch_seq_unique_per_run"),
            models.CheckConstraint(condition=Q(size__gt=0), name="batch_size_positive"),
            models.CheckConstraint(
                condition=Q(first_record_id__lte=models.F("last_record_id")),
                name="batch_range_ordered",
            ),
            models.CheckConstraint(
                condition=Q(status__in=BatchStatus.values), name="batch_known_status"
            ),
        ]
        indexes = [
            models.Index(fields=["run", "status", "seq"], name="batch_run_status_idx"),
            # The claim's next pending batches by seq (signing_claim_batches_v3), found without
            # stepping over the run's batches already signed: a plan made when every batch
            # was pending (the statistics of the run's start) took batch_seq_unique_per_run and
            # filtered, so each claim read more rows than the last, under the keyring lock.
            models.Index(
                fields=["run", "seq"],
                condition=Q(status=BatchStatus.PENDING),
                name="batch_pending_by_seq",
            ),
        ]

    def __str__(self) -> str:
        return f"batch {self.pk} (#{self.seq} of run {self.run_id})"

    def __repr__(self) -> str:
        return f"<Batch {self.pk} run={self.run_id} seq={self.seq} {self.status}>"


class RunAudit(models.Model):
    """The audit of a finished run, computed once by a worker so pages can show it at once."""

    run = models.OneToOneField(
        SigningRun, primary_key=True, on_delete=models.CASCADE, related_name="audit"
    )
    passed = models.BooleanField()
    report = models.JSONField()
    audited_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"audit of run {self.run_id}: {'passed' if self.passed else 'FAILED'}"


class Checkpoint(models.Model):
    """A follow run's signed checkpoint (signing.runs.checkpoints): "the first `batches`
    batches of run `run_id`, in seq order, have root `merkle_root`", signed over
    kernel.merkle.checkpoint_input by the key of `lease_id`, while that lease was held by
    the worker that had just stored one of the run's batches. One per (run, batches)."""

    run = models.ForeignKey(SigningRun, on_delete=models.CASCADE, related_name="checkpoints")
    batches = models.PositiveIntegerField()
    # The run's root over its first `batches` batches (signing.audit.roots.stored_run_root).
    merkle_root = models.BinaryField()
    lease = models.ForeignKey(
        "keyring.KeyLease", on_delete=models.PROTECT, related_name="checkpoints"
    )
    key = models.ForeignKey(
        "keyring.SigningKey", on_delete=models.PROTECT, related_name="checkpoints"
    )
    signature = models.BinaryField()
    signed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "batches"], name="checkpoint_batches_unique_per_run"
            ),
            models.CheckConstraint(condition=Q(batches__gt=0), name="checkpoint_batches_positive"),
        ]

    def __str__(self) -> str:
        return f"checkpoint of run {self.run_id} through batch {self.batches}"
