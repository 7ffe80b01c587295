"""A batch of any size signs with bounded memory: records are read, signed and staged a page
at a time (records.selectors.PAGE_SIZE), and the stage is stored whole, fenced, or not at
all. Here pages are 7 records, so a batch of 50 has 8 of them."""

from __future__ import annotations

import pytest

from keyring.models import KeyLease
from records.models import Signature
from signing.audit.roots import batch_root
from signing.audit.rules import audit
from signing.models import Batch, SigningRun
from signing.runs.dispatch import advance_run, start_run
from signing.runs.services import sign_batch
from signing.runs.store import SignatureStage, StageIncomplete, StoreOutcome
from tests.conftest import hint_of, seed, wait_until

PAGE = 7


@pytest.fixture
def one_big_batch(sent, monkeypatch, backend, django_capture_on_commit_callbacks):
    monkeypatch.setattr("records.selectors.PAGE_SIZE", PAGE)
    seed(records=50, keys=2)
    with django_capture_on_commit_callbacks(execute=True):
        start_run(batch_size=1_000_000, max_in_flight=1)
    [message] = sent.named("signing_triggered")
    return message


@pytest.fixture
def staged_pages(monkeypatch) -> list[int]:
    """How many signatures each page staged."""
    sizes: list[int] = []
    add = SignatureStage.add

    def counting_add(stage, signatures):
        sizes.append(len(signatures))
        return add(stage, signatures)

    monkeypatch.setattr(SignatureStage, "add", counting_add)
    return sizes


@pytest.mark.django_db
def test_a_batch_bigger_than_a_page_is_signed_a_page_at_a_time_and_stored_whole(
    one_big_batch, staged_pages
):
    assert sign_batch(hint_of(one_big_batch)).outcome is StoreOutcome.STORED
    assert staged_pages == [7, 7, 7, 7, 7, 7, 7, 1]
    assert Signature.objects.count() == 50
    batch = Batch.objects.get()
    assert batch.status == Batch.Status.SIGNED
    # The root the worker built page by page is the root of the batch's 50 signatures.
    pairs = Signature.objects.values_list("record_id", "signature")
    assert bytes(batch.merkle_root) == batch_root((rid, bytes(raw)) for rid, raw in pairs)
    advance_run(
        one_big_batch.kwargs["run_id"], release_lease_ids=[one_big_batch.kwargs["lease_id"]]
    )
    assert SigningRun.objects.get().status == SigningRun.Status.COMPLETED
    assert audit(processes=1).passed


@pytest.mark.django_db
def test_a_stage_that_lost_signatures_stores_nothing(one_big_batch, monkeypatch):
    from signing.runs import store as store_module

    store = store_module.store_staged_signatures

    def store_after_losing_one(lease, *, stage):
        stage.count += 1  # as if the session had been replaced half-way
        return store(lease, stage=stage)

    monkeypatch.setattr("signing.runs.services.store_staged_signatures", store_after_losing_one)
    with pytest.raises(StageIncomplete):
        sign_batch(hint_of(one_big_batch))
    assert not Signature.objects.exists()
    assert Batch.objects.get().status == Batch.Status.LEASED
    monkeypatch.undo()
    assert sign_batch(hint_of(one_big_batch)).outcome is StoreOutcome.STORED  # the retry


@pytest.mark.django_db
def test_a_big_batch_whose_lease_is_lost_while_staging_stores_nothing(
    one_big_batch, monkeypatch, settings
):
    settings.SIGNING_LEASE_TTL = 1e-6  # every chunk is "a third of a TTL" later: beat each time
    from signing.runs import services
    from signing.runs.leases import release_lease

    take_up = services.take_up_batch

    def take_up_then_lose_the_lease(hint):
        taken = take_up(hint)
        release_lease(lease_id=hint.lease_id, outcome=KeyLease.Outcome.EXPIRED)
        return taken

    monkeypatch.setattr("signing.runs.services.take_up_batch", take_up_then_lose_the_lease)
    assert sign_batch(hint_of(one_big_batch)).outcome is StoreOutcome.LEASE_LOST
    assert not Signature.objects.exists()


@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_workers_sign_25000_records_in_one_batch_of_three_pages(start_workers, backend):
    seed(records=25_000, keys=2)
    start_workers(processes=1, threads=2)
    run = start_run(batch_size=1_000_000)
    wait_until(
        lambda: SigningRun.objects.get(pk=run.pk).status in SigningRun.FINISHED_STATUSES,
        timeout=120,
    )
    assert SigningRun.objects.get(pk=run.pk).status == SigningRun.Status.COMPLETED
    assert Signature.objects.count() == 25_000
    assert Batch.objects.get().attempts == 1
    assert audit(run_id=run.pk, processes=1).passed
