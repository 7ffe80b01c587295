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


def follow_tick() -> bool:
    """Cut what is due in the following run, if any (signing.runs.follow); whether a run
    is following. A failure is logged and the connection dropped; the next tick tries again.
    """
    from django.db import close_old_connections, connection

    from signing.runs.follow import cut_if_due

    close_old_connections()
    try:
        return cut_if_due(unstick=True).following > 0
    except Exception:
        log.warning("follow.tick_failed", exc_info=True)
        connection.close()
        return False


def follow_tick_seconds() -> float:
    """A quarter of the max wait, from 10 ms to 1 s: a record waits at most that much more."""
    from django.conf import settings

    return min(max(settings.SIGNING_FOLLOW_MAX_WAIT_MS / 4_000, 0.01), 1.0)


# With no follow run running, the tick looks this often for one: a run just started cut
# what was waiting itself, and records arriving call records_arrived.
IDLE_FOLLOW_TICK_SECONDS = 1.0


class FollowTickMiddleware(Middleware):
    """The max wait's timer, in every worker process: a thread that cuts a follow run's
    waiting records once the oldest has waited SIGNING_FOLLOW_MAX_WAIT_MS (or a full batch
    is waiting and nobody said so). A follow run started through the API has no command
    process of its own: the workers keep it moving, as they do every run. Several processes
    ticking at once is safe: cuts of a run take turns, and each decides under its lock."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        from signing.runs import messages

        messages.worker_started()
        self._stop.clear()
        self._thread = threading.Thread(target=self._tick, name="signing-follow", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        from signing.runs import messages

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        messages.worker_stopped()

    def _tick(self) -> None:
        from django.db import connection

        wait = IDLE_FOLLOW_TICK_SECONDS
        try:
            while not self._stop.wait(wait):
                wait = follow_tick_seconds() if follow_tick() else IDLE_FOLLOW_TICK_SECONDS
        finally:
            connection.close()
