"""A batch's Merkle tree held compactly, so that any leaf's path can be read out of it.

kernel.merkle.inclusion_proofs returns every path at once: n lists of about log2(n) hashes,
some 1.3 GB of Python objects for a batch of 1,000,000 records. The export needs the paths
one at a time, in leaf order, while it writes each record's line; so this keeps the tree's
levels instead, each as one bytearray of 32-byte hashes (2n hashes in all, 64 MB for
1,000,000 leaves), and reads a path out of them. The shape and the hashes are
kernel.merkle's: pairs from the left, an odd last node carried up unchanged, nodes hashed
by kernel.merkle.node_hash; tests/unit/test_export_tree.py checks the paths and root equal
kernel.merkle's for every size up to a few hundred leaves.
"""

from __future__ import annotations

from kernel import merkle

HASH_BYTES = 32


class CompactTree:
    """The levels of an RFC 6962 tree, leaves first; built from leaf hashes appended in order."""

    def __init__(self) -> None:
        self._leaves = bytearray()
        self._levels: list[bytearray] | None = None

    def append(self, leaf: bytes) -> None:
        if self._levels is not None:
            raise RuntimeError("the tree is already built: no leaf can be added")
        if len(leaf) != HASH_BYTES:
            raise ValueError("a leaf is a 32-byte hash")
        self._leaves += leaf

    def __len__(self) -> int:
        return len(self._leaves) // HASH_BYTES

    def leaf(self, index: int) -> bytes:
        return _hash_at(self._leaves, index)

    def build(self) -> bytes:
        """Compute the levels above the leaves once; return the root."""
        if self._levels is None:
            levels = [self._leaves]
            while len(levels[-1]) > HASH_BYTES:
                below, above = levels[-1], bytearray()
                count = len(below) // HASH_BYTES
                for index in range(0, count - 1, 2):
                    above += merkle.node_hash(_hash_at(below, index), _hash_at(below, index + 1))
                if count % 2:
                    above += _hash_at(below, count - 1)
                levels.append(above)
            self._levels = levels
        return self.root

    @property
    def root(self) -> bytes:
        if self._levels is None:
            raise RuntimeError("build the tree first")
        if not self._leaves:
            return merkle.EMPTY_ROOT
        return bytes(self._levels[-1])

    def path(self, index: int) -> list[bytes]:
        """The leaf's audit path, bottom up: the same list kernel.merkle.inclusion_proofs
        gives for it (a level where the node has no sibling adds nothing)."""
        if self._levels is None:
            raise RuntimeError("build the tree first")
        if not 0 <= index < len(self):
            raise IndexError(index)
        path = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level) // HASH_BYTES:
                path.append(_hash_at(level, sibling))
            index //= 2
        return path


def _hash_at(level: bytearray, index: int) -> bytes:
    return bytes(level[index * HASH_BYTES : (index + 1) * HASH_BYTES])
