"""The keyring: signing keys and the history of every lease granted on them.

Table and column names are a contract read by outside auditors (docs/architecture.md).
"""

from django.contrib.postgres.fields import DateTimeRangeField, RangeOperators
from django.db import models
from django.db.models import Func, Q

from kernel import crypto
from kernel.vendor import PostgresExclusionConstraint


class TsTzRange(Func):
    """``tstzrange(lower, upper)``: a NULL upper bound is open, i.e. a lease still held."""

    function = "TSTZRANGE"
    output_field = DateTimeRangeField()


class SigningKey(models.Model):
    kid = models.TextField(unique=True)
    algorithm = models.TextField(
        choices=[(name, name) for name in crypto.ALGORITHMS], default=crypto.ED25519
    )
    public_key_pem = models.TextField()
    # AES-GCM under SIGNING_KEK (keyring.sealing); never stored, shown or logged in clear.
    encrypted_private_key = models.BinaryField(editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    # When `keys disable` took it out of the keyring, stamped under the keyring lock by the
    # clock leases use, so the audit's replay knows exactly when it stopped being a candidate.
    # NULL for an enabled key (and for one disabled before this column existed).
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    # When `keys retire` took it out for good: disabled, never enabled again (a constraint
    # says so), its sealed private key erased from this row (left empty; backups and
    # processes that opened it before still hold it), its public key kept for verifying
    # what it signed. NULL for a key not retired.
    retired_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Stamped by create_keys under the keyring lock by the clock leases use: the audit's
    # replay counts a key as a candidate from this instant. No default, so no other path
    # can stamp it by another clock (auto_now_add took this process's, before the commit).
    created_at = models.DateTimeField(editable=False)
    # The open lease holding the key, NULL when free: the seed's "locked flag". Set and
    # cleared with the lease under the keyring lock; the leases stay the proof (their
    # exclusion constraint refuses a second holder whatever this says). It saves the LRU
    # pick from probing lease history, which grows with every batch. Neither it nor
    # last_used_at is indexed, so the two updates per batch are HOT (in-page) updates.
    held_by = models.ForeignKey(
        "KeyLease",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(algorithm__in=crypto.ALGORITHMS), name="signingkey_known_algorithm"
            ),
            models.CheckConstraint(
                condition=Q(enabled=False) | Q(disabled_at=None),
                name="signingkey_enabled_has_no_disabled_at",
            ),
            models.CheckConstraint(
                condition=Q(retired_at=None) | Q(enabled=False),
                name="signingkey_retired_is_disabled",
            ),
        ]

    def __repr__(self) -> str:
        return f"<SigningKey {self.kid} {self.algorithm}>"

    def __str__(self) -> str:
        return self.kid


class KeyLease(models.Model):
    """One row per lease ever granted: the proof of rules 2 and 4."""

    class Outcome(models.TextChoices):
        COMPLETED = "completed"
        EXPIRED = "expired"
        FAILED = "failed"

    # Not indexed on its own: keylease_token_unique_per_key (key_id, token) leads with it.
    key = models.ForeignKey(
        SigningKey, on_delete=models.PROTECT, related_name="leases", db_index=False
    )
    batch = models.ForeignKey("signing.Batch", on_delete=models.PROTECT, related_name="leases")
    # Fencing number: increases per key, so a stale holder is told apart from the current one.
    token = models.BigIntegerField()
    acquired_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    # When a worker first took the lease up to sign its batch (signing.runs.services.sign_batch);
    # NULL when none did (its message was lost, or never sent while the broker was down).
    # A batch's attempts count the leases taken up, not the leases granted: a broker outage
    # must only delay a run, never use up its attempts.
    started_at = models.DateTimeField(null=True, blank=True)
    # NULL while held, like released_at (a check constraint ties the two together).
    outcome = models.TextField(choices=Outcome.choices, null=True, blank=True)  # noqa: DJ001

    class Meta:
        constraints = [
            # Rule 2, enforced by the database: no two leases of one key overlap in time
            # (on SQLite by a trigger of the same name, migration 0006).
            PostgresExclusionConstraint(
                name="keylease_no_overlap_per_key",
                index_type="gist",
                expressions=[
                    ("key", RangeOperators.EQUAL),
                    (TsTzRange("acquired_at", "released_at"), RangeOperators.OVERLAPS),
                ],
            ),
            # A batch is held by at most one lease at a time (rule 3 under redelivery).
            models.UniqueConstraint(
                fields=["batch"], condition=Q(released_at=None), name="keylease_one_open_per_batch"
            ),
            models.UniqueConstraint(fields=["key", "token"], name="keylease_token_unique_per_key"),
            # Lease, key and batch named together. records_signature's triggers
            # (signature_matches_lease) check a signature against its lease's key and batch.
            models.UniqueConstraint(
                fields=["id", "key", "batch"], name="keylease_id_key_batch_unique"
            ),
            models.CheckConstraint(
                condition=Q(released_at=None) | Q(released_at__gte=models.F("acquired_at")),
                name="keylease_released_after_acquired",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("acquired_at")),
                name="keylease_expires_after_acquired",
            ),
            models.CheckConstraint(
                condition=Q(released_at=None, outcome=None)
                | (~Q(released_at=None) & ~Q(outcome=None)),
                name="keylease_outcome_iff_released",
            ),
        ]

    def __str__(self) -> str:
        return f"lease {self.pk} (token {self.token})"

    def __repr__(self) -> str:
        return f"<KeyLease {self.pk} key={self.key_id} batch={self.batch_id} token={self.token}>"


class KeyDisabledPeriod(models.Model):
    """One row per time a key was out of the keyring: [disabled_at, enabled_at).

    The audit's LRU replay reads these to know, at each lease, which keys were candidates;
    `SigningKey.disabled_at` only says when the current period began, and a key enabled again
    would otherwise leave no trace of the time it was out. Written with the key's change,
    under the keyring lock, by keyring.services.set_keys_enabled.
    """

    key = models.ForeignKey(
        SigningKey, on_delete=models.PROTECT, related_name="disabled_periods", db_index=False
    )
    disabled_at = models.DateTimeField()
    # NULL while the key is still disabled.
    enabled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "disabled_at"], name="disabledperiod_key_start"),
            models.UniqueConstraint(
                fields=["key"], condition=Q(enabled_at=None), name="disabledperiod_one_open_per_key"
            ),
            models.CheckConstraint(
                condition=Q(enabled_at=None) | Q(enabled_at__gt=models.F("disabled_at")),
                name="disabledperiod_ends_after_it_starts",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key_id} disabled {self.disabled_at:%Y-%m-%d %H:%M:%S}"
