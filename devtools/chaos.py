"""Chaos trials: real worker processes, real faults, then the audit.

Each trial seeds a private PostgreSQL (devtools.sandbox), starts two worker pools of one
process each (as two containers would run), starts a run, injects its fault when the run
has reached a given point, waits for the run to finish by itself, and audits it. Nothing
here helps the run recover: the workers' reaper and the pipeline's fencing must.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dramatiq
import psycopg
from django.conf import settings
from dramatiq.brokers.redis import RedisBroker

from devtools.sandbox import Sandbox, SandboxError, wait_for
from keyring.sealing import generate_kek
from signing.models import SigningRun
from signing.ops.workers import WorkerPool

# Short leases so a trial heals in seconds: a lease lives 3 s, the reaper looks every 1 s.
TRIAL_ENV = {
    "SIGNING_LEASE_TTL": "3",
    "SIGNING_REAPER_INTERVAL": "1",
    "SIGNING_LOG_LEVEL": "INFO",
    # A lost audit_run is sent again after 5 s instead of 10 minutes.
    "SIGNING_AUDIT_RESEND_SECONDS": "5",
}
# How long the broker outages last in `manage.py chaos` (the tests pass shorter ones).
BROKER_PAUSE_SECONDS = 60.0
BROKER_DOWN_SECONDS = 300.0
RUN_DEADLINE_SECONDS = 120.0


@dataclass
class TrialResult:
    name: str
    records: int
    records_signed: int = 0
    double_signatures: int = 0
    overlapping_leases: int = 0
    keys_left_locked: int = 0
    recovery_seconds: float | None = None
    fenced_writes: int = 0
    seconds: float = 0.0
    run_status: str = ""
    audit_passed: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            self.audit_passed
            and self.run_status == "completed"
            and self.records_signed == self.records
            and self.double_signatures == 0
            and self.overlapping_leases == 0
            and self.keys_left_locked == 0
        )


class Trial:
    """One trial's world: the sandbox, the worker pools, and what the trial observed."""

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        name: str,
        records: int,
        batch_size: int,
        broker_url: str | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.name = name
        self.records = records
        self.batch_size = batch_size
        self.env = {**os.environ, **sandbox.env, **TRIAL_ENV, "SIGNING_KEK": sandbox_kek(sandbox)}
        if broker_url is not None:  # the sandbox's RabbitMQ instead of its Redis
            self.env["BROKER_URL"] = broker_url
        self.pools: list[WorkerPool | None] = [None, None]
        self.result = TrialResult(name=name, records=records)
        stamp = time.strftime("%H%M%S")
        self.logs = [sandbox.root / f"{name}-{stamp}-pool{i}-{{n}}.log" for i in range(2)]
        self._starts = [0, 0]
        self._db: psycopg.Connection | None = None

    # --- processes -------------------------------------------------------------------
    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start_pool(self, index: int) -> None:
        """Start pool `index` and wait until its worker consumes (so faults land mid-run)."""
        self._starts[index] += 1
        log = Path(str(self.logs[index]).format(n=self._starts[index]))
        pool = WorkerPool(processes=1, threads=2, env=self.env, log_file=log).start()
        self.pools[index] = pool
        try:
            pool.wait_ready(timeout=60)
        except (RuntimeError, TimeoutError) as error:
            raise SandboxError(str(error)) from None

    def stop_pools(self) -> None:
        for pool in self.pools:
            if pool is not None:
                pool.stop(timeout=10)

    def worker_pids(self, index: int) -> list[int]:
        """The worker processes the pool's dramatiq master forked (not the master)."""
        pool = self.pools[index]
        assert pool is not None
        return wait_for(pool.worker_pids, what=f"pool {index}'s worker process")

    def pool_log_text(self, index: int) -> str:
        return "".join(
            Path(str(self.logs[index]).format(n=n)).read_text(errors="replace")
            for n in range(1, self._starts[index] + 1)
            if Path(str(self.logs[index]).format(n=n)).exists()
        )

    # --- the database ----------------------------------------------------------------
    def query(self, sql: str, params: tuple = ()) -> tuple:
        """One row from the sandbox database, reconnecting across a PostgreSQL restart."""
        for _ in range(2):
            try:
                if self._db is None or self._db.closed:
                    self._db = self.sandbox.postgres.connect()
                return self._db.execute(sql, params).fetchone()
            except psycopg.OperationalError:
                self._db = None
        raise SandboxError("the sandbox database does not answer")

    def rows(self, sql: str) -> list[tuple]:
        self.query("SELECT 1")  # connects, or reconnects after a restart
        assert self._db is not None
        return self._db.execute(sql).fetchall()

    def signed(self) -> int:
        return self.query("SELECT count(*) FROM records_signature")[0]

    def run_status(self) -> str:
        row = self.query("SELECT status FROM signing_signingrun ORDER BY id DESC LIMIT 1")
        return row[0] if row else ""

    def finished(self) -> bool:
        return self.run_status() in SigningRun.FINISHED_STATUSES

    def audited(self) -> bool:
        """Whether the last run's audit, by a worker, is recorded."""
        return bool(
            self.query(
                "SELECT count(*) FROM signing_runaudit a JOIN signing_signingrun r"
                " ON r.id = a.run_id WHERE r.id = (SELECT max(id) FROM signing_signingrun)"
            )[0]
        )

    # --- the flow --------------------------------------------------------------------
    def seed(self, keys: int = 50) -> None:
        """Start from nothing: no run left active, no message left queued, fresh records."""
        self.manage("cancel")  # nothing to cancel is fine
        broker = RedisBroker(url=self.sandbox.redis.url)
        try:
            broker.client.flushall()
        finally:
            broker.close()
        seeded = self.manage("seed", "--reset", "--records", str(self.records), "--keys", str(keys))
        if seeded.returncode != 0:
            raise SandboxError(f"seed failed: {seeded.stderr.strip()}")

    def start_run(self) -> None:
        started = self.manage("sign", "--batch-size", str(self.batch_size), "--no-wait")
        if started.returncode != 0:
            raise SandboxError(f"sign failed: {started.stderr.strip()}")

    def at_fraction(self, fraction: float) -> bool:
        """Wait until the run has signed this share of its records; False if it finished."""
        target = int(self.records * fraction)
        wait_for(
            lambda: self.signed() >= target or self.finished(),
            what=f"{fraction:.0%} signed",
            timeout=RUN_DEADLINE_SECONDS,
            every=0.01,
        )
        if self.signed() < target:
            self.result.notes.append(f"the run finished before {fraction:.0%}")
            return False
        return True

    def fault(self, inject: Callable[[], None]) -> None:
        """Inject a fault and time its recovery: until every lease open when it struck is
        closed (completed, or expired and its batch given back) and signing goes on."""
        open_then = [
            row[0] for row in self.rows("SELECT id FROM keyring_keylease WHERE released_at IS NULL")
        ]
        before = self.signed()
        started = time.monotonic()
        inject()
        wait_for(
            lambda: (
                self.finished()
                or (
                    self.signed() > before
                    and not self.query(
                        "SELECT count(*) FROM keyring_keylease"
                        " WHERE id = ANY(%s) AND released_at IS NULL",
                        (open_then,),
                    )[0]
                )
            ),
            what="recovery from the fault",
            timeout=RUN_DEADLINE_SECONDS,
            every=0.02,
        )
        recovery = time.monotonic() - started
        self.result.recovery_seconds = max(self.result.recovery_seconds or 0.0, recovery)

    def outage(self, begin: Callable[[], None], end: Callable[[], None], *, seconds: float) -> None:
        """A fault that lasts: begin it, keep it for `seconds` (the outage is the trial's
        point, not a wait for something), end it; recovery is timed from its end."""
        begin()
        time.sleep(seconds)
        self.fault(end)

    def wait_for_the_run(self) -> None:
        wait_for(self.finished, what="the run to finish", timeout=RUN_DEADLINE_SECONDS, every=0.05)

    def conclude(self) -> TrialResult:
        result = self.result
        result.run_status = self.run_status()
        result.records_signed = self.signed()
        result.double_signatures = self.query(
            "SELECT count(*) - count(DISTINCT record_id) FROM records_signature"
        )[0]
        result.keys_left_locked = self.query(
            "SELECT count(*) FROM keyring_keylease WHERE released_at IS NULL"
        )[0]
        audited = self.manage("audit", "--json", timeout=300)
        try:
            report = json.loads(audited.stdout)
        except json.JSONDecodeError:
            result.notes.append(f"audit output unreadable: {audited.stderr.strip()[-300:]}")
            return result
        checks = {check["name"]: check for check in report["checks"]}
        result.overlapping_leases = checks["no_overlapping_leases"]["breach_count"]
        result.audit_passed = audited.returncode == 0 and report["passed"]
        for check in report["checks"]:
            result.notes.extend(check["breaches"][:3])
        if self._db is not None:
            self._db.close()
        return result


