"""The backend seam's contract (signing.backends.base.Backend), checked on both of its
implementations: PostgreSQL in `pytest`, embedded mode's SQLite in `SIGNING_EMBEDDED=1 pytest
-m backends` (every test here takes the `backend` fixture).

Each test calls the seam directly and checks what its callers rely on. What needs real
concurrency is proven elsewhere, also on both: twenty threads leasing (test_leases), the
store racing a second writer (test_store_signatures); and on PostgreSQL the lock's waiters
(test_keyring_lock).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from functools import partial

import pytest
from django.db import transaction
from django.db.models import F

from keyring.leases import GrantedLease, LeaseHint
from keyring.models import KeyLease, SigningKey
from records.models import Record, Signature
from signing.audit.roots import batch_root
from signing.audit.rules import audit
from signing.backends import backend as seam
from signing.models import Batch, SigningRun
from signing.runs.dispatch import plan_run
from tests.conftest import seed
from tests.integration.factories import signatures_for

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("backend")]


def lease(batch: Batch, ttl_seconds: float = 30) -> GrantedLease | None:
    with transaction.atomic():
        granted = seam().lease_lru_key(batch_id=batch.pk, ttl_seconds=ttl_seconds)
        if granted is not None:
            Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.LEASED)
    return granted


def signed(lease: GrantedLease) -> tuple[list[int], list[bytes]]:
    """The leased batch signed (tests.integration.factories), as the seam's arrays."""
    signatures = signatures_for(lease)
    return [s.record_id for s in signatures], [s.signature for s in signatures]


def root(record_ids: list[int], raw: list[bytes]) -> bytes:
    return batch_root(zip(record_ids, raw, strict=True))


def store(hint: LeaseHint, record_ids: list[int], raw: list[bytes]) -> tuple[int, int, int]:
    """The seam's store, with the root the store step computes (signing.runs.store)."""
    return seam().store_signatures(
        hint, record_ids=record_ids, signatures=raw, merkle_root=root(record_ids, raw)
    )


@pytest.fixture
def batches() -> list[Batch]:
    """Three keys; a run of four batches of five records."""
    seed(records=20, keys=3)
    return list(plan_run(batch_size=5).batches.order_by("seq"))


def test_the_backend_is_chosen_once_and_matches_the_mode(backend):
    assert seam() is seam()
    assert (
        type(seam()).__name__
        == {"postgresql": "PostgreSQLBackend", "sqlite": "SQLiteBackend"}[backend]
    )


def test_plan_cuts_the_unsigned_records_into_contiguous_batches(db):
    seed(records=12, keys=1)
    run = SigningRun.objects.create(batch_size=5, status=SigningRun.Status.RUNNING, max_in_flight=4)
    ids = list(Record.objects.order_by("id").values_list("id", flat=True))
    assert seam().plan_batches(run_id=run.pk, batch_size=5) == (3, 12, ids[-1])
    planned = run.batches.order_by("seq").values_list("seq", "first_record_id", "last_record_id")
    assert list(planned) == [(1, ids[0], ids[4]), (2, ids[5], ids[9]), (3, ids[10], ids[11])]
    assert set(run.batches.values_list("status", flat=True)) == {Batch.Status.PENDING}


def test_leases_go_to_the_least_recently_used_key_one_per_key(batches):
    first, second, third = (lease(batch) for batch in batches[:3])
    assert len({first.key_id, second.key_id, third.key_id}) == 3  # never-used keys, by id
    assert [first.key_id, second.key_id, third.key_id] == sorted(
        SigningKey.objects.values_list("id", flat=True)
    )
    assert lease(batches[3]) is None  # every key is held
    seam().release_lease(lease_id=second.id, outcome=KeyLease.Outcome.COMPLETED)
    seam().release_lease(lease_id=first.id, outcome=KeyLease.Outcome.COMPLETED)
    assert lease(batches[3]).key_id == second.key_id  # released first: least recently used
    assert first.token == 1
    assert first.expires_at - first.acquired_at == timedelta(seconds=30)


def test_release_closes_the_lease_once(batches):
    granted = lease(batches[0])
    assert seam().release_lease(lease_id=granted.id, outcome="completed") == batches[0].pk
    assert seam().release_lease(lease_id=granted.id, outcome="failed") is None
    closed = KeyLease.objects.get(pk=granted.id)
    assert closed.outcome == "completed"
    assert closed.released_at is not None
    key = SigningKey.objects.get(pk=granted.key_id)
    assert key.held_by_id is None
    assert key.last_used_at == closed.released_at


