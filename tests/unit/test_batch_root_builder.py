"""signing.audit.roots.BatchRootBuilder: a batch's root built page by page, in log memory,
is kernel.merkle's root over the same leaves, for every size and every way of paging."""

import os

import pytest

from kernel import merkle
from signing.audit.roots import BatchRootBuilder, batch_root


def signatures(count: int) -> list[tuple[int, bytes]]:
    return [(record_id, os.urandom(64)) for record_id in range(101, 101 + count)]


@pytest.mark.parametrize("count", [*range(0, 70), 127, 128, 129, 1000])
def test_the_built_root_is_the_root_of_the_whole_list(count):
    pairs = signatures(count)
    expected = merkle.root([merkle.record_leaf(record_id, raw) for record_id, raw in pairs])
    for page in (1, 3, 7, max(count, 1)):
        builder = BatchRootBuilder()
        for first in range(0, count, page):
            builder.add(pairs[first : first + page])
        assert builder.root() == expected == batch_root(reversed(pairs))


def test_the_stack_stays_as_small_as_the_log_of_the_size():
    builder = BatchRootBuilder()
    builder.add(signatures(1023))
    assert len(builder._stack) == 10  # 512 + 256 + … + 1


def test_a_record_out_of_order_is_refused():
    builder = BatchRootBuilder()
    builder.add([(5, b"a"), (6, b"b")])
    with pytest.raises(ValueError, match="record 6 comes after 6"):
        builder.add([(6, b"c")])