def sandbox_kek(sandbox: Sandbox) -> str:
    """One KEK per sandbox, kept beside its database."""
    path = sandbox.root / "kek"
    if not path.exists():
        path.write_text(generate_kek())
        path.chmod(0o600)
    return path.read_text()


def _kill_pool_worker(trial: Trial, index: int) -> None:
    """SIGKILL the pool's worker process; its master then exits and, like a container under
    `restart: unless-stopped`, the pool is started again."""
    pool = trial.pools[index]
    assert pool is not None
    os.kill(trial.worker_pids(index)[0], signal.SIGKILL)
    try:
        pool.process.wait(timeout=10)  # the master notices and shuts down
    except subprocess.TimeoutExpired:
        trial.result.notes.append(f"pool {index}'s master outlived its worker; killed it")
    pool.stop()
    trial.start_pool(index)


# --- the trials --------------------------------------------------------------------------
def trial_kill_one_worker(sandbox: Sandbox) -> TrialResult:
    """kill -9 one worker process at five moments of one run."""
    trial = Trial(sandbox, name="kill -9 one worker, 5 times", records=20_000, batch_size=100)
    trial.seed()
    trial.start_pool(0)
    trial.start_pool(1)
    try:
        trial.start_run()
        for number, fraction in enumerate((0.1, 0.25, 0.4, 0.6, 0.8)):
            if not trial.at_fraction(fraction):
                break
            trial.fault(lambda number=number: _kill_pool_worker(trial, number % 2))
        trial.wait_for_the_run()
    finally:
        trial.stop_pools()
    return trial.conclude()


