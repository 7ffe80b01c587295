"""signing.audit.roots: the roots a run's batches keep, and a run's root over a prefix of
them (what a follow run's checkpoint will sign), on both backends."""

import pytest

from kernel import merkle
from records.models import Signature
from signing.audit.roots import batch_root, run_root, stored_run_root
from signing.models import Batch, SigningRun
from signing.runs.dispatch import finish_run
from tests.integration.factories import lease_batch, sign_and_release

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("backend")]


def batch_roots(run: SigningRun) -> list[tuple[int, bytes]]:
    """(seq, root) of each batch that has one, in seq order."""
    return [
        (seq, bytes(root))
        for seq, root in run.batches.order_by("seq").values_list("seq", "merkle_root")
        if root is not None
    ]


def test_a_run_root_is_over_its_batch_roots_in_seq_order_as_rfc_6962_hashes_them(cast):
    run = cast.run
    sign_and_release(cast.lease.id)
    for batch in run.batches.filter(seq__gt=1).order_by("seq"):
        sign_and_release(lease_batch(batch).id)
    assert finish_run(run.pk)
    run.refresh_from_db()
    roots = batch_roots(run)
    for batch in run.batches.all():
        pairs = Signature.objects.filter(batch=batch).values_list("record_id", "signature")
        assert bytes(batch.merkle_root) == batch_root((rid, bytes(raw)) for rid, raw in pairs)
    # Four batches: the tree is balanced, ((1, 2), (3, 4)).
    leaves = [merkle.batch_leaf(seq, root) for seq, root in roots]
    expected = merkle.node_hash(
        merkle.node_hash(leaves[0], leaves[1]), merkle.node_hash(leaves[2], leaves[3])
    )
    assert bytes(run.merkle_root) == expected == stored_run_root(run.pk) == run_root(roots)


def test_a_prefix_of_signed_batches_has_a_root_and_a_prefix_with_a_gap_has_none(cast):
    run = cast.run
    _, second, third, _ = run.batches.order_by("seq")
    assert stored_run_root(run.pk, through_seq=1) is None  # leased, not signed
    sign_and_release(cast.lease.id)
    sign_and_release(lease_batch(third).id)
    assert stored_run_root(run.pk, through_seq=1) == run_root(batch_roots(run)[:1])
    assert [seq for seq, _ in batch_roots(run)] == [1, 3]
    assert stored_run_root(run.pk, through_seq=3) is None  # #2 is still pending
    assert stored_run_root(run.pk, through_seq=5) is None  # no such batch
    sign_and_release(lease_batch(second).id)
    assert stored_run_root(run.pk, through_seq=3) == run_root(batch_roots(run))
    assert stored_run_root(run.pk) is None  # #4 is pending: no root of the whole run


def test_a_failed_run_gets_no_root(cast):
    run = cast.run
    sign_and_release(cast.lease.id)
    run.batches.filter(seq__gt=1).update(status=Batch.Status.FAILED)
    assert finish_run(run.pk)
    run.refresh_from_db()
    assert (run.status, run.merkle_root) == (SigningRun.Status.FAILED, None)


def test_a_run_with_nothing_to_sign_has_the_empty_trees_root(cast):
    run = cast.run
    sign_and_release(cast.lease.id)
    for batch in run.batches.filter(seq__gt=1).order_by("seq"):
        sign_and_release(lease_batch(batch).id)
    finish_run(run.pk)
    from signing.runs.dispatch import start_run

    empty = start_run(batch_size=5)
    assert (empty.status, empty.batch_count) == (SigningRun.Status.COMPLETED, 0)
    assert bytes(empty.merkle_root) == merkle.EMPTY_ROOT
