"""The load test: a run's throughput while dashboards, API clients and a scraper hit the web
tier at a fixed rate (issue 15, docs/benchmarks.md).

A bounded, open-loop generator: request i is due at start + i / rate, whatever the answers
before it, and is sent by one of a fixed number of threads, each with one keep-alive
connection to 127.0.0.1 (never another host). Requests go round a mix of what a few open run
pages, API clients and a Prometheus scraper ask for. A request that finds every thread busy
waits for one, and counts as late: the rate asked for was not delivered. The web server is a
separate process started from a command line given as a parameter (runserver by default;
gunicorn once it is the production server), so the figures include its cost the way a
deployment pays it.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from devtools.bench import seed_fresh
from devtools.sandbox import free_port
from signing.audit.rules import audit
from signing.models import SigningRun
from signing.ops.workers import WorkerPool
from signing.runs.dispatch import check_ready_to_sign, start_run

HOST = "127.0.0.1"
# The production server, as compose's `web` runs it (gunicorn.conf.py), on a local port.
DEFAULT_SERVER = "{python} -m gunicorn -c gunicorn.conf.py -b 127.0.0.1:{port} signing_site.wsgi"
USERNAME = "loadtest"
REQUEST_TIMEOUT_SECONDS = 10.0
RUN_DEADLINE_SECONDS = 1800.0
SERVER_START_SECONDS = 60.0
# What each path stands for; {run} is the run being signed.
MIX: tuple[tuple[str, str], ...] = (
    ("metrics", "/metrics"),
    ("api run", "/api/runs/{run}/"),
    ("api keys", "/api/keys/"),
    ("run page", "/runs/{run}/"),
    ("progress.json", "/runs/{run}/progress.json"),
    ("charts", "/runs/{run}/charts/"),
)


@dataclass
class LoadResult:
    rate: float  # requests per second asked for (0: no load)
    batch_size: int
    seconds: float
    records_per_s: float
    requests: int = 0
    late: int = 0  # sent after their due time because every thread was busy
    statuses: dict[str, int] = field(default_factory=dict)  # "200": n, "503": n, "error": n
    server_errors: int = 0  # 5xx
    errors: int = 0  # no answer: refused, reset, timed out
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    max_ms: float = 0.0
    audit_passed: bool = False


@dataclass
class LoadReport:
    records: int
    keys: int
    workers: int
    threads: int
    server: str
    results: list[LoadResult] = field(default_factory=list)

    def baseline(self) -> float | None:
        """Mean records/s of the runs with no load."""
        quiet = [r.records_per_s for r in self.results if r.rate == 0]
        return sum(quiet) / len(quiet) if quiet else None

    def as_dict(self) -> dict[str, object]:
        return {
            **asdict(self),
            "baseline_records_per_s": self.baseline(),
            "results": [asdict(r) for r in self.results],
        }


class Client:
    """One keep-alive HTTP/1.1 connection per thread to the server under test."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = headers
        self._local = threading.local()

    def get(self, path: str) -> int:
        """GET `path`; the status, after reading the whole body."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(
                HOST, self.port, timeout=REQUEST_TIMEOUT_SECONDS
            )
            self._local.connection = connection
        try:
            connection.request("GET", path, headers=self.headers)
            response = connection.getresponse()
            response.read()
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                self._local.connection = None
            return response.status
        except BaseException:
            connection.close()
            self._local.connection = None
            raise


def run_load_test(
    *,
    records: int,
    keys: int,
    batch_size: int,
    rates: list[float],
    workers: int,
    threads: int,
    server: str,
    env: dict[str, str],
    log_file: Path,
    say: Callable[[str], object] = print,
) -> LoadReport:
    """One server for every rate; the database seeded afresh before each, so every run signs
    the same records. The dashboard user is `loadtest`, with a new random password."""
    report = LoadReport(records=records, keys=keys, workers=workers, threads=threads, server=server)
    password = secrets.token_urlsafe(24)
    with web_server(server, env=env, log_file=log_file) as port:
        for rate in rates:
            seed_fresh(records=records, keys=keys)
            user, _ = get_user_model().objects.get_or_create(username=USERNAME)
            user.set_password(password)
            user.save()
            headers = log_in(port, username=USERNAME, password=password)
            say(f"signing {records:,} records at batch size {batch_size:,}, {rate:g} requests/s")
            report.results.append(
                loaded_run(
                    port=port,
                    headers=headers,
                    rate=rate,
                    batch_size=batch_size,
                    workers=workers,
                    threads=threads,
                    env=env,
                    log_file=log_file,
                )
            )
    return report


def generate_load(
    client: Client,
    *,
    rate: float,
    paths: list[str],
    until: Callable[[], bool],
    threads: int = 32,
) -> tuple[int, int, Counter[str], list[float]]:
    """GET `paths` in turn at `rate` per second until `until()` is true (open_loop)."""
    return open_loop(
        lambda sent: str(client.get(paths[sent % len(paths)])),
        rate=rate,
        until=until,
        threads=threads,
    )


def open_loop(
    send: Callable[[int], str],
    *,
    rate: float,
    until: Callable[[], bool],
    threads: int = 32,
) -> tuple[int, int, Counter[str], list[float]]:
    """Call `send(i)` for request i, due at start + i / `rate`, until `until()` is true:
    (requests sent, late ones, outcomes, latencies in seconds). `send` returns the outcome
    (an HTTP status); one that raises counts as "error: <type>". At most `threads` are in
    flight; a request that finds every thread busy waits for one, and counts as late."""
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    free = threading.Semaphore(threads)

    def one(index: int) -> None:
        started = time.perf_counter()
        try:
            outcome = send(index)
        except Exception as error:  # no answer at all: counted, never raised
            outcome = f"error: {type(error).__name__}"
        finally:
            free.release()
        with lock:
            statuses[outcome] += 1
            latencies.append(time.perf_counter() - started)

    sent = late = 0
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="load") as pool:
        while not until():
            due = started + sent / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(min(pause, 0.05))  # the generator's clock, not a test's wait
                continue
            if not free.acquire(blocking=False):
                late += 1
                free.acquire()
            pool.submit(one, sent)
            sent += 1
    return sent, late, statuses, latencies


@contextmanager
def web_server(command: str, *, env: dict[str, str], log_file: Path) -> Iterator[int]:
    """Start the server `command` names ({python}, {manage}, {port} filled in) and yield its
    port once /healthz answers; stop it (its whole process group) afterwards."""
    port = free_port()
    argv = shlex.split(
        command.format(
            python=sys.executable,
            manage=Path(settings.BASE_DIR) / "manage.py",
            port=port,
        )
    )
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            argv,
            cwd=settings.BASE_DIR,
            # A production server refuses the development secret key (kernel.safety);
            # this one lives as long as the test, on 127.0.0.1.
            env={"DJANGO_SECRET_KEY": secrets.token_urlsafe(50), **os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not _answers(port):
            if process.poll() is not None:
                raise RuntimeError(f"the web server exited while starting (log: {log_file})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the web server did not answer (log: {log_file})")
            time.sleep(0.1)
        yield port
    finally:
        _stop(process)


def log_in(port: int, *, username: str, password: str) -> dict[str, str]:
    """Headers of a logged-in dashboard session and an API token, got as a user gets them:
    the login form (with its CSRF token) and POST /api/auth/token/."""
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_SECONDS)
    try:
        connection.request("GET", "/accounts/login/")
        response = connection.getresponse()
        response.read()
        csrf = _cookie(response, "csrftoken")
        body = urllib.parse.urlencode(
            {"username": username, "password": password, "csrfmiddlewaretoken": csrf}
        )
        connection.request(
            "POST",
            "/accounts/login/",
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": f"csrftoken={csrf}",
                "Referer": f"http://{HOST}:{port}/accounts/login/",
            },
        )
        response = connection.getresponse()
        response.read()
        session = _cookie(response, "sessionid")
        if response.status != 302 or not session:
            raise RuntimeError(f"logging in answered {response.status}")
        connection.request(
            "POST",
            "/api/auth/token/",
            body=json.dumps({"username": username, "password": password}),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        token = json.loads(response.read())["token"]
    finally:
        connection.close()
    # One header set for every path: the session logs in the pages, the token the API
    # (DRF tries the token first, and needs no CSRF token for a GET either way).
    return {"Cookie": f"sessionid={session}", "Authorization": f"Token {token}"}


def loaded_run(
    *,
    port: int,
    headers: dict[str, str],
    rate: float,
    batch_size: int,
    workers: int,
    threads: int,
    env: dict[str, str],
    log_file: Path,
) -> LoadResult:
    """One full run with real workers while the server gets `rate` requests a second;
    audited once the workers are stopped."""
    check_ready_to_sign()
    pool = WorkerPool(processes=workers, threads=threads, env=env, log_file=log_file).start()
    try:
        pool.wait_ready(timeout=120)
        run = start_run(batch_size=batch_size)
        paths = [path.format(run=run.pk) for _, path in MIX]
        done = threading.Event()
        watcher = threading.Thread(target=_watch, args=(run.pk, done), daemon=True)
        watcher.start()
        if rate:
            sent, late, statuses, latencies = generate_load(
                Client(port, headers), rate=rate, paths=paths, until=done.is_set
            )
        else:
            sent, late, statuses, latencies = 0, 0, Counter(), []
        watcher.join()
    finally:
        pool.stop()
    run.refresh_from_db()
    if run.finished_at is None or run.started_at is None:
        raise RuntimeError(f"run {run.pk} did not finish: {run.status}")
    seconds = (run.finished_at - run.started_at).total_seconds()
    passed = audit(run_id=run.pk, processes=min(os.cpu_count() or 1, 4)).passed
    latencies.sort()
    return LoadResult(
        rate=rate,
        batch_size=batch_size,
        seconds=round(seconds, 3),
        records_per_s=round(run.record_count / seconds, 1) if seconds else 0.0,
        requests=sent,
        late=late,
        statuses=dict(sorted(statuses.items())),
        server_errors=sum(n for status, n in statuses.items() if status.startswith("5")),
        errors=sum(n for status, n in statuses.items() if status.startswith("error")),
        p50_ms=_percentile_ms(latencies, 0.50),
        p95_ms=_percentile_ms(latencies, 0.95),
        max_ms=round(latencies[-1] * 1000, 1) if latencies else 0.0,
        audit_passed=passed and run.status == SigningRun.Status.COMPLETED,
    )


def _watch(run_id: int, done: threading.Event) -> None:
    """Set `done` when the run finishes (or the deadline passes)."""
    from django.db import connection

    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    try:
        while time.monotonic() < deadline:
            status = SigningRun.objects.values_list("status", flat=True).get(pk=run_id)
            if status in SigningRun.FINISHED_STATUSES:
                break
            # A measurement loop (the pipeline never polls): one primary-key read every
            # half second, load the workers do not feel.
            time.sleep(0.5)
    finally:
        connection.close()
        done.set()


def _percentile_ms(ordered: list[float], share: float) -> float:
    if not ordered:
        return 0.0
    return round(ordered[min(int(share * len(ordered)), len(ordered) - 1)] * 1000, 1)


def _cookie(response: http.client.HTTPResponse, name: str) -> str:
    for header in response.headers.get_all("Set-Cookie") or []:
        key, _, rest = header.partition("=")
        if key.strip() == name:
            return rest.split(";", 1)[0]
    return ""


def _answers(port: int) -> bool:
    try:
        connection = http.client.HTTPConnection(HOST, port, timeout=2)
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
        connection.close()
        return status == 200
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