def _trial_with_one_fault(
    sandbox: Sandbox, *, name: str, inject: Callable[[Trial], None], at: float = 0.4
) -> TrialResult:
    """Two pools sign 20,000 records in batches of 100; the fault strikes at `at`."""
    trial = Trial(sandbox, name=name, records=20_000, batch_size=100)
    trial.seed()
    trial.start_pool(0)
    trial.start_pool(1)
    try:
        trial.start_run()
        if trial.at_fraction(at):
            trial.fault(lambda: inject(trial))
        trial.wait_for_the_run()
    finally:
        trial.stop_pools()
    return trial.conclude()


def _kill_every_pool(trial: Trial) -> None:
    """SIGKILL every pool's whole process group (masters and workers), then start new ones."""
    for index, pool in enumerate(trial.pools):
        assert pool is not None
        os.killpg(pool.pid, signal.SIGKILL)
        pool.stop()
        trial.start_pool(index)


def trial_kill_every_worker(sandbox: Sandbox) -> TrialResult:
    """kill -9 every worker process and master at once, then start new ones."""
    return _trial_with_one_fault(sandbox, name="kill -9 every worker", inject=_kill_every_pool)


def _terminate_every_pool(trial: Trial) -> None:
    """SIGTERM every pool, as an orchestrator stopping the workers would, then start new ones.

    Dramatiq stops fetching, lets each worker thread finish the message it holds (up to
    --worker-shutdown-timeout) and puts the messages it fetched but did not start back in
    the queue; whatever a stopped worker had not stored stays unwritten, under a lease that
    is released or expires.
    """
    for index, pool in enumerate(trial.pools):
        assert pool is not None
        if not pool.stop():
            trial.result.notes.append(f"pool {index} ignored SIGTERM and was killed")
        trial.start_pool(index)


def trial_sigterm_every_worker(sandbox: Sandbox) -> TrialResult:
    """SIGTERM every worker mid-run (a deploy or a scale-down), then start new ones."""
    return _trial_with_one_fault(sandbox, name="SIGTERM every worker", inject=_terminate_every_pool)


