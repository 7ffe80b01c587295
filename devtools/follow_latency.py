"""The follow-run latency bench (issue 18, point 3): records arrive through the API at a
steady rate while a follow run signs them; how long from insert to signature.

An open-loop generator, as in devtools/loadtest.py: request i (of `request_size` records) is
due at start + i / requests-per-second whatever the answers before it, sent by one of a
fixed number of threads with one keep-alive connection each to a gunicorn on 127.0.0.1.
After `seconds` the run is stopped gracefully (`POST /api/runs/{id}/stop/`): it signs what
has arrived and completes. The latency of a record is read from the database afterwards,
`records_signature.signed_at - records_record.created_at`: both stamped by PostgreSQL's
clock, so the generator's clock is not in it.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import connection

from devtools.bench import seed_fresh
from devtools.loadtest import HOST, REQUEST_TIMEOUT_SECONDS, log_in, open_loop, web_server
from signing.audit.rules import audit
from signing.models import SigningRun
from signing.ops.workers import WorkerPool

USERNAME = "latencybench"
STOP_DEADLINE_SECONDS = 300.0
HISTOGRAM_BARS = 50
HISTOGRAM_MAX_MS = 1000  # the drawing's widest range: a last bar holds everything slower

# Each record's latency, in milliseconds, by the database's clock.
LATENCIES_SQL = """
SELECT EXTRACT(EPOCH FROM (s.signed_at - r.created_at)) * 1000
FROM records_signature s JOIN records_record r ON r.id = s.record_id
ORDER BY 1
"""
UNSIGNED_SQL = """
SELECT count(*) FROM records_record r
WHERE NOT EXISTS (SELECT 1 FROM records_signature s WHERE s.record_id = r.id)
"""


@dataclass
class FollowLatencyReport:
    rate: int  # records a second asked for
    request_size: int
    seconds: float  # how long records arrived
    batch_size: int
    workers: int
    threads: int
    requests: int = 0
    late_requests: int = 0  # sent after their due time because every thread was busy
    statuses: dict[str, int] = field(default_factory=dict)
    records_sent: int = 0
    records_signed: int = 0
    unsigned_at_end: int = 0
    arrival_rate: float = 0.0  # records accepted a second, as delivered
    batches: int = 0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    stop_seconds: float = 0.0  # from the stop request to the run's completion
    audit_passed: bool = False
    histogram_bucket_ms: float = 0.0
    histogram: list[int] = field(default_factory=list)  # counts per bucket, from 0 ms

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_follow_latency(
    *,
    rate: int,
    request_size: int,
    seconds: float,
    batch_size: int,
    keys: int,
    workers: int,
    threads: int,
    server: str,
    env: dict[str, str],
    log_file: Path,
    say: Callable[[str], object] = print,
) -> FollowLatencyReport:
    """Seed `keys` keys and no record, start the workers, the web server and a follow run,
    send records for `seconds`, stop the run and measure. `env` goes to the workers and
    the server (a test's database)."""
    report = FollowLatencyReport(
        rate=rate,
        request_size=request_size,
        seconds=seconds,
        batch_size=batch_size,
        workers=workers,
        threads=threads,
    )
    seed_fresh(records=0, keys=keys)
    password = secrets.token_urlsafe(24)
    user, _ = get_user_model().objects.get_or_create(username=USERNAME)
    user.is_staff = True
    user.set_password(password)
    user.save()
    pool = WorkerPool(processes=workers, threads=threads, env=env, log_file=log_file).start()
    try:
        with web_server(server, env=env, log_file=log_file) as port:
            token = log_in(port, username=USERNAME, password=password)["Authorization"]
            api = Api(port, {"Authorization": token, "Content-Type": "application/json"})
            pool.wait_ready(timeout=120)
            run_id = api.post("/api/runs/", {"batch_size": batch_size, "follow": True})["id"]
            say(
                f"follow run {run_id}: {rate:,} records/s in requests of {request_size} "
                f"for {seconds:g} s, batch size {batch_size}"
            )
            started = time.monotonic()
            arrive(api, report, until=started + seconds)
            report.arrival_rate = round(report.records_sent / (time.monotonic() - started), 1)
            stop_asked = time.monotonic()
            api.post(f"/api/runs/{run_id}/stop/", {})
            run = wait_finished(run_id)
            report.stop_seconds = round(time.monotonic() - stop_asked, 3)
    finally:
        pool.stop()
    measure(report, run)
    return report


class Api:
    """One keep-alive connection per thread, JSON in and out."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = headers
        self._local = threading.local()

    def post(self, path: str, body: object) -> dict:
        """A control request (start, stop), on a new connection: the server may have closed
        this thread's idle one."""
        self.close()
        status, answer = self.send(path, json.dumps(body).encode())
        if status >= 300:
            raise RuntimeError(f"POST {path} answered {status}: {answer[:300]!r}")
        return json.loads(answer)

    def close(self) -> None:
        connection_ = getattr(self._local, "connection", None)
        if connection_ is not None:
            connection_.close()
            self._local.connection = None

    def send(self, path: str, body: bytes) -> tuple[int, bytes]:
        connection_ = getattr(self._local, "connection", None)
        if connection_ is None:
            connection_ = http.client.HTTPConnection(
                HOST, self.port, timeout=REQUEST_TIMEOUT_SECONDS
            )
            self._local.connection = connection_
        try:
            connection_.request("POST", path, body=body, headers=self.headers)
            response = connection_.getresponse()
            return response.status, response.read()
        except BaseException:
            self.close()
            raise


def arrive(api: Api, report: FollowLatencyReport, *, until: float, threads: int = 8) -> None:
    """POST records at the report's rate, in requests of its size, until `until`
    (monotonic), open loop (devtools.loadtest.open_loop)."""

    def send(index: int) -> str:
        payloads = [
            {"payload": f"arrival {index}.{i} {secrets.token_hex(16)}"}
            for i in range(report.request_size)
        ]
        return str(api.send("/api/records/", json.dumps({"records": payloads}).encode())[0])

    requests, late, statuses, _ = open_loop(
        send,
        rate=report.rate / report.request_size,
        until=lambda: time.monotonic() >= until,
        threads=threads,
    )
    report.requests, report.late_requests = requests, late
    report.statuses = dict(sorted(statuses.items()))
    report.records_sent = statuses["201"] * report.request_size


def wait_finished(run_id: int) -> SigningRun:
    deadline = time.monotonic() + STOP_DEADLINE_SECONDS
    while time.monotonic() < deadline:
        run = SigningRun.objects.get(pk=run_id)
        if run.status in SigningRun.FINISHED_STATUSES:
            return run
        time.sleep(0.1)  # a measurement loop, after the figures' window
    raise TimeoutError(f"run {run_id} did not finish within {STOP_DEADLINE_SECONDS:g} s")


def measure(report: FollowLatencyReport, run: SigningRun) -> None:
    with connection.cursor() as cursor:
        cursor.execute(LATENCIES_SQL)
        latencies = [float(value) for (value,) in cursor.fetchall()]
        cursor.execute(UNSIGNED_SQL)
        report.unsigned_at_end = cursor.fetchone()[0]
    report.records_signed = len(latencies)
    report.batches = run.batches.count()
    if latencies:
        report.p50_ms = percentile(latencies, 0.50)
        report.p90_ms = percentile(latencies, 0.90)
        report.p99_ms = percentile(latencies, 0.99)
        report.max_ms = round(latencies[-1], 1)
    report.histogram_bucket_ms, report.histogram = histogram(latencies)
    report.audit_passed = (
        audit(run_id=run.pk, processes=min(os.cpu_count() or 1, 4)).passed
        and run.status == SigningRun.Status.COMPLETED
    )


def percentile(ordered: list[float], share: float) -> float:
    return round(ordered[min(int(share * len(ordered)), len(ordered) - 1)], 1)


def histogram(latencies: list[float]) -> tuple[float, list[int]]:
    """(bucket width, counts): HISTOGRAM_BARS buckets over 0 to the slowest latency rounded
    up to 100 ms (at most HISTOGRAM_MAX_MS, then one more bucket holds everything slower)."""
    slowest = max(latencies, default=0.0)
    span = min(max(100, -(-int(slowest) // 100) * 100), HISTOGRAM_MAX_MS)
    width = span / HISTOGRAM_BARS
    buckets = [0] * (HISTOGRAM_BARS + (slowest >= span))
    for value in latencies:
        buckets[min(int(value // width), len(buckets) - 1)] += 1
    return width, buckets


def histogram_svg(report: FollowLatencyReport) -> str:
    """The histogram as a self-contained SVG, p50 and p99 marked."""
    width, height, left, bottom = 820, 300, 60, 40
    plot_w, plot_h = width - left - 20, height - bottom - 30
    top = height - bottom - plot_h
    counts = report.histogram or [0]
    bucket_ms = report.histogram_bucket_ms or 1.0
    span = bucket_ms * HISTOGRAM_BARS
    tallest = max(counts) or 1
    bar_w = plot_w / max(len(counts), HISTOGRAM_BARS + 1)

    def x_of(ms: float) -> float:
        return left + min(ms, span) / bucket_ms * bar_w

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="16" font-size="13">insert → signed, {report.records_signed:,} '
        f"records, {report.rate:,}/s in requests of {report.request_size}, batch size "
        f"{report.batch_size}: p50 {report.p50_ms:g} ms, p99 {report.p99_ms:g} ms</text>",
    ]
    for index, count in enumerate(counts):
        bar_h = plot_h * count / tallest
        low, high = index * bucket_ms, (index + 1) * bucket_ms
        label = f"{low:g}-{high:g} ms" if index < HISTOGRAM_BARS else f"{low:g} ms or more"
        parts.append(
            f'<rect x="{left + index * bar_w:.1f}" y="{height - bottom - bar_h:.1f}" '
            f'width="{max(bar_w - 1, 1):.1f}" height="{bar_h:.1f}" fill="#3b6ea8">'
            f"<title>{label}: {count:,}</title></rect>"
        )
    for tick in range(0, 11):
        ms = span * tick / 10
        parts.append(
            f'<text x="{x_of(ms):.1f}" y="{height - bottom + 14}" text-anchor="middle">'
            f"{ms:g}</text>"
        )
    parts += [
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">milliseconds, '
        f"{bucket_ms:g} ms a bar</text>",
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{tallest:,}</text>',
        f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>',
    ]
    for name, ms, colour in (("p50", report.p50_ms, "#2a9d4b"), ("p99", report.p99_ms, "#c0392b")):
        parts += [
            f'<line x1="{x_of(ms):.1f}" x2="{x_of(ms):.1f}" y1="{height - bottom}" y2="{top}" '
            f'stroke="{colour}" stroke-dasharray="4 3"/>',
            f'<text x="{x_of(ms) + 3:.1f}" y="{top + 12}" fill="{colour}">{name}</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
