"""The benchmark: raw signing speed against the whole pipeline, as a user sees it.

Raw throughput is a tight loop of `sign()` over the records' signing inputs, built before
the clock starts, with the same keys in memory (no database, no broker), in one process and
in `workers` processes. A pipeline figure is the wall time of `manage.py sign --batch-size N`
as a process of its own, from exec to exit, with real workers already running (embedded
mode: the command's own threads), then audited; the run's own `started_at → finished_at` is
kept beside it. Per batch it counts PostgreSQL commits (`pg_stat_database.xact_commit`) and
Redis commands (`INFO commandstats`). The ratio of each run to the raw rate of the same
bench run is what the tuning is judged by (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dramatiq
from django.conf import settings
from django.db import connection

from devtools.keyring_turns import KeyringTurns, StoreRate
from kernel import crypto
from keyring import sealing
from keyring.selectors import live_keys
from records.models import Record
from signing.audit.rules import audit
from signing.models import SigningRun
from signing.ops.workers import workers_for_this_mode
from signing.runs.dispatch import check_ready_to_sign
from signing.runs.seeding import seed_database

RUN_DEADLINE_SECONDS = 1800.0
# How often the progress bar looks; each look is a query, so a commit of its own, counted
# with the run's (a few hundred at most, against thousands of batches).
PROGRESS_POLL_SECONDS = 1.0
MANAGE = Path(settings.BASE_DIR) / "manage.py"
# Raw signing is timed over at most this many of the records: a rate per record needs no
# more, and a million payloads held in memory (and copied to each process) would be GBs.
RAW_SAMPLE = 100_000


@dataclass
class PipelineResult:
    batch_size: int
    seconds: float  # `manage.py sign` from exec to exit: what a user waits
    records_per_s: float
    ratio: float
    batches_per_s: float
    peak_rss_mb: float
    audit_passed: bool
    run_seconds: float  # the run's own started_at → finished_at, for comparison
    commits_per_batch: float | None  # None on SQLite, which keeps no such count
    broker_commands_per_batch: float | None  # None unless the broker is Redis


@dataclass(frozen=True)
class RunFigures:
    seconds: float
    run_seconds: float
    peak_rss_mb: float
    audit_passed: bool
    batches: int
    commits: int | None
    broker_commands: int | None


@dataclass
class BenchReport:
    records: int
    keys: int
    workers: int
    threads: int
    raw_records_per_s_one_process: float
    raw_records_per_s: float
    seed_seconds: float
    results: list[PipelineResult] = field(default_factory=list)
    # The keyring lock's turn per batch and PostgreSQL's store rate (devtools.keyring_turns).
    keyring_turns: list[KeyringTurns] = field(default_factory=list)
    store_rates: list[StoreRate] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def seed_fresh(*, records: int, keys: int) -> float:
    """Reset and seed as `manage.py seed --reset` does, in one transaction; return the
    seconds it took. (The command asked first: signing.management.cli.confirm_reset.)"""
    started = time.perf_counter()
    seed_database(
        records=records, keys=keys, kek=sealing.kek_from_environment(), reset=True, payload_seed=7
    )
    return time.perf_counter() - started


def _sign_share(ders: list[bytes], messages: list[bytes]) -> float:
    """Sign every message, keys taken in turn; the rate of the loop alone, per second."""
    keys = [crypto.private_key_from_der(der) for der in ders]
    sign = crypto.sign
    started = time.perf_counter()
    for index, message in enumerate(messages):
        sign(keys[index % len(keys)], message)
    return len(messages) / (time.perf_counter() - started)


def raw_signing_rate(*, processes: int) -> float:
    """Records signed per second in memory: the ceiling the pipeline is compared with.

    Each process times its own loop over signing inputs built beforehand (no start-up, no
    pickling, no encoding inside the clock); the processes' rates add up."""
    kek = sealing.kek_from_environment()
    ders = [  # a retired key has no private key left to open
        sealing.unseal(kek, key.kid, bytes(key.encrypted_private_key))
        for key in live_keys().order_by("id")
    ]
    records = Record.objects.order_by("id").values_list("id", "payload")[:RAW_SAMPLE]
    messages = [crypto.signing_input(record_id, payload) for record_id, payload in records]
    if processes == 1:
        return _sign_share(ders, messages)
    shares = [messages[i::processes] for i in range(processes)]
    with ProcessPoolExecutor(max_workers=processes) as pool:
        return sum(pool.map(_sign_share, [ders] * processes, shares))


