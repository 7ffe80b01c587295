"""What the database itself refuses, whatever the code above it does: PostgreSQL, and
embedded mode's SQLite (its triggers stand in for PostgreSQL's exclusion constraint and
functions, under the same names)."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from kernel.vendor import constraint_name
from keyring.models import KeyLease, SigningKey
from keyring.services import retire_key
from records.models import Record, Signature
from signing.models import SigningRun
from signing.runs.dispatch import plan_run
from signing.runs.leases import release_lease
from tests.conftest import seed
from tests.integration.factories import lease_batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(backend):
    seed(records=10, keys=3)
    return plan_run(batch_size=5)


def constraint_refusing(callable_) -> str:
    """Run a write that must fail; return the name of the constraint that refused it."""
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        callable_()
    return constraint_name(caught.value)


def delete_in_sql(table: str, row_id: int) -> None:
    """DELETE straight in SQL: the ORM's own on_delete checks would refuse first."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [row_id])


def test_a_record_cannot_have_a_second_signature(run):
    batch = run.batches.get(seq=1)
    lease = lease_batch(batch)
    record = Record.objects.order_by("id").first()
    fields = dict(key_id=lease.key_id, batch=batch, lease_id=lease.id, signed_at=timezone.now())
    Signature.objects.create(record=record, signature=b"a", **fields)
    refused = constraint_refusing(
        lambda: Signature.objects.bulk_create([Signature(record=record, signature=b"b", **fields)])
    )
    assert refused == "records_signature_pkey"


def test_a_key_cannot_be_leased_twice_at_once(run):
    first = lease_batch(run.batches.get(seq=1))
    now = timezone.now()
    refused = constraint_refusing(
        lambda: KeyLease.objects.create(
            key_id=first.key_id,
            batch=run.batches.get(seq=2),
            token=first.token + 1,
            acquired_at=now,
            expires_at=now + timedelta(seconds=30),
        )
    )
    assert refused == "keylease_no_overlap_per_key"


def test_a_retired_key_is_never_enabled_again(run):
    key = SigningKey.objects.order_by("id").first()
    retire_key(kid=key.kid)
    this_key = SigningKey.objects.filter(pk=key.pk)

    refused = constraint_refusing(lambda: this_key.update(enabled=True, disabled_at=None))

    assert refused == "signingkey_retired_is_disabled"
    assert this_key.get().enabled is False


def test_a_batch_cannot_be_held_by_two_open_leases(run):
    batch = run.batches.get(seq=1)
    lease = lease_batch(batch)
    another_key = SigningKey.objects.exclude(pk=lease.key_id).first()
    now = timezone.now()
    refused = constraint_refusing(
        lambda: KeyLease.objects.create(
            key=another_key,
            batch=batch,
            token=1,
            acquired_at=now,
            expires_at=now + timedelta(seconds=30),
        )
    )
    assert refused == "keylease_one_open_per_batch"


def test_a_signature_must_name_its_lease_key_and_batch(run):
    batch = run.batches.get(seq=1)
    lease = lease_batch(batch)
    other = lease_batch(run.batches.get(seq=2))
    record = Record.objects.order_by("id").first()

    def sign_with_the_wrong_key():
        Signature.objects.create(
            record=record,
            key_id=other.key_id,
            batch=batch,
            lease_id=lease.id,
            signature=b"x",
            signed_at=timezone.now(),
        )

    assert constraint_refusing(sign_with_the_wrong_key) == "signature_matches_lease"


def store_one_signature(lease, record: Record) -> None:
    """A signature of `record` under `lease`, written as the store writes it."""
    Signature.objects.create(
        record=record,
        key_id=lease.key_id,
        batch_id=lease.batch_id,
        lease_id=lease.id,
        signature=b"x",
        signed_at=timezone.now(),
    )


def test_a_signature_cannot_be_moved_to_another_key(run):
    lease = lease_batch(run.batches.get(seq=1))
    other = lease_batch(run.batches.get(seq=2))
    record = Record.objects.order_by("id").first()
    store_one_signature(lease, record)
    refused = constraint_refusing(
        lambda: Signature.objects.filter(pk=record.pk).update(key_id=other.key_id)
    )
    assert refused == "signature_append_only"


