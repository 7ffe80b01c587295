"""Merkle roots of batches and runs (issue 18, tamper evidence), over kernel.merkle.

A batch's root is over its signatures in record id order; a run's root is over its batches'
roots in seq order. The store computes a batch's root from the signatures it writes
(signing.runs.store), finish_run a run's from the roots its batches hold
(signing.runs.dispatch), and the audit recomputes both from the signatures themselves
(signing.audit.rules). They live here, under both, so that each computes them one way.
"""

from __future__ import annotations

from collections.abc import Iterable

from kernel import merkle
from signing.models import Batch


def batch_root(signatures: Iterable[tuple[int, bytes]]) -> bytes:
    """The root over (record id, signature) pairs, in whatever order they come (put in
    record id order here: a batch's pairs come in it already, and sorting them costs ~1%
    of hashing them)."""
    return merkle.root(
        [merkle.record_leaf(record_id, raw) for record_id, raw in sorted(signatures)]
    )


class BatchRootBuilder:
    """A batch's root built as its signatures come, page by page, in record id order, in
    memory that grows with the log of the batch's size: a batch staged page by page (any
    size, a million records and more) keeps no list of its leaves.

    The stack holds the roots of perfect subtrees, sizes decreasing powers of two; folding
    them from the right gives RFC 6962's split at the largest power of two, so the root is
    kernel.merkle.root's (tests/unit/test_batch_root_builder.py checks it for every size).
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (leaves under it, its root)
        self._last_record_id: int | None = None

    def add(self, signatures: Iterable[tuple[int, bytes]]) -> None:
        """Append (record id, signature) pairs; ids must rise, across calls too."""
        stack = self._stack
        for record_id, raw in signatures:
            if self._last_record_id is not None and record_id <= self._last_record_id:
                raise ValueError(f"record {record_id} comes after {self._last_record_id}")
            self._last_record_id = record_id
            size, node = 1, merkle.record_leaf(record_id, raw)
            while stack and stack[-1][0] == size:
                _, left = stack.pop()
                size, node = 2 * size, merkle.node_hash(left, node)
            stack.append((size, node))

    def root(self) -> bytes:
        if not self._stack:
            return merkle.EMPTY_ROOT
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = merkle.node_hash(left, node)
        return node


def run_root(batch_roots: Iterable[tuple[int, bytes]]) -> bytes:
    """The root over (seq, batch root) pairs, in whatever order they come: the leaves are put
    in seq order here."""
    return merkle.root([merkle.batch_leaf(seq, root) for seq, root in sorted(batch_roots)])


def stored_run_root(run_id: int, *, through_seq: int | None = None) -> bytes | None:
    """The root over the roots the run's batches hold, in seq order, or over those of seq 1 to
    `through_seq` only (a prefix: what a checkpoint of a run still going would sign).

    None when a batch of that range is not signed, or was signed before roots existed:
    there is then no root to give. A run with no batch (nothing to sign) has the empty
    tree's root.
    """
    batches = Batch.objects.filter(run_id=run_id)
    if through_seq is not None:
        batches = batches.filter(seq__lte=through_seq)
    roots = []
    for seq, status, root in batches.values_list("seq", "status", "merkle_root"):
        if status != Batch.Status.SIGNED or root is None:
            return None
        roots.append((seq, bytes(root)))
    if through_seq is not None and len(roots) != through_seq:
        return None  # a prefix with a gap: no such batches (yet)
    return run_root(roots)
