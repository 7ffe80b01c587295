"""kernel.merkle against RFC 6962's recursive definition, and proofs that must fail."""

import hashlib

import pytest

from kernel import merkle


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) as RFC 6962 section 2.1 defines it, over leaf hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)  # largest power of two below n
    return merkle.node_hash(rfc6962_root(leaves[:split]), rfc6962_root(leaves[split:]))


def leaves_of(size: int) -> list[bytes]:
    return [merkle.record_leaf(record_id, b"sig%d" % record_id) for record_id in range(size)]


def test_hashes_are_rfc6962s():
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert merkle.node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert merkle.record_leaf(1, b"s") == hashlib.sha256(b"\x00" + b"\0" * 7 + b"\x01s").digest()
    assert merkle.batch_leaf(2, b"r") == hashlib.sha256(b"\x00" + b"\0" * 7 + b"\x02r").digest()


@pytest.mark.parametrize("size", range(0, 70))
def test_root_is_rfc6962s_and_every_proof_leads_to_it(size):
    leaves = leaves_of(size)
    root = merkle.root(leaves)
    assert root == rfc6962_root(leaves)
    for index, proof in enumerate(merkle.inclusion_proofs(leaves)):
        assert merkle.root_from_proof(leaves[index], index, size, proof) == root


def test_a_changed_leaf_index_size_or_path_does_not_lead_to_the_root():
    leaves = leaves_of(11)
    root = merkle.root(leaves)
    proofs = merkle.inclusion_proofs(leaves)
    assert merkle.root_from_proof(merkle.record_leaf(3, b"forged"), 3, 11, proofs[3]) != root
    assert merkle.root_from_proof(leaves[3], 4, 11, proofs[3]) != root
    assert merkle.root_from_proof(leaves[3], 3, 5, proofs[3]) != root  # another shape
    assert merkle.root_from_proof(leaves[3], 3, 11, proofs[3][:-1]) is None
    assert merkle.root_from_proof(leaves[3], 3, 11, [*proofs[3], root]) is None
    assert merkle.root_from_proof(leaves[3], 11, 11, proofs[3]) is None
    swapped = [proofs[3][1], proofs[3][0], *proofs[3][2:]]
    assert merkle.root_from_proof(leaves[3], 3, 11, swapped) != root


def test_adding_or_removing_a_leaf_changes_the_root():
    leaves = leaves_of(8)
    assert merkle.root(leaves[:-1]) != merkle.root(leaves)
    assert merkle.root([*leaves, leaves[0]]) != merkle.root(leaves)
