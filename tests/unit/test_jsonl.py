"""records.jsonl: what a line of `manage.py ingest` must be, and chunks cut with memory flat."""

import contextlib
import io
import json
import os
import re
import threading
import time

import pytest

from records.jsonl import MAX_LINE_BYTES, BadLine, parse_line, read_chunks
from records.payloads import MAX_PAYLOAD_CHARS


def lines(*payloads: str) -> bytes:
    return b"".join(json.dumps({"payload": p}).encode() + b"\n" for p in payloads)


@pytest.mark.parametrize(
    ("raw", "payload"),
    [
        (b'{"payload": "hello"}\n', "hello"),
        (b'{"payload": "hello"}\r\n', "hello"),  # Windows line ends
        (b'{"payload": "hello"}', "hello"),  # the last line may lack its newline
        (b'  {"payload": ""}  \n', ""),
        (b'{"payload": "\\u00e9\\ud83d\\ude00 \\t"}\n', "é😀 \t"),
        ('{"payload": "é😀 中文"}\n'.encode(), "é😀 中文"),
        (b'{"payload": "a\\nb"}\n', "a\nb"),
    ],
)
def test_a_good_line_gives_its_payload_exactly(raw, payload):
    assert parse_line(raw) == payload


def test_the_longest_payload_fits_in_a_line_even_fully_escaped():
    raw = b'{"payload": "' + b"\\ud83d\\ude00" * (MAX_PAYLOAD_CHARS // 2) + b'"}\n'
    assert len(raw) <= MAX_LINE_BYTES
    assert parse_line(raw) == "😀" * (MAX_PAYLOAD_CHARS // 2)


def test_a_bom_is_skipped_on_the_first_line_only():
    raw = b'\xef\xbb\xbf{"payload": "x"}\n'
    assert parse_line(raw, first=True) == "x"
    with pytest.raises(ValueError, match="not JSON"):
        parse_line(raw)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"\n", "empty"),
        (b"   \r\n", "empty"),
        (b'"just a string"\n', "not a string (use jq"),
        (b"[1]\n", "not an array"),
        (b"5\n", "not a number"),
        (b"null\n", "not null"),
        (b"{}\n", "'payload' is required"),
        (b'{"payload": "x", "kind": "y"}\n', "unknown field 'kind'"),
        (b'{"payload": "x", "payload": "y"}\n', "'payload' is given twice"),
        (b'{"payload": 5}\n', "payload must be a JSON string, not a number"),
        (b'{"payload": null}\n', "not null"),
        (b'{"payload": NaN}\n', "NaN is not JSON"),
        (b'{"payload": "a\\u0000b"}\n', "NUL character (U+0000) at character 2"),
        (b'{"payload": "\\ud800"}\n', "lone surrogate (U+D800)"),
        (b'{"payload": "\xed\xa0\x80"}\n', "not UTF-8 text (byte 0xed at byte 14)"),
        (b'{"payload": "\xff"}\n', "not UTF-8 text (byte 0xff"),
        (b'{"payload": "x"\n', "not JSON"),
        (b'{"payload": "x"} {"payload": "y"}\n', "not JSON (Extra data"),
        (json.dumps({"payload": "x" * (MAX_PAYLOAD_CHARS + 1)}).encode(), "longer than 100,000"),
    ],
)
def test_a_bad_line_says_what_is_wrong(raw, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_line(raw)


def test_a_message_never_quotes_the_payload():
    secret = "hunter2-secret"
    for raw in (
        json.dumps({"payload": secret + "\x00"}).encode(),
        b'{"payload": "' + secret.encode() + b'\\ud800"}',
        b'{"payload": "' + secret.encode() + b'\xff"}',
        b'{"payload": "' + secret.encode(),
    ):
        with pytest.raises(ValueError, match=r".") as refused:
            parse_line(raw)
        assert secret not in str(refused.value)


def test_chunks_cover_every_line_in_order():
    payloads = [f"p{n}" for n in range(25)]
    chunks = list(read_chunks(io.BytesIO(lines(*payloads)), max_records=10))
    assert [(c.first_line, c.last_line) for c in chunks] == [(1, 10), (11, 20), (21, 25)]
    assert [p for c in chunks for p in c.payloads] == payloads
    assert chunks[-1].bytes_read == len(lines(*payloads))


def test_a_chunk_is_cut_by_characters_too():
    chunks = list(read_chunks(io.BytesIO(lines("a" * 40, "b" * 40, "c")), max_chars=50))
    assert [len(c.payloads) for c in chunks] == [2, 1]


def test_the_good_lines_before_a_bad_one_come_first_then_the_bad_line():
    data = lines(*[f"p{n}" for n in range(12)]) + b"oops\n" + lines("never read")
    read = read_chunks(io.BytesIO(data), max_records=5)
    chunks = [next(read), next(read), next(read)]
    assert [(c.first_line, c.last_line) for c in chunks] == [(1, 5), (6, 10), (11, 12)]
    with pytest.raises(BadLine) as bad:
        next(read)
    assert bad.value.line == 13
    assert str(bad.value).startswith("line 13: not JSON")


def test_a_bad_first_line_yields_nothing():
    with pytest.raises(BadLine, match="line 1: empty"):
        list(read_chunks(io.BytesIO(b"\n" + lines("x"))))


def test_a_line_with_no_end_is_refused_once_it_is_longer_than_any_record_needs():
    stream = io.BytesIO(b"x" * (MAX_LINE_BYTES * 4))
    with pytest.raises(BadLine, match="line 1: longer than 2,097,152 bytes"):
        list(read_chunks(stream))
    assert stream.tell() == MAX_LINE_BYTES + 1  # read no further than that


def test_an_empty_input_has_no_chunks():
    assert list(read_chunks(io.BytesIO(b""))) == []


@pytest.fixture
def pipe():
    """A real pipe: (a reading stream, the write end's file descriptor)."""
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as stream:
        yield stream, write_end
        with contextlib.suppress(OSError):
            os.close(write_end)


def test_from_a_pipe_a_chunk_is_cut_once_its_first_line_has_waited(pipe):
    stream, writer = pipe
    os.write(writer, lines("a", "b", "c"))
    chunks = read_chunks(stream, max_wait=0.05)
    started = time.monotonic()
    first = next(chunks)  # the producer goes quiet: the three lines are not kept waiting
    assert first.payloads == ["a", "b", "c"]
    assert time.monotonic() - started < 5
    os.write(writer, lines("d"))
    os.close(writer)
    assert [c.payloads for c in chunks] == [["d"]]


def test_from_a_pipe_lines_are_read_whole_however_the_bytes_arrive(pipe):
    stream, writer = pipe
    data = lines("é中🙂", "second") + b'{"payload": "last, with no newline"}'

    def trickle():
        for index in range(len(data)):
            os.write(writer, data[index : index + 1])
        os.close(writer)

    thread = threading.Thread(target=trickle)
    thread.start()
    payloads = [p for c in read_chunks(stream, max_wait=10) for p in c.payloads]
    thread.join()
    assert payloads == ["é中🙂", "second", "last, with no newline"]


def test_from_a_pipe_a_line_with_no_end_is_refused_after_as_much_as_from_a_file(pipe):
    stream, writer = pipe

    def endless():
        with contextlib.suppress(OSError):  # EPIPE once the reader has given up
            for _ in range(4 * MAX_LINE_BYTES // 65536):
                os.write(writer, b"x" * 65536)

    thread = threading.Thread(target=endless, daemon=True)
    thread.start()
    with pytest.raises(BadLine, match="line 1: longer than 2,097,152 bytes"):
        list(read_chunks(stream))
    stream.close()  # the writer gets EPIPE and stops
    thread.join(timeout=10)
    assert not thread.is_alive()
