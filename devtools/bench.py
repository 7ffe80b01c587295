"""The benchmark: raw signing speed against the whole pipeline, on this machine.

Raw throughput signs the same records with the same keys in memory (no database, no
broker), in one process and in `workers` processes; the pipeline figures are full runs with
real worker processes, from start to the run's completion, audited. The ratio between the
two is what the tuning is judged by (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings

from kernel import crypto
from keyring import sealing
from keyring.models import SigningKey
from records.models import Record
from signing.audit.rules import audit
from signing.models import SigningRun
from signing.ops.workers import workers_for_this_mode
from signing.runs.dispatch import check_ready_to_sign, start_run
from signing.runs.seeding import seed_database

RUN_DEADLINE_SECONDS = 1800.0
PROGRESS_POLL_SECONDS = 0.5
# Raw signing is timed over at most this many of the records: a rate per record needs no
# more, and a million payloads held in memory (and copied to each process) would be GBs.
RAW_SAMPLE = 100_000


@dataclass
class PipelineResult:
    batch_size: int
    seconds: float
    records_per_s: float
    ratio: float
    batches_per_s: float
    peak_rss_mb: float
    audit_passed: bool


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

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "results": [asdict(r) for r in self.results]}


def seed_fresh(*, records: int, keys: int) -> float:
    """Reset and seed as `manage.py seed --reset` does, in one transaction; return the
    seconds it took. (The command asked first: signing.management.cli.confirm_reset.)"""
    started = time.perf_counter()
    seed_database(
        records=records, keys=keys, kek=sealing.kek_from_environment(), reset=True, payload_seed=7
    )
    return time.perf_counter() - started


def _sign_share(ders: list[bytes], records: list[tuple[int, str]]) -> int:
    keys = [crypto.private_key_from_der(der) for der in ders]
    for index, (record_id, payload) in enumerate(records):
        crypto.sign(keys[index % len(keys)], crypto.signing_input(record_id, payload))
    return len(records)


def raw_signing_rate(*, processes: int) -> float:
    """Records signed per second in memory: the ceiling the pipeline is compared with."""
    kek = sealing.kek_from_environment()
    ders = [
        sealing.unseal(kek, key.kid, bytes(key.encrypted_private_key))
        for key in SigningKey.objects.order_by("id")
    ]
    records = list(Record.objects.order_by("id").values_list("id", "payload")[:RAW_SAMPLE])
    shares = [records[i::processes] for i in range(processes)]
    started = time.perf_counter()
    if processes == 1:
        signed = _sign_share(ders, records)
    else:
        with ProcessPoolExecutor(max_workers=processes) as pool:
            signed = sum(pool.map(_sign_share, [ders] * processes, shares))
    return signed / (time.perf_counter() - started)


def pipeline_run(
    *,
    batch_size: int,
    workers: int,
    threads: int,
    log_file: Path,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[float, float, bool, int]:
    """One full run with real workers: (seconds, peak worker RSS in MB, audit passed, batches).

    In embedded mode the workers are this process's threads, and its RSS is theirs.
    """
    check_ready_to_sign()
    pool = workers_for_this_mode(processes=workers, threads=threads, log_file=log_file).start()
    try:
        pool.wait_ready(timeout=120)
        started = time.perf_counter()
        run = start_run(batch_size=batch_size)
        while True:
            run.refresh_from_db()
            if on_progress is not None:
                on_progress(_signed(run), run.record_count)
            if run.status in SigningRun.FINISHED_STATUSES:
                break
            if time.perf_counter() - started > RUN_DEADLINE_SECONDS:
                raise TimeoutError(f"run {run.pk} did not finish in {RUN_DEADLINE_SECONDS:.0f} s")
            # A measurement loop (the pipeline itself never polls), and slow on purpose: the
            # time comes from the run's own timestamps, while each look at its progress
            # reads every batch of the run, load the workers would feel.
            time.sleep(PROGRESS_POLL_SECONDS)
        seconds = (run.finished_at - run.started_at).total_seconds()
        peak_mb = max((_peak_rss_mb(pid) for pid in pool.worker_pids()), default=0.0)
    finally:
        pool.stop()
    passed = audit(run_id=run.pk, processes=min(os.cpu_count() or 1, 4)).passed
    return seconds, peak_mb, passed and run.status == "completed", run.batch_count


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
