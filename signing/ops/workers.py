"""Start and stop workers: `manage.py rundramatiq` processes (for `demo`, tests and
bench), or, in embedded mode, threads of this process.

The worker processes run in their own process group: a stop signals the dramatiq master,
which stops the worker processes it forked, and whatever of the group is left after the
timeout is killed, so none outlives its caller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import dramatiq
from django.conf import settings

import signing.runs.actors  # noqa: F401  declares the actors these workers run
from signing.runs.messages import QUEUE

# The pools started here (demo, bench, the tests, the chaos trials) stop when the run they
# served is over, with little or nothing in flight: 5 s, not rundramatiq's 25 s for a deploy.
SHUTDOWN_TIMEOUT_MS = 5_000
# What Dramatiq logs once a worker process has booted and is consuming.
READY_LINE = "is ready for action"


class Workers:
    """Workers that `demo`, `serve`, `bench` and the tests start, and stop on the way out."""

    def start(self) -> Self:
        raise NotImplementedError

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        raise NotImplementedError

    def worker_pids(self) -> list[int]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def drain(self, *, timeout: float = 60.0) -> None:
        """Wait for the messages sent so far to be handled, where stopping would lose them.

        Worker processes leave them in the broker for the next workers: nothing to wait for.
        """

    def stop(self, *, timeout: float = 15.0) -> bool:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class WorkerPool(Workers):
    def __init__(
        self,
        *,
        processes: int = 2,
        threads: int = 4,
        env: dict[str, str] | None = None,
        log_file: Path | None = None,
        shutdown_timeout_ms: int | None = SHUTDOWN_TIMEOUT_MS,
    ) -> None:
        """`shutdown_timeout_ms` None leaves rundramatiq's own default."""
        self.processes = processes
        self.threads = threads
        self.shutdown_timeout_ms = shutdown_timeout_ms
        self.env = {**os.environ, **(env or {})}
        self.log_file = log_file
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def command(self) -> list[str]:
        """What starts the pool; a subclass may wrap it (the many-hosts test runs it inside
        a network namespace with `ip netns exec`, which keeps the process id)."""
        return [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "rundramatiq",
            "--processes",
            str(self.processes),
            "--threads",
            str(self.threads),
            *(
                ["--worker-shutdown-timeout", str(self.shutdown_timeout_ms)]
                if self.shutdown_timeout_ms is not None
                else []
            ),
        ]

    def start(self) -> WorkerPool:
        command = self.command()
        self._log_offset = (
            self.log_file.stat().st_size if self.log_file and self.log_file.exists() else 0
        )
        self._log = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115
        self.process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=self.env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        """Wait until every worker process has logged that it is ready (needs a log file)."""
        assert self.log_file is not None, "readiness is read from the log file"
        deadline = time.monotonic() + timeout
        while self._ready_count() < self.processes:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"the workers exited while starting (log: {self.log_file})")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"workers not ready after {timeout:.0f} s (log: {self.log_file})"
                )
            time.sleep(0.05)

    def _ready_count(self) -> int:
        """Ready lines written since start; the offset is in bytes, so the count is too (the
        log may hold other output, progress bars among it, whose characters are several
        bytes each)."""
        try:
            logged = self.log_file.read_bytes()
        except FileNotFoundError:
            return 0
        return logged[self._log_offset :].count(READY_LINE.encode())

    def worker_pids(self) -> list[int]:
        """The worker processes the dramatiq master forked (not the master itself)."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except FileNotFoundError:
            return []
        return [int(child) for child in children.split()]

    def describe(self) -> str:
        return f"{self.processes} worker processes (log: {self.log_file})"

    @property
    def pid(self) -> int:
        assert self.process is not None, "start() first"
        return self.process.pid

    def stop(self, *, timeout: float = 15.0) -> bool:
        """SIGTERM the dramatiq master, which forwards it to each worker process (each
        finishes the message it holds); SIGKILL the whole group after `timeout` seconds.

        The master alone: Dramatiq takes a second SIGTERM as "kill now", and a worker
        process that got one from the group signal and one forwarded by the master would
        exit at once, dropping the batch it was signing. Returns True when SIGTERM was
        enough (a graceful stop).
        """
        if self.process is None:
            return True
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
            graceful = True
        except subprocess.TimeoutExpired:
            graceful = False
        _reap_group(self.process.pid)
        self.process.wait(timeout=5.0)
        if self._log:
            self._log.close()
        self.process = None
        return graceful


class EmbeddedWorkers(Workers):
    """Embedded mode's workers: threads of this process, on its in-process broker.

    The broker lives in this process, so only this process's threads can consume what it
    sends: whatever starts a run (`sign`, `serve`) runs these. The same actors, middleware
    (retries, time limits, the reaper) and services as the worker processes.
    """

    _running = 0
    _running_lock = threading.Lock()

    def __init__(self, *, threads: int = 4) -> None:
        self.threads = threads
        self.worker: dramatiq.Worker | None = None

    @classmethod
    def running_here(cls) -> bool:
        """Whether this process already runs embedded workers (`demo` around `sign`)."""
        return cls._running > 0

    def start(self) -> EmbeddedWorkers:
        self.worker = dramatiq.Worker(
            dramatiq.get_broker(), worker_threads=self.threads, worker_timeout=100
        )
        self.worker.start()
        with self._running_lock:
            EmbeddedWorkers._running += 1
        return self

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        """Ready once started: the threads consume as soon as start() returns."""

    def worker_pids(self) -> list[int]:
        return [os.getpid()]

    def describe(self) -> str:
        return f"{self.threads} worker threads in this process (embedded mode)"

    def drain(self, *, timeout: float = 60.0) -> None:
        """Wait until every message sent so far is handled (the run's audit among them):
        they live in this process's memory, and stopping would lose them."""
        dramatiq.get_broker().join(QUEUE, timeout=int(timeout * 1000))

    def stop(self, *, timeout: float = 15.0) -> bool:
        """Let the threads finish their current message, then stop them."""
        if self.worker is None:
            return True
        self.worker.stop(timeout=int(timeout * 1000))
        # Each Worker adds a middleware to the broker that outlives it; the next Worker of
        # this process (bench's next run, the next test) would find two and be warned.
        broker = dramatiq.get_broker()
        broker.middleware[:] = [
            middleware
            for middleware in broker.middleware
            if getattr(middleware, "worker", None) is not self.worker
        ]
        self.worker = None
        with self._running_lock:
            EmbeddedWorkers._running -= 1
        return True


def workers_for_this_mode(*, processes: int, threads: int, log_file: Path) -> Workers:
    """Worker processes on the servers; in embedded mode, threads of this process."""
    if settings.SIGNING_EMBEDDED:
        return EmbeddedWorkers(threads=threads)
    return WorkerPool(processes=processes, threads=threads, log_file=log_file)


def interrupt_on_termination() -> None:
    """Turn SIGTERM (and a SIGINT a background shell told us to ignore) into
    KeyboardInterrupt, so a command holding a WorkerPool stops its workers on the way out:
    they run in a session of their own and would otherwise outlive it."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def _reap_group(pgid: int) -> None:
    """Kill any forked worker the master left behind when it exited."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
