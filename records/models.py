"""Records to sign and their signatures (the seed's Collection Service).

Table and column names are a contract read by outside auditors (docs/architecture.md).
"""

from django.db import models


class Record(models.Model):
    id = models.BigAutoField(primary_key=True)
    payload = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"record {self.pk}"

    def __repr__(self) -> str:
        return f"<Record {self.pk}>"


class Signature(models.Model):
    # The record is the primary key: PostgreSQL itself refuses a second signature (rule 1).
    record = models.OneToOneField(
        Record, primary_key=True, on_delete=models.PROTECT, related_name="signature"
    )
    # Key, batch and lease are checked together, once per statement, by the
    # signature_matches_lease triggers (migration 0004): the lease each signature names
    # exists with this very key and batch, and the lease's own foreign keys vouch for both;
    # the lease history itself is never deleted or re-pointed (keyring migration 0004).
    # Per-row foreign keys would check the same lease again for every signature, on the hot
    # path of a run (docs/benchmarks.md), so none is created. Only batch_id is indexed:
    # every audit and progress query goes through the batch, and each index slows the
    # bulk insert.
    key = models.ForeignKey(
        "keyring.SigningKey",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    batch = models.ForeignKey(
        "signing.Batch", on_delete=models.PROTECT, related_name="signatures", db_constraint=False
    )
    lease = models.ForeignKey(
        "keyring.KeyLease",
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    signature = models.BinaryField()
    signed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"signature of record {self.record_id}"

    def __repr__(self) -> str:
        return f"<Signature record={self.record_id} key={self.key_id} batch={self.batch_id}>"