def trial_restart_redis(sandbox: Sandbox) -> TrialResult:
    """Redis killed and started empty mid-run: every queued message is lost."""
    return _trial_with_one_fault(
        sandbox, name="Redis restarted empty", inject=lambda _: sandbox.redis.restart_empty()
    )


def _trial_with_an_outage(
    sandbox: Sandbox,
    *,
    name: str,
    begin: Callable[[], None],
    end: Callable[[], None],
    seconds: float,
    broker_url: str | None = None,
) -> TrialResult:
    """Two pools sign 20,000 records in batches of 100; at 40% the outage begins, lasts
    `seconds`, and ends (however the trial stops, it is ended)."""
    trial = Trial(sandbox, name=name, records=20_000, batch_size=100, broker_url=broker_url)
    trial.seed()
    trial.start_pool(0)
    trial.start_pool(1)
    ended = False

    def end_once() -> None:
        nonlocal ended
        end()
        ended = True

    try:
        trial.start_run()
        if trial.at_fraction(0.4):
            trial.outage(begin, end_once, seconds=seconds)
        trial.wait_for_the_run()
    finally:
        if not ended:
            end_once()
        trial.stop_pools()
    return trial.conclude()


def trial_pause_redis(sandbox: Sandbox, *, seconds: float = BROKER_PAUSE_SECONDS) -> TrialResult:
    """Redis frozen (SIGSTOP) mid-run for many lease TTLs, then thawed with its queue intact:
    every lease open then expires unused, and the stale messages it kept are refused."""
    return _trial_with_an_outage(
        sandbox,
        name=f"Redis paused {seconds:.0f} s",
        begin=sandbox.redis.pause,
        end=sandbox.redis.resume,
        seconds=seconds,
    )


def trial_redis_down(sandbox: Sandbox, *, seconds: float = BROKER_DOWN_SECONDS) -> TrialResult:
    """Redis killed mid-run and started again, empty, only after many lease TTLs."""
    return _trial_with_an_outage(
        sandbox,
        name=f"Redis down {seconds:.0f} s",
        begin=sandbox.redis.kill,
        end=sandbox.redis.start,
        seconds=seconds,
    )


def _trial_on_rabbitmq(
    sandbox: Sandbox,
    *,
    name: str,
    begin: Callable[[], None],
    end: Callable[[], None],
    seconds: float,
) -> TrialResult:
    """An outage trial with the workers on the sandbox's own RabbitMQ, started empty for it
    and stopped after it."""
    sandbox.rabbitmq.start(empty=True)
    try:
        return _trial_with_an_outage(
            sandbox,
            name=name,
            begin=begin,
            end=end,
            seconds=seconds,
            broker_url=sandbox.rabbitmq.url,
        )
    finally:
        sandbox.rabbitmq.kill()


def trial_pause_rabbitmq(sandbox: Sandbox, *, seconds: float = BROKER_PAUSE_SECONDS) -> TrialResult:
    """RabbitMQ frozen (SIGSTOP of its Erlang VM) mid-run for many lease TTLs, then thawed."""
    rabbitmq = sandbox.rabbitmq
    return _trial_on_rabbitmq(
        sandbox,
        name=f"RabbitMQ paused {seconds:.0f} s",
        begin=rabbitmq.pause,
        end=rabbitmq.resume,
        seconds=seconds,
    )


def trial_restart_rabbitmq(sandbox: Sandbox) -> TrialResult:
    """RabbitMQ killed mid-run and started again without its data: every message lost."""
    rabbitmq = sandbox.rabbitmq
    return _trial_on_rabbitmq(
        sandbox,
        name="RabbitMQ restarted empty",
        begin=rabbitmq.kill,
        end=lambda: rabbitmq.start(empty=True),
        seconds=0,
    )


def trial_rabbitmq_down(sandbox: Sandbox, *, seconds: float = BROKER_DOWN_SECONDS) -> TrialResult:
    """RabbitMQ killed mid-run and started again, with the queue it kept on disk, only after
    many lease TTLs: the messages it kept name leases long expired."""
    rabbitmq = sandbox.rabbitmq
    return _trial_on_rabbitmq(
        sandbox,
        name=f"RabbitMQ down {seconds:.0f} s",
        begin=rabbitmq.kill,
        end=rabbitmq.start,
        seconds=seconds,
    )


