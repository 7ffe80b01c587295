"""signing.runs.dispatch.parse_batch_size: what a user may type as a batch size."""

import pytest

from signing.runs.dispatch import MAX_BATCH_SIZE, parse_batch_size
from signing.runs.exceptions import InvalidBatchSize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1, 1),
        ("1000", 1000),
        (" 50 ", 50),
        ("+7", 7),
        ("007", 7),
        (MAX_BATCH_SIZE, MAX_BATCH_SIZE),
        (str(MAX_BATCH_SIZE), MAX_BATCH_SIZE),
    ],
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


@pytest.mark.parametrize(
    "raw",
    [
        "--5",  # passes a strip of every sign, then int() raised ValueError
        "+-5",
        "-+5",
        "5-",
        "1_000",  # int() reads it; nobody types it as a batch size
        "²",  # str.isdigit() says yes, int() says no
        "\uff11\uff12",  # fullwidth digits: int() reads 12, but a batch size is ASCII
        "5\n5",
    ],
)
def test_signs_and_digits_that_do_not_make_one_decimal_number_are_refused(raw):
    with pytest.raises(InvalidBatchSize, match="batch size must be a whole number"):
        parse_batch_size(raw)


def test_a_number_too_long_for_int_is_out_of_range_not_a_crash():
    # int() refuses decimal strings past 4,300 digits (sys.set_int_max_str_digits).
    with pytest.raises(InvalidBatchSize, match=f"from 1 to {MAX_BATCH_SIZE}, got a 5000-digit"):
        parse_batch_size("9" * 5000)