def pipeline_run(
    *,
    batch_size: int,
    workers: int,
    threads: int,
    log_file: Path,
    on_progress: Callable[[int, int], None] | None = None,
) -> RunFigures:
    """One full run as a user makes it: `manage.py sign --batch-size N`, timed from the
    outside, with real workers already running; then audited.

    Commits and broker commands are counted between just before the command starts and
    just after the workers stop (a process flushes its statistics when it exits, so none
    are missed); the run's audit (an actor) is among them.
    """
    check_ready_to_sign()
    pool = None
    if not settings.SIGNING_EMBEDDED:  # embedded mode: `sign` runs its own worker threads
        pool = workers_for_this_mode(processes=workers, threads=threads, log_file=log_file)
        pool.start()
    peak_mb = 0.0
    try:
        if pool is not None:
            pool.wait_ready(timeout=120)
        last_run = SigningRun.objects.order_by("-id").values_list("id", flat=True).first() or 0
        sign_log = log_file.with_name("bench-sign.log")
        commits, commands = _commits(), _broker_commands()
        with sign_log.open("a") as log:
            started = time.perf_counter()
            command = subprocess.Popen(
                [sys.executable, str(MANAGE), "sign", "--batch-size", str(batch_size)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            # Waiting on the process, not sleeping: its exit ends the clock at once. Between
            # waits, a look at the progress (it reads the run's batches: load the workers
            # feel, so not more often).
            while not _exited(command, within=PROGRESS_POLL_SECONDS):
                if pool is None:  # the workers are the command's threads
                    peak_mb = max(peak_mb, _peak_rss_mb(command.pid))
                _report_progress(on_progress, after_run=last_run)
                if time.perf_counter() - started > RUN_DEADLINE_SECONDS:
                    command.kill()
                    raise TimeoutError(f"sign did not finish in {RUN_DEADLINE_SECONDS:.0f} s")
            seconds = time.perf_counter() - started
        if pool is not None:
            peak_mb = max((_peak_rss_mb(pid) for pid in pool.worker_pids()), default=0.0)
    finally:
        if pool is not None:
            pool.stop()
    commits = _difference(_commits(), commits)
    commands = _difference(_broker_commands(), commands)
    run = SigningRun.objects.filter(pk__gt=last_run).order_by("-id").first()
    if run is None:
        raise RuntimeError(f"sign exited {command.returncode} and started no run ({sign_log})")
    passed = audit(run_id=run.pk, processes=min(os.cpu_count() or 1, 4)).passed
    return RunFigures(
        seconds=seconds,
        run_seconds=(run.finished_at - run.started_at).total_seconds() if run.finished_at else 0,
        peak_rss_mb=peak_mb,
        audit_passed=passed and run.status == "completed" and command.returncode == 0,
        batches=run.batch_count,
        commits=commits,
        broker_commands=commands,
    )


def _exited(command: subprocess.Popen, *, within: float) -> bool:
    try:
        command.wait(timeout=within)
    except subprocess.TimeoutExpired:
        return False
    return True


def _report_progress(on_progress: Callable[[int, int], None] | None, *, after_run: int) -> None:
    run = SigningRun.objects.filter(pk__gt=after_run).order_by("-id").first()
    if on_progress is not None and run is not None:
        on_progress(_signed(run), run.record_count)


def _commits() -> int | None:
    """Transactions committed in this database so far, by every session; None on SQLite."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def _broker_commands() -> int | None:
    """Commands the Redis server has run so far (every client's); None for another broker."""
    client = getattr(dramatiq.get_broker(), "client", None)
    if client is None:
        return None
    stats = client.info("commandstats")
    return sum(int(entry["calls"]) for entry in stats.values())


def _difference(after: int | None, before: int | None) -> int | None:
    return None if after is None or before is None else after - before


def _signed(run: SigningRun) -> int:
    from signing.runs.selectors import progress_of

    return progress_of(run).signed_records


def _peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set (VmHWM), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def log_file() -> Path:
    path = Path(settings.BASE_DIR) / ".demo" / "bench-workers.log"
    path.parent.mkdir(exist_ok=True)
    return path
