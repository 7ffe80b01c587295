"""The audit's bounded map: results in order, and never the whole table read ahead."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from signing.audit.rules import _map_bounded


def test_results_come_in_order_with_a_bounded_read_ahead():
    drawn = []
    consumed = []

    def chunks():
        for number in range(50):
            drawn.append(number)
            yield number

    with ThreadPoolExecutor(max_workers=4) as pool:
        for result in _map_bounded(pool, lambda n: n * n, chunks(), ahead=3):
            consumed.append(result)
            # The chunks read but not yet consumed stay within the window.
            assert len(drawn) - len(consumed) <= 3

    assert consumed == [n * n for n in range(50)]


def test_an_error_in_a_chunk_reaches_the_caller():
    def fail_on_seven(n: int) -> int:
        if n == 7:
            raise ValueError("chunk 7")
        return n

    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(ValueError, match="chunk 7"):
        list(_map_bounded(pool, fail_on_seven, range(20), ahead=4))