def trial_audit_lost(sandbox: Sandbox) -> TrialResult:
    """The run's audit_run lost: every worker frozen the instant the run finishes (so none
    can have audited it yet), Redis restarted empty, the workers killed and new ones
    started. The reaper must send audit_run again, and the audit be recorded."""
    trial = Trial(sandbox, name="audit_run lost", records=20_000, batch_size=100)
    trial.seed()
    trial.start_pool(0)
    trial.start_pool(1)
    try:
        trial.start_run()
        wait_for(
            trial.finished, what="the run to finish", timeout=RUN_DEADLINE_SECONDS, every=0.005
        )
        started = time.monotonic()
        for pool in trial.pools:
            assert pool is not None
            os.killpg(pool.pid, signal.SIGSTOP)
        if trial.audited():
            trial.result.notes.append("the audit was recorded before the workers froze")
        sandbox.redis.restart_empty()
        for index, pool in enumerate(trial.pools):
            assert pool is not None
            os.killpg(pool.pid, signal.SIGKILL)
            pool.stop()
            trial.start_pool(index)
        wait_for(trial.audited, what="the audit to be recorded", timeout=RUN_DEADLINE_SECONDS)
        trial.result.recovery_seconds = time.monotonic() - started
    finally:
        trial.stop_pools()
    return trial.conclude()


def trial_restart_postgres(sandbox: Sandbox) -> TrialResult:
    """PostgreSQL stopped as a crash would (immediate) and started again mid-run."""
    return _trial_with_one_fault(
        sandbox, name="PostgreSQL restarted", inject=lambda _: sandbox.postgres.restart()
    )


def trial_pause_worker(sandbox: Sandbox) -> TrialResult:
    """SIGSTOP a worker holding leases until they expire and another re-signs; SIGCONT it.

    Pool 0 runs alone until the pause, so it surely holds leased batches (its two threads
    and its prefetched messages) when it stops; pool 1 starts after, finishes the run
    through the reaper, and then the paused worker wakes up with only stale leases.
    """
    # Big batches: the worker spends most of its time signing, so the pause catches it
    # holding unsigned batches (in its threads and its prefetched messages).
    trial = Trial(sandbox, name="SIGSTOP a worker past its lease", records=20_000, batch_size=2_000)
    trial.seed()
    trial.start_pool(0)
    try:
        trial.start_run()
        if not trial.at_fraction(0.2):
            raise SandboxError("the run ended before the worker could be paused")
        paused = trial.worker_pids(0)[0]

        def pause_and_start_another() -> None:
            os.kill(paused, signal.SIGSTOP)
            trial.start_pool(1)

        trial.fault(pause_and_start_another)
        trial.wait_for_the_run()
        # Batches leased more than once: their first lease expired unsigned, so its
        # SigningTriggered is still with the paused worker (or queued behind it).
        stale = trial.query("SELECT count(*) FROM signing_batch WHERE attempts > 1")[0]
        if not stale:
            raise SandboxError("the pause caught no unsigned batch: nothing to fence")
        os.kill(paused, signal.SIGCONT)
        # Each is refused by its heartbeat or its store (in either pool: a failed attempt is
        # retried through Redis, and any worker may take the retry).
        wait_for(
            lambda: fenced(trial) >= stale,
            what=f"the {stale} stale batches to be refused",
            timeout=60,
        )
    finally:
        with contextlib.suppress(ProcessLookupError, UnboundLocalError):
            os.kill(paused, signal.SIGCONT)
        trial.stop_pools()
    trial.result.fenced_writes = fenced(trial)
    return trial.conclude()


def fenced(trial: Trial) -> int:
    """How many stale attempts the workers refused to store (their `batch.lease_lost` lines)."""
    return sum(trial.pool_log_text(index).count("batch.lease_lost") for index in (0, 1))


