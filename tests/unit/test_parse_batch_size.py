"""signing.dispatch.parse_batch_size: what a user may type as a batch size."""

import pytest

from signing.dispatch import MAX_BATCH_SIZE, parse_batch_size
from signing.exceptions import InvalidBatchSize


@pytest.mark.parametrize(
    ("raw", "expected"), [(1, 1), ("1000", 1000), (" 50 ", 50), (MAX_BATCH_SIZE, MAX_BATCH_SIZE)]
)
def test_whole_numbers_in_range_are_accepted(raw, expected):
    assert parse_batch_size(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [0, -1, "0", "-5", "abc", "1.5", 1.5, "", None, True, "1e3", 10**12, MAX_BATCH_SIZE + 1, [1]],
)
def test_anything_else_is_refused_with_a_reason(raw):
    with pytest.raises(InvalidBatchSize, match="batch size must"):
        parse_batch_size(raw)
