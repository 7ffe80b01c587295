"""Merkle trees over signatures, RFC 6962 hashing: tamper evidence anyone can recompute.

Pure functions, no Django and no database, so the standalone verifier
(tools/verify_export.py) can carry an exact copy of what it needs.

Two trees, both with RFC 6962's shape (a tree of n leaves splits at the largest power of
two below n) and hashes (leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ left ‖ right)):

- a batch's tree: one leaf per signature, in record id order, data = record id as 8
  bytes big-endian ‖ the signature's bytes;
- a run's tree: one leaf per batch, in ``seq`` order, data = the batch's seq as 8 bytes
  big-endian ‖ its batch root. The seq is in the leaf so that a root cannot be replayed at
  another place in the run.

Changing, removing or adding one signature changes its batch's root and so the run's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()  # RFC 6962: the hash of an empty tree


CHECKPOINT_INPUT_VERSION: Final = b"ckpt-v1"


def checkpoint_input(run_id: int, batches: int, run_root: bytes) -> bytes:
    """The exact bytes a follow run's checkpoint signs (a public contract, README "Verifying
    an export offline"): ``"ckpt-v1\n" + str(run_id) + "\n" + str(batches) + "\n" +
    hex(root)``, ASCII. It says "the first `batches` batches of run `run_id`, in seq order,
    have this root". Its own version tag keeps it apart from a record's signing input
    (``sig-v1``), so no checkpoint signature can pass for a record's, nor the reverse.
    """
    if len(run_root) != 32:
        raise ValueError(f"a run root is 32 bytes, got {len(run_root)}")
    return b"%s\n%d\n%d\n%s" % (CHECKPOINT_INPUT_VERSION, run_id, batches, run_root.hex().encode())


def record_leaf(record_id: int, signature: bytes) -> bytes:
    return leaf_hash(record_id.to_bytes(8, "big") + signature)


def batch_leaf(seq: int, batch_root: bytes) -> bytes:
    return leaf_hash(seq.to_bytes(8, "big") + batch_root)


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def root(leaves: Sequence[bytes]) -> bytes:
    """The root over leaf hashes, level by level: pairing from the left and carrying an odd
    last node up unchanged gives exactly RFC 6962's largest-power-of-two split."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        level = _level_above(level)
    return level[0]


def _level_above(level: Sequence[bytes]) -> list[bytes]:
    """The next level up: nodes paired from the left, an odd last one carried up as is."""
    paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])
    return paired


def inclusion_proofs(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every leaf's audit path (RFC 6962 section 2.1.1), bottom up, in one pass per level."""
    proofs: list[list[bytes]] = [[] for _ in leaves]
    positions = list(range(len(leaves)))  # each leaf's index on the current level
    level = list(leaves)
    while len(level) > 1:
        for leaf, index in enumerate(positions):
            sibling = index ^ 1
            if sibling < len(level):
                proofs[leaf].append(level[sibling])
        level = _level_above(level)
        positions = [index // 2 for index in positions]
    return proofs


def root_from_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """The root a leaf at ``index`` of a ``size``-leaf tree and its path imply (RFC 9162
    section 2.1.3.2), or None if the path cannot belong to such a tree."""
    if not 0 <= index < size:
        return None
    node, last = leaf, size - 1
    steps = iter(proof)
    while last > 0:
        if index % 2 == 1 or index < last:
            sibling = next(steps, None)
            if sibling is None:
                return None
            node = node_hash(sibling, node) if index % 2 == 1 else node_hash(node, sibling)
        index //= 2
        last //= 2
    return None if next(steps, None) is not None else node