def test_extend_needs_the_lease_open_under_its_token(batches):
    hint = lease(batches[0]).hint()
    before = KeyLease.objects.get(pk=hint.lease_id).expires_at
    assert seam().extend_lease(hint, ttl_seconds=60)
    assert KeyLease.objects.get(pk=hint.lease_id).expires_at > before
    assert not seam().extend_lease(replace(hint, token=hint.token + 1), ttl_seconds=60)
    seam().release_lease(lease_id=hint.lease_id, outcome="completed")
    assert not seam().extend_lease(hint, ttl_seconds=60)


def test_expire_closes_only_overdue_leases(batches):
    overdue, live = lease(batches[0]), lease(batches[1])
    KeyLease.objects.filter(pk=overdue.id).update(
        expires_at=F("acquired_at") + timedelta(microseconds=1)
    )
    assert seam().expire_leases() == [(overdue.id, batches[0].pk, batches[0].run_id)]
    assert seam().expire_leases() == []
    assert KeyLease.objects.get(pk=overdue.id).outcome == KeyLease.Outcome.EXPIRED
    assert KeyLease.objects.get(pk=live.id).released_at is None
    assert SigningKey.objects.get(pk=overdue.key_id).held_by_id is None


def test_claim_leases_pending_batches_up_to_the_in_flight_limit(batches):
    run_id = batches[0].run_id
    SigningRun.objects.filter(pk=run_id).update(max_in_flight=2)
    claimed = seam().claim_batches(run_id=run_id, ttl_seconds=30, release_lease_ids=())
    assert [granted.batch_id for granted in claimed] == [batches[0].pk, batches[1].pk]
    assert seam().claim_batches(run_id=run_id, ttl_seconds=30, release_lease_ids=()) == []
    # A release that names an unsigned batch's lease releases nothing, and so claims nothing.
    again = seam().claim_batches(run_id=run_id, ttl_seconds=30, release_lease_ids=[claimed[0].id])
    assert again == []
    assert KeyLease.objects.get(pk=claimed[0].id).released_at is None
    record_ids, raw = signed(claimed[0])
    assert store(claimed[0].hint(), record_ids, raw)[1]
    after = seam().claim_batches(run_id=run_id, ttl_seconds=30, release_lease_ids=[claimed[0].id])
    assert [granted.batch_id for granted in after] == [batches[2].pk]
    assert KeyLease.objects.get(pk=claimed[0].id).outcome == KeyLease.Outcome.COMPLETED
    assert Batch.objects.get(pk=batches[2].pk).status == Batch.Status.LEASED


def test_one_claim_releases_every_stored_lease_it_is_given_and_no_other():
    """A group of completions (signing.runs.completions): one turn releases the leases of
    the stored batches named, leaves the rest open, and leases the freed room LRU first."""
    seed(records=30, keys=5)
    run = plan_run(batch_size=5, max_in_flight=3)
    batches = list(run.batches.order_by("seq"))
    first, second, unsigned = seam().claim_batches(run_id=run.pk, ttl_seconds=30)
    for granted in (first, second):
        record_ids, raw = signed(granted)
        assert store(granted.hint(), record_ids, raw)[1]
    after = seam().claim_batches(
        run_id=run.pk, ttl_seconds=30, release_lease_ids=[second.id, unsigned.id, first.id]
    )
    assert [granted.batch_id for granted in after] == [batches[3].pk, batches[4].pk]
    outcomes = dict(
        KeyLease.objects.filter(pk__in=[first.id, second.id, unsigned.id]).values_list(
            "pk", "outcome"
        )
    )
    assert outcomes == {first.id: "completed", second.id: "completed", unsigned.id: None}
    # The two keys never used are taken before the two just released.
    assert {first.key_id, second.key_id}.isdisjoint(granted.key_id for granted in after)
    lru = next(check for check in audit(run_id=run.pk).checks if check.name == "lru_order")
    assert lru.passed, lru.breaches


