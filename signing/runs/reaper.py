"""The reaper: a slow safety tick inside every worker process, behind the event-driven flow.

Events move a run forward; this tick only repairs what a crash, a lost message or a
restarted server left behind (see signing.runs.recovery.recover). Every worker process runs the
tick, and a lock of the backend's (PostgreSQL: an advisory lock; embedded mode: a thread lock)
lets one at a time do the work, so no extra process has to be started and any surviving worker
heals the others' mess.
"""

from __future__ import annotations

import threading

from dramatiq import Broker, Middleware, Worker

from kernel.events import EventLogger

log = EventLogger(__name__)


def reap_once() -> bool:
    """Run one recovery pass unless another process is running one; return whether it ran.

    The expiry is one transaction under a transaction-scoped advisory lock, so the lock can
    never outlive it: a worker paused in the middle (SIGSTOP) is cut off by PostgreSQL's
    idle_in_transaction_session_timeout, and its lock goes with it. The process that got
    the lock then resumes the runs, outside the transaction. The lock only saves work:
    every step is safe to run from several processes at once.
    """
    # Imported here: this module is loaded with the broker, before Django's apps are ready.
    from django.db import close_old_connections

    from signing.backends import backend

    close_old_connections()
    with backend().reaper_turn() as mine:
        return mine and _reap()


def _reap() -> bool:
    from django.db import connection, transaction

    from signing.backends import backend
    from signing.runs.recovery import reclaim_expired_leases, resume_runs

    try:
        with transaction.atomic():
            if not backend().try_reaper_lock():
                return False
            expired = reclaim_expired_leases()
        # After the commit (and the lock's release): resuming waits on the broker, for
        # seconds when it does not answer, and is safe in several processes at once.
        resume_runs()
    except Exception:
        # The next tick tries again; a broken connection is dropped.
        log.warning("reaper.tick_failed", exc_info=True)
        connection.close()
        return False
    if expired:
        log.info("reaper.ticked", expired=expired)
    return True


class ReaperMiddleware(Middleware):
    """Runs reap_once() every SIGNING_REAPER_INTERVAL seconds in each worker process."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._tick, name="signing-reaper", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _tick(self) -> None:
        from django.conf import settings
        from django.db import connection

        try:
            while not self._stop.wait(settings.SIGNING_REAPER_INTERVAL):
                reap_once()
        finally:
            connection.close()
