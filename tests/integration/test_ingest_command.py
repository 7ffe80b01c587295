"""manage.py ingest (issue 18, point 1): JSON lines from a file or standard input, stored a
chunk at a time, and an exact statement of what is stored when it stops."""

import io
import json
import os
import signal
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from records.models import Record
from tests.conftest import wait_until
from tests.support import MANAGE

pytestmark = pytest.mark.usefixtures("backend")

PAYLOADS = ["plain", "", "  spaced  ", "é中文🙂", "line\nbreak", "tab\there", "\x7f\x01"]


def write_lines(path, payloads) -> None:
    with path.open("w", encoding="utf-8") as out:
        for payload in payloads:
            out.write(json.dumps({"payload": payload}) + "\n")


def stored_payloads() -> list[str]:
    return list(Record.objects.order_by("id").values_list("payload", flat=True))


def ingest(*args: str) -> str:
    out = io.StringIO()
    call_command("ingest", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_a_file_is_ingested_exactly_and_the_ids_are_printed(tmp_path):
    write_lines(tmp_path / "in.jsonl", PAYLOADS)
    out = ingest(str(tmp_path / "in.jsonl"))
    ids = list(Record.objects.order_by("id").values_list("id", flat=True))
    assert stored_payloads() == PAYLOADS
    assert f"ingested 7 records from {tmp_path / 'in.jsonl'} (lines 1 to 7)" in out
    assert f"ids {ids[0]} to {ids[-1]}" in out


@pytest.mark.django_db
def test_verbose_prints_each_chunk_as_it_is_stored(tmp_path):
    write_lines(tmp_path / "in.jsonl", PAYLOADS)
    out = ingest("-v", "2", str(tmp_path / "in.jsonl"))
    ids = list(Record.objects.order_by("id").values_list("id", flat=True))
    assert f"lines 1 to 7 stored: ids {ids[0]} to {ids[-1]}" in out


@pytest.mark.django_db
def test_more_lines_than_a_chunk_are_all_stored_in_order(tmp_path):
    payloads = [f"record {n}" for n in range(23_456)]
    write_lines(tmp_path / "in.jsonl", payloads)
    ingest(str(tmp_path / "in.jsonl"))
    assert stored_payloads() == payloads


@pytest.mark.django_db
def test_an_empty_file_ingests_nothing_and_succeeds(tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert "nothing to ingest" in ingest(str(tmp_path / "empty.jsonl"))
    assert not Record.objects.exists()


@pytest.mark.django_db
def test_a_bad_line_stops_it_saying_what_is_stored_and_where_to_go_on(tmp_path):
    # Given a first chunk of 10,000 good lines, 2,344 more, then a NUL at line 12,345
    good = [f"record {n}" for n in range(12_344)]
    path = tmp_path / "in.jsonl"
    write_lines(path, [*good, "a\x00b", "after the bad line"])
    # When it is ingested
    with pytest.raises(CommandError) as stopped:
        ingest(str(path))
    # Then every line before the bad one is stored, exactly, and nothing after it
    assert stored_payloads() == good
    ids = list(Record.objects.order_by("id").values_list("id", flat=True))
    message = str(stopped.value)
    assert message.splitlines() == [
        "line 12,345: payload contains a NUL character (U+0000) at character 2, which "
        "PostgreSQL text cannot hold",
        f"lines 1 to 12,344 are stored as 12,344 records, ids {ids[0]} to {ids[-1]}; nothing "
        "after line 12,344 was stored.",
        f"to go on from line 12,345: tail -n +12345 {path} | manage.py ingest -",
    ]


@pytest.mark.django_db
def test_a_bad_first_line_stores_nothing(tmp_path):
    (tmp_path / "in.jsonl").write_text('"a bare string"\n{"payload": "x"}\n')
    with pytest.raises(CommandError, match="line 1: must be a JSON object") as stopped:
        ingest(str(tmp_path / "in.jsonl"))
    assert "nothing was stored." in str(stopped.value)
    assert not Record.objects.exists()


@pytest.mark.django_db
def test_check_reads_every_line_and_stores_nothing(tmp_path):
    write_lines(tmp_path / "in.jsonl", PAYLOADS)
    assert "checked 7 lines" in ingest("--check", str(tmp_path / "in.jsonl"))
    write_lines(tmp_path / "bad.jsonl", [*PAYLOADS, "\ud800"])
    with pytest.raises(CommandError, match="line 8: payload contains a lone surrogate"):
        ingest("--check", str(tmp_path / "bad.jsonl"))
    assert not Record.objects.exists()


@pytest.mark.django_db
def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(CommandError, match=r"^cannot read .*: No such file or directory$"):
        ingest(str(tmp_path / "nope.jsonl"))


def run_ingest(env, *args: str, **given) -> subprocess.CompletedProcess:
    """`manage.py ingest ARGS` in a process of its own; `given`: its stdin or input."""
    return subprocess.run(
        [sys.executable, MANAGE, "ingest", *args],
        env=env,
        **given,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(worker_env):
    """The test database (and, embedded, its SQLite file) for a process of its own."""
    return {**os.environ, **worker_env, "COLUMNS": "200"}


def test_standard_input_is_read_with_a_dash(env, tmp_path):
    write_lines(tmp_path / "in.jsonl", PAYLOADS)
    with (tmp_path / "in.jsonl").open("rb") as stdin:
        result = run_ingest(env, "-", stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert "ingested 7 records from standard input (lines 1 to 7)" in result.stdout
    assert stored_payloads() == PAYLOADS


def test_a_bad_line_on_standard_input_exits_1_with_the_line_number(env):
    data = json.dumps({"payload": "kept"}) + "\n" + '{"payload": 1}\n'
    result = run_ingest(env, "-", input=data)
    assert result.returncode == 1
    assert "line 2: payload must be a JSON string, not a number" in result.stderr
    assert "line 1 is stored as 1 record, id " in result.stderr
    assert "(tail -n +2)" in result.stderr
    assert "Traceback" not in result.stderr
    assert stored_payloads() == ["kept"]


def start_ingest_from_a_pipe(env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, MANAGE, "ingest", "-"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_lines_from_a_pipe_are_stored_as_they_come_not_once_a_chunk_is_full(env):
    # Given a producer that writes three lines and keeps its pipe open
    process = start_ingest_from_a_pipe(env)
    try:
        process.stdin.write("".join(json.dumps({"payload": p}) + "\n" for p in "abc"))
        process.stdin.flush()
        # Then they are stored while it waits for more
        wait_until(lambda: Record.objects.count() == 3, timeout=30)
        process.stdin.write(json.dumps({"payload": "d"}) + "\n")
        stdout, stderr = process.communicate(timeout=60)  # the producer ends
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "ingested 4 records from standard input (lines 1 to 4)" in stdout
    assert stored_payloads() == ["a", "b", "c", "d"]


def test_ctrl_c_stops_it_saying_exactly_what_is_stored(env):
    # Given a producer that has written a chunk and a line more, and keeps the pipe open
    process = start_ingest_from_a_pipe(env)
    try:
        for n in range(10_001):
            process.stdin.write(json.dumps({"payload": f"r{n}"}) + "\n")
        process.stdin.flush()
        wait_until(lambda: Record.objects.count() == 10_001, timeout=60)
        # When the user presses Ctrl-C while it waits for more
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    # Then it says exactly what is stored and where to go on from
    assert process.returncode == 130, stderr
    assert "stopped by SIGINT" in stderr
    assert "lines 1 to 10,001 are stored as 10,001 records" in stderr
    assert "from line 10,002 on (tail -n +10002)" in stderr
    assert "Traceback" not in stderr
    assert Record.objects.count() == 10_001