def test_take_up_checks_the_hint_whole_and_counts_one_attempt(batches):
    hint = lease(batches[0]).hint()
    status = Batch.Status.LEASED
    first, last = batches[0].first_record_id, batches[0].last_record_id
    records = list(
        Record.objects.filter(pk__range=(first, last)).order_by("pk").values_list("pk", "payload")
    )
    taken = seam().take_up(hint, ttl_seconds=30, page_size=10)
    assert taken == (status, first, last, False, records)
    # A redelivery; a page smaller than the batch.
    taken = seam().take_up(hint, ttl_seconds=30, page_size=2)
    assert taken == (status, first, last, False, records[:2])
    assert Batch.objects.get(pk=batches[0].pk).attempts == 1
    assert KeyLease.objects.get(pk=hint.lease_id).started_at is not None
    for forged in (replace(hint, kid="key-9999"), replace(hint, token=2), replace(hint, key_id=0)):
        assert seam().take_up(forged, ttl_seconds=30, page_size=10) is None


def test_the_store_is_fenced_and_stores_once(batches):
    granted = lease(batches[0])
    record_ids, raw = signed(granted)
    wrong = replace(granted.hint(), token=granted.token + 1)
    assert store(wrong, record_ids, raw) == (0, 0, 0)
    hint = granted.hint()
    assert store(hint, record_ids, raw) == (1, 1, 5)
    assert store(hint, record_ids, raw) == (1, 0, 0)
    stored = Batch.objects.get(pk=batches[0].pk)
    assert stored.status == Batch.Status.SIGNED
    assert bytes(stored.merkle_root) == root(record_ids, raw)
    assert Signature.objects.filter(lease_id=granted.id).count() == 5
    seam().release_lease(lease_id=granted.id, outcome="completed")
    other = lease(batches[1])
    seam().release_lease(lease_id=other.id, outcome="expired")
    ids, raw = signed(other)
    assert store(other.hint(), ids, raw) == (0, 0, 0)


def test_a_staged_store_writes_only_a_whole_stage(batches):
    granted = lease(batches[0])
    record_ids, raw = signed(granted)
    seam().empty_stage()
    seam().stage(record_ids=record_ids[:2], signatures=raw[:2])
    seam().stage(record_ids=record_ids[2:], signatures=raw[2:])
    merkle_root = root(record_ids, raw)
    store_stage = partial(seam().store_staged_signatures, granted.hint(), merkle_root=merkle_root)
    assert store_stage(staged=6) == (1, 0, 0)
    assert not Signature.objects.exists()
    assert Batch.objects.get(pk=batches[0].pk).merkle_root is None
    assert store_stage(staged=5) == (1, 1, 5)
    assert bytes(Batch.objects.get(pk=batches[0].pk).merkle_root) == merkle_root
    seam().empty_stage()
    assert store_stage(staged=0) == (1, 0, 0)


def test_the_clock_moves_forward_under_the_lock(db):
    with transaction.atomic():
        seam().lock_keyring()
        earlier = seam().clock()
    assert seam().clock() >= earlier
    assert earlier.tzinfo is not None


def test_reset_empties_everything_and_never_restarts_ids(batches):
    granted = lease(batches[0])
    last_record = Record.objects.order_by("id").last().pk
    with transaction.atomic():
        seam().reset_all()
    for model in (Record, Signature, KeyLease, SigningKey, Batch, SigningRun):
        assert not model.objects.exists(), model.__name__
    assert seam().load_records(["a", "b"]) == 2
    assert Record.objects.order_by("id").first().pk > last_record
    seed(records=0, keys=1)
    run = plan_run(batch_size=5)
    assert lease(run.batches.get()).id > granted.id


def test_overlapping_leases_are_none_when_each_key_is_held_once(batches):
    granted = lease(batches[0])
    seam().release_lease(lease_id=granted.id, outcome="completed")
    lease(batches[1])
    assert seam().overlapping_leases(run_id=None) == []
    assert seam().overlapping_leases(run_id=batches[0].run_id) == []


def test_one_recovery_pass_at_a_time(db):
    with seam().reaper_turn() as mine:
        assert mine
        with transaction.atomic():
            assert seam().try_reaper_lock()


def test_a_hint_names_a_granted_lease_whole(batches):
    granted = lease(batches[0])
    assert granted.hint() == LeaseHint(
        lease_id=granted.id,
        token=granted.token,
        batch_id=granted.batch_id,
        key_id=granted.key_id,
        kid=granted.kid,
    )
