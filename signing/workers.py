"""Start and stop `manage.py rundramatiq` worker processes (for `demo`, tests and bench).

The workers run in their own process group, so stopping them reaches the dramatiq
master and every worker process it forked, and none outlives its caller.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import IO

from django.conf import settings

SHUTDOWN_TIMEOUT_MS = 5_000


class WorkerPool:
    def __init__(
        self,
        *,
        processes: int = 2,
        threads: int = 4,
        env: dict[str, str] | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.processes = processes
        self.threads = threads
        self.env = {**os.environ, **(env or {})}
        self.log_file = log_file
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerPool:
        command = [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "rundramatiq",
            "--processes",
            str(self.processes),
            "--threads",
            str(self.threads),
            "--worker-shutdown-timeout",
            str(SHUTDOWN_TIMEOUT_MS),
        ]
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

    @property
    def pid(self) -> int:
        assert self.process is not None, "start() first"
        return self.process.pid

    def stop(self, *, timeout: float = 15.0) -> None:
        """SIGTERM the group (workers finish their message), SIGKILL what is left."""
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        _reap_group(self.process.pid)
        if self._log:
            self._log.close()
        self.process = None

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _reap_group(pgid: int) -> None:
    """Kill any forked worker the master left behind when it exited."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
