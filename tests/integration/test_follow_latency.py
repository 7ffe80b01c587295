"""The follow-run latency bench on a short run: a real web server, real workers, records
POSTed through the API while a follow run signs them. No timing is asserted; what is checked
is what its figures are made of."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ElementTree

import pytest
from rich.console import Console

from devtools import follow_latency, loadtest
from devtools.management.commands.follow_latency import results_table
from records.models import Record, Signature
from signing.models import SigningRun
from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.workers]


def test_records_sent_through_the_api_are_all_signed_and_their_latency_measured(worker_env, broker):
    ARTIFACTS.mkdir(exist_ok=True)
    report = follow_latency.run_follow_latency(
        rate=200,
        request_size=20,
        seconds=2,
        batch_size=25,
        keys=5,
        workers=1,
        threads=2,
        server=loadtest.DEFAULT_SERVER,
        env=worker_env,
        log_file=ARTIFACTS / "follow_latency.log",
        say=lambda line: None,
    )

    assert report.requests >= 10
    assert report.statuses == {"201": report.requests}, report.statuses
    assert report.records_sent == report.requests * 20 == Record.objects.count()
    assert report.records_signed == report.records_sent == Signature.objects.count()
    assert report.unsigned_at_end == 0
    assert report.audit_passed
    run = SigningRun.objects.get()
    assert run.follow
    assert run.status == SigningRun.Status.COMPLETED
    assert report.batches == run.batches.count() >= report.records_sent // 25
    assert 0 < report.p50_ms <= report.p90_ms <= report.p99_ms <= report.max_ms
    assert sum(report.histogram) == report.records_signed

    out = io.StringIO()
    Console(file=out, width=200).print(results_table(report))
    assert "insert → signed p50" in out.getvalue()
    assert json.loads(json.dumps(report.as_dict()))["records_signed"] == report.records_signed
    svg = ElementTree.fromstring(follow_latency.histogram_svg(report))
    bars = [e for e in svg if e.tag.endswith("rect")][1:]  # the first is the background
    assert len(bars) == len(report.histogram)


def test_the_histogram_spans_the_slowest_latency_and_keeps_everything():
    width, counts = follow_latency.histogram([0.5, 99.9, 100.0, 150.2])
    assert (width, len(counts), sum(counts)) == (4.0, 50, 4)
    assert counts[0] == counts[24] == counts[25] == counts[37] == 1
    width, counts = follow_latency.histogram([5.0, 1500.0])
    assert (width, len(counts), counts[-1]) == (20.0, 51, 1)  # slower than 1 s: the last bar