def trial_late_delivery(sandbox: Sandbox) -> TrialResult:
    """A SigningTriggered delivered after its batch was re-leased and signed by another."""
    trial = Trial(sandbox, name="SigningTriggered delivered late", records=5_000, batch_size=100)
    trial.seed()
    broker = RedisBroker(url=sandbox.redis.url)
    broker.declare_queue("signing")
    try:
        trial.start_run()  # no worker yet: the first messages wait in Redis
        late = _take_one_message(broker, "signing_triggered")
        lease_id = late.kwargs["lease_id"]
        trial.start_pool(0)
        trial.start_pool(1)
        trial.wait_for_the_run()
        signed_before = trial.signed()

        def deliver_late() -> None:
            broker.enqueue(late)
            wait_for(
                lambda: re.search(
                    rf"batch\.lease_lost (?:run_id=\d+ )?batch_id={late.kwargs['batch_id']}"
                    rf" lease_id={lease_id}\b",
                    trial.pool_log_text(0) + trial.pool_log_text(1),
                ),
                what="the late message to be handled",
                timeout=30,
            )

        started = time.monotonic()
        deliver_late()
        trial.result.recovery_seconds = time.monotonic() - started
        trial.result.fenced_writes = 1
        if trial.signed() != signed_before:
            trial.result.notes.append("the late message changed the signatures")
    finally:
        trial.stop_pools()
        broker.close()
    return trial.conclude()


def _take_one_message(broker: RedisBroker, actor_name: str) -> dramatiq.Message:
    """Consume (and ack) one queued message of this actor, as if a worker took it and died."""
    consumer = broker.consume("signing", prefetch=1, timeout=200)
    try:
        while True:
            proxy = wait_for(lambda: next(consumer), what=f"a queued {actor_name}", timeout=30)
            consumer.ack(proxy)
            if proxy.actor_name == actor_name:
                return dramatiq.Message(**proxy.asdict())
    finally:
        consumer.close()


TRIALS: dict[str, Callable[[Sandbox], TrialResult]] = {
    "kill-one-worker": trial_kill_one_worker,
    "kill-every-worker": trial_kill_every_worker,
    "sigterm-every-worker": trial_sigterm_every_worker,
    "restart-redis": trial_restart_redis,
    "pause-redis": trial_pause_redis,
    "redis-down": trial_redis_down,
    "pause-rabbitmq": trial_pause_rabbitmq,
    "restart-rabbitmq": trial_restart_rabbitmq,
    "rabbitmq-down": trial_rabbitmq_down,
    "audit-lost": trial_audit_lost,
    "restart-postgres": trial_restart_postgres,
    "pause-worker": trial_pause_worker,
    "late-delivery": trial_late_delivery,
}


def run_trial(name: str, sandbox: Sandbox, **options: float) -> TrialResult:
    """Run one trial (options: a broker outage's `seconds`); a trial that cannot finish is
    a failed result, not a crash."""
    started = time.monotonic()
    started_at = time.time()
    try:
        result = TRIALS[name](sandbox, **options)
    except (SandboxError, subprocess.TimeoutExpired) as error:
        result = TrialResult(name=name, records=0, notes=[f"did not finish: {error}"])
        result.notes.extend(_worker_log_tails(sandbox, since=started_at))
    result.seconds = time.monotonic() - started
    return result


# Routine lines that would drown what explains a failure.
_ROUTINE = ("lease.granted", "lease.released", "batch.stored", "workers.starting")


def _worker_log_tails(sandbox: Sandbox, *, since: float, lines: int = 25) -> list[str]:
    """The last telling lines of each worker log a failed trial wrote (the sandbox goes)."""
    tails = []
    for log in sorted(sandbox.root.glob("*.log")):
        if log.name == "postgres.log" or log.stat().st_mtime < since:
            continue
        telling = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if line.strip() and not any(word in line for word in _ROUTINE)
        ]
        tails.append(f"--- {log.name}\n" + "\n".join(telling[-lines:]))
    return tails


def prepare(sandbox: Sandbox) -> None:
    """Create the schema in a fresh sandbox (once, before its trials)."""
    env = {**os.environ, **sandbox.env, "SIGNING_KEK": sandbox_kek(sandbox)}
    migrated = subprocess.run(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "migrate", "--noinput"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if migrated.returncode != 0:
        raise SandboxError(f"migrate failed: {migrated.stderr.strip()[-500:]}")
