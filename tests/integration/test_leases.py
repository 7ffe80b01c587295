"""The backend's lease_lru_key and release_lease: rules 2 and 4 under real concurrency."""

import threading
from collections import deque
from functools import partial

import pytest
from django.db import transaction

from keyring.models import KeyLease, SigningKey
from keyring.services import set_keys_enabled
from signing.audit.rules import audit
from signing.backends import backend
from signing.runs.dispatch import plan_run
from signing.runs.leases import release_lease
from tests.conftest import run_together, seed

# Runs on both backends: the servers, and embedded mode (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("backend")


def lease(batch_id: int):
    with transaction.atomic():
        return backend().lease_lru_key(batch_id=batch_id, ttl_seconds=30)


def release(lease_id: int) -> None:
    release_lease(lease_id=lease_id, outcome=KeyLease.Outcome.COMPLETED)


@pytest.mark.django_db(transaction=True)
def test_twenty_threads_never_hold_one_key_twice_at_a_time():
    # Given 10 keys and 400 batches, and 20 threads that each lease, hold, release
    keys = seed(records=400, keys=10)
    run = plan_run(batch_size=1)
    batches = deque(run.batches.order_by("seq").values_list("id", flat=True))
    holder: dict[int, int] = {}
    breaches: list[str] = []
    guard = threading.Lock()

    def work(thread_no: int) -> None:
        while True:
            with guard:
                if not batches:
                    return
                batch_id = batches.popleft()
            granted = lease(batch_id)
            if granted is None:  # every key busy: put the batch back, try again
                with guard:
                    batches.append(batch_id)
                continue
            with guard:
                if granted.key_id in holder:
                    breaches.append(f"key {granted.key_id} held by {holder[granted.key_id]}")
                holder[granted.key_id] = thread_no
            # Hold it across a round trip to the database, as a signer would.
            assert KeyLease.objects.filter(pk=granted.id, released_at=None).exists()
            with guard:
                del holder[granted.key_id]
            release(granted.id)

    # When they all run at once
    run_together(*(partial(work, n) for n in range(20)))

    # Then every batch got exactly one lease, no key was held twice, and the audit agrees
    assert not breaches, breaches
    assert KeyLease.objects.count() == 400
    assert KeyLease.objects.filter(released_at=None).count() == 0
    assert {lease.key_id for lease in KeyLease.objects.all()} == {key.pk for key in keys}
    report = {check.name: check for check in audit(run_id=run.pk).checks}
    assert report["no_overlapping_leases"].passed, report["no_overlapping_leases"].breaches
    assert report["lru_order"].passed, report["lru_order"].breaches


@pytest.mark.django_db
def test_one_at_a_time_keys_rotate_in_lru_order():
    keys = seed(records=12, keys=4)
    run = plan_run(batch_size=1)
    taken = []
    for batch_id in run.batches.order_by("seq").values_list("id", flat=True):
        granted = lease(batch_id)
        taken.append(granted.key_id)
        release(granted.id)
    ids = [key.pk for key in keys]
    assert taken == ids * 3


@pytest.mark.django_db
def test_a_never_used_key_comes_before_a_used_one():
    keys = seed(records=3, keys=3)
    batch_ids = list(plan_run(batch_size=1).batches.order_by("seq").values_list("id", flat=True))
    first = lease(batch_ids[0])
    release(first.id)
    assert lease(batch_ids[1]).key_id == keys[1].pk


@pytest.mark.django_db
def test_the_key_released_longest_ago_is_taken_first():
    keys = seed(records=5, keys=3)
    batch_ids = list(plan_run(batch_size=1).batches.order_by("seq").values_list("id", flat=True))
    a, b, c = (lease(batch_id) for batch_id in batch_ids[:3])
    release(c.id)
    release(a.id)
    release(b.id)
    assert [lease(batch_ids[3]).key_id, lease(batch_ids[4]).key_id] == [keys[2].pk, keys[0].pk]


@pytest.mark.django_db
def test_disabled_and_held_keys_are_never_leased():
    keys = seed(records=3, keys=3)
    SigningKey.objects.filter(pk=keys[0].pk).update(enabled=False)
    batch_ids = list(plan_run(batch_size=1).batches.order_by("seq").values_list("id", flat=True))
    assert lease(batch_ids[0]).key_id == keys[1].pk
    assert lease(batch_ids[1]).key_id == keys[2].pk
    assert lease(batch_ids[2]) is None


@pytest.mark.django_db
def test_a_key_out_of_the_keyring_for_a_while_is_skipped_then_taken_and_the_audit_agrees():
    keys = seed(records=4, keys=3)
    first = SigningKey.objects.filter(pk=keys[0].pk)
    batch_ids = list(plan_run(batch_size=1).batches.order_by("seq").values_list("id", flat=True))

    set_keys_enabled(first, enabled=False)
    taken = [lease(batch_ids[0]), lease(batch_ids[1])]
    for granted in taken:
        release(granted.id)
    set_keys_enabled(first, enabled=True)
    taken.append(lease(batch_ids[2]))  # never used: first in LRU order again

    assert [granted.key_id for granted in taken] == [keys[1].pk, keys[2].pk, keys[0].pk]
    [period] = first.get().disabled_periods.all()
    assert period.disabled_at < taken[0].acquired_at
    assert taken[1].acquired_at < period.enabled_at < taken[2].acquired_at
    lru = {check.name: check for check in audit().checks}["lru_order"]
    assert lru.passed, lru.breaches
    assert lru.examined == 3


@pytest.mark.django_db
def test_releasing_twice_changes_nothing_the_second_time():
    seed(records=1, keys=1)
    batch_id = plan_run(batch_size=1).batches.get().pk
    granted = lease(batch_id)
    assert release_lease(lease_id=granted.id, outcome=KeyLease.Outcome.COMPLETED) == batch_id
    before = KeyLease.objects.values().get(pk=granted.id)
    last_used = SigningKey.objects.get(pk=granted.key_id).last_used_at
    assert release_lease(lease_id=granted.id, outcome=KeyLease.Outcome.FAILED) is None
    assert KeyLease.objects.values().get(pk=granted.id) == before
    assert SigningKey.objects.get(pk=granted.key_id).last_used_at == last_used


@pytest.mark.django_db
def test_tokens_increase_per_key():
    seed(records=3, keys=1)
    batch_ids = list(plan_run(batch_size=1).batches.order_by("seq").values_list("id", flat=True))
    tokens = []
    for batch_id in batch_ids:
        granted = lease(batch_id)
        tokens.append(granted.token)
        release(granted.id)
    assert tokens == [1, 2, 3]