def test_a_signature_is_never_changed_nor_deleted(run):
    lease = lease_batch(run.batches.get(seq=1))
    record = Record.objects.order_by("id").first()
    store_one_signature(lease, record)
    rewrites = [
        lambda: Signature.objects.filter(pk=record.pk).update(signature=b"y"),
        lambda: Signature.objects.filter(pk=record.pk).update(signed_at=timezone.now()),
        lambda: Signature.objects.filter(pk=record.pk).delete(),
    ]
    for rewrite in rewrites:
        assert constraint_refusing(rewrite) == "signature_append_only"
    assert bytes(Signature.objects.get(pk=record.pk).signature) == b"x"


def test_a_record_is_never_changed_nor_deleted(run):
    record = Record.objects.order_by("id").first()
    rewrites = [
        lambda: Record.objects.filter(pk=record.pk).update(payload="something else"),
        lambda: delete_in_sql("records_record", record.pk),
    ]
    for rewrite in rewrites:
        assert constraint_refusing(rewrite) == "record_append_only"
    assert Record.objects.get(pk=record.pk).payload == record.payload


def test_a_signature_cannot_name_a_batch_that_does_not_hold_its_record(run):
    lease = lease_batch(run.batches.get(seq=1))
    outside = Record.objects.get(pk=run.batches.get(seq=2).first_record_id)
    refused = constraint_refusing(lambda: store_one_signature(lease, outside))
    assert refused == "signature_in_batch"


def test_the_lease_history_is_kept(run):
    lease = lease_batch(run.batches.get(seq=1))
    other = lease_batch(run.batches.get(seq=2))
    rewrites = [
        lambda: delete_in_sql("keyring_keylease", lease.id),
        lambda: KeyLease.objects.filter(pk=lease.id).update(key_id=other.key_id),
        lambda: KeyLease.objects.filter(pk=lease.id).update(batch_id=other.batch_id),
        lambda: KeyLease.objects.filter(pk=lease.id).update(token=lease.token + 100),
        lambda: KeyLease.objects.filter(pk=lease.id).update(acquired_at=timezone.now()),
    ]
    for rewrite in rewrites:
        assert constraint_refusing(rewrite) == "keylease_history_kept"
    # What a lease's life changes still changes: its expiry, then its release.
    KeyLease.objects.filter(pk=lease.id).update(expires_at=lease.expires_at + timedelta(1))
    assert release_lease(lease_id=lease.id, outcome=KeyLease.Outcome.COMPLETED) == lease.batch_id


@pytest.mark.parametrize("size", [0, -1])
def test_a_run_needs_a_positive_batch_size(size, backend):
    refused = constraint_refusing(
        lambda: SigningRun.objects.create(batch_size=size, max_in_flight=1)
    )
    # Ours, or the column's own (PostgreSQL names it, SQLite names its column).
    assert refused in {
        "run_batch_size_positive",
        "signing_signingrun_batch_size_check",
        "batch_size",
    }


def test_a_run_batch_size_never_changes(run):
    with pytest.raises(IntegrityError, match="is fixed"), transaction.atomic():
        SigningRun.objects.filter(pk=run.pk).update(batch_size=6)
    run.refresh_from_db()
    assert run.batch_size == 5


def test_only_one_run_is_active_at_a_time(run):
    refused = constraint_refusing(
        lambda: SigningRun.objects.create(
            batch_size=3, max_in_flight=1, status=SigningRun.Status.PENDING
        )
    )
    assert refused == "run_at_most_one_active"


def test_a_released_lease_must_say_how_it_ended(run):
    lease = lease_batch(run.batches.get(seq=1))
    refused = constraint_refusing(
        lambda: KeyLease.objects.filter(pk=lease.id).update(released_at=timezone.now())
    )
    assert refused == "keylease_outcome_iff_released"
