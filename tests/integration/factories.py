"""Small builders for integration tests: leases granted by hand, as dispatch grants them,
batches signed as workers sign them, and the cast most tests start from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from django.db import transaction
from django.db.models import F

from kernel import crypto, merkle
from keyring import sealing
from keyring.leases import GrantedLease, LeaseHint
from keyring.models import KeyLease, SigningKey
from keyring.services import disable_key, open_private_key
from records.selectors import unsigned_record_pages
from signing.audit.roots import stored_run_root
from signing.backends import backend
from signing.models import Batch, Checkpoint, SigningRun
from signing.runs.dispatch import plan_run
from signing.runs.leases import release_lease
from signing.runs.store import StoreOutcome, store_signatures
from tests.conftest import seed


class Lease(Protocol):
    """What signing needs to know of a lease: a GrantedLease, or a KeyLease with its kid."""

    id: int
    token: int
    batch_id: int
    key_id: int
    kid: str


def lease_batch(batch: Batch, *, ttl_seconds: int = 30) -> GrantedLease:
    """Lease the LRU free key to a pending batch and mark it leased, as dispatch does."""
    with transaction.atomic():
        lease = backend().lease_lru_key(batch_id=batch.pk, ttl_seconds=ttl_seconds)
        assert lease is not None, "no free key"
        Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.LEASED)
    return lease


def signatures_for(lease: Lease) -> list[crypto.SignedRecord]:
    """The leased batch's records signed with the lease's key, as a worker signs them."""
    key = open_private_key(key_id=lease.key_id, kid=lease.kid)
    batch = Batch.objects.get(pk=lease.batch_id)
    pages = unsigned_record_pages(
        first_record_id=batch.first_record_id, last_record_id=batch.last_record_id
    )
    records = [record for page in pages for record in page]
    return crypto.sign_records(key.private_key, records)


def store(lease: Lease, signatures: list[crypto.SignedRecord]) -> tuple[StoreOutcome, int]:
    """Store signatures under a lease, through the fenced write workers use."""
    return store_signatures(
        LeaseHint(
            lease_id=lease.id,
            token=lease.token,
            batch_id=lease.batch_id,
            key_id=lease.key_id,
            kid=lease.kid,
        ),
        signatures=signatures,
    )


def sign_leased(lease: Lease) -> tuple[StoreOutcome, int]:
    """Sign a leased batch and store it, as a worker does; the lease stays open."""
    return store(lease, signatures_for(lease))


def sign_and_release(lease_id: int) -> None:
    """What a worker and SigningCompleted do for a leased batch: sign, store, release."""
    lease = KeyLease.objects.annotate(kid=F("key__kid")).get(pk=lease_id)
    assert sign_leased(lease) == (StoreOutcome.STORED, 0)
    release_lease(lease_id=lease.pk, outcome=KeyLease.Outcome.COMPLETED)


@dataclass(frozen=True, slots=True)
class Cast:
    """The usual starting point, by name: `keys` seeded with the records, a `run` with its
    batches planned, and its first batch (`batch`) leased under `lease`."""

    keys: list[SigningKey]
    run: SigningRun
    batch: Batch
    lease: GrantedLease


def cast_of(*, records: int = 20, keys: int = 3, batch_size: int = 5) -> Cast:
    """Seed `records` and `keys`, plan a run in batches of `batch_size`, lease batch 1."""
    seeded = seed(records=records, keys=keys)
    run = plan_run(batch_size=batch_size)
    batch = run.batches.get(seq=1)
    lease = lease_batch(batch)
    batch.refresh_from_db()
    return Cast(keys=seeded, run=run, batch=batch, lease=lease)


def assert_checkpoint_holds(checkpoint: Checkpoint) -> None:
    """Its root is its run's prefix's (the roots its first batches keep), and its signature
    verifies with its key over the checkpoint input."""
    root = bytes(checkpoint.merkle_root)
    assert root == stored_run_root(checkpoint.run_id, through_seq=checkpoint.batches)
    key = SigningKey.objects.get(pk=checkpoint.key_id)
    assert crypto.verify(
        crypto.load_public_key(key.public_key_pem),
        merkle.checkpoint_input(checkpoint.run_id, checkpoint.batches, root),
        bytes(checkpoint.signature),
    )


@dataclass(frozen=True, slots=True)
class KeyringInUse:
    """Five keys: two used, then two disabled (one used, one never), and a run with batches
    left to lease. `next_leases` are the enabled keys in the order leases take them;
    `disabled` the rest, in the order pages list them after those."""

    run: SigningRun
    next_leases: list[str]
    disabled: list[str]


def keyring_in_use() -> KeyringInUse:
    first, second, third, fourth, fifth = seed(records=50, keys=5)
    run = plan_run(batch_size=5)
    for batch in run.batches.order_by("seq")[:2]:  # first, then second, signed and released
        sign_and_release(lease_batch(batch).id)
    for key in (first, third):
        disable_key(kid=key.kid)
    return KeyringInUse(
        run=run,
        next_leases=[fourth.kid, fifth.kid, second.kid],  # never used by id, then used
        disabled=[third.kid, first.kid],
    )


def seal_under(key: SigningKey, kek: str) -> None:
    """Re-seal a key's private key under another KEK (its environment form), as a `keys add`
    that did not check its KEK (releases before 2ca3b20) could leave it."""
    secret = sealing.unseal(
        sealing.kek_from_environment(), key.kid, bytes(key.encrypted_private_key)
    )
    sealed = sealing.seal(sealing.parse_kek(kek), key.kid, secret)
    SigningKey.objects.filter(pk=key.pk).update(encrypted_private_key=sealed)
