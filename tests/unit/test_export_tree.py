"""signing/exports/tree.py's compact tree gives kernel.merkle's root and paths exactly."""

import pytest

from kernel import merkle
from signing.exports.tree import CompactTree


def leaves_of(size: int) -> list[bytes]:
    return [merkle.record_leaf(record_id, b"sig%d" % record_id) for record_id in range(1, size + 1)]


@pytest.mark.parametrize("size", [*range(0, 70), 127, 128, 129, 255, 256, 257, 1000])
def test_root_and_every_path_are_kernel_merkles(size):
    leaves = leaves_of(size)
    tree = CompactTree()
    for leaf in leaves:
        tree.append(leaf)

    assert tree.build() == merkle.root(leaves)
    assert [tree.path(index) for index in range(size)] == merkle.inclusion_proofs(leaves)
    assert [tree.leaf(index) for index in range(size)] == leaves


def test_a_built_tree_takes_no_more_leaves_and_a_path_needs_a_built_tree():
    tree = CompactTree()
    tree.append(merkle.leaf_hash(b"a"))
    with pytest.raises(RuntimeError):
        tree.path(0)
    tree.build()
    with pytest.raises(RuntimeError):
        tree.append(merkle.leaf_hash(b"b"))
    with pytest.raises(IndexError):
        tree.path(1)


def test_a_leaf_is_a_32_byte_hash():
    with pytest.raises(ValueError, match="32-byte"):
        CompactTree().append(b"short")
