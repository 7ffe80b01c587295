"""The run's messages, named as the seed names them, and how they are sent.

SigningTriggered goes to the `signing_triggered` actor, SigningCompleted to
`signing_completed`, a finished run's audit to `audit_run` (signing.runs.actors). Senders
address an actor by name through the broker, exactly as `Actor.send` does, so dispatch need
not import the actors module, which imports dispatch to do its work.
"""

from __future__ import annotations

import threading

import dramatiq
from dramatiq.brokers.stub import StubBroker

QUEUE = "signing"
SIGNING_TRIGGERED = "signing_triggered"
SIGNING_COMPLETED = "signing_completed"
AUDIT_RUN = "audit_run"


def send(actor_name: str, **fields: object) -> None:
    """Enqueue one message for `actor_name`; what the broker raises, the caller handles."""
    broker = dramatiq.get_broker()
    broker.declare_queue(QUEUE)  # a no-op once declared: the actors declare it where they run
    broker.enqueue(
        dramatiq.Message(
            queue_name=QUEUE, actor_name=actor_name, args=(), kwargs=fields, options={}
        )
    )


# Dramatiq workers running in this process (counted by signing.runs.reaper's middleware).
_workers_here = 0
_workers_lock = threading.Lock()


def worker_started() -> None:
    global _workers_here
    with _workers_lock:
        _workers_here += 1


def worker_stopped() -> None:
    global _workers_here
    with _workers_lock:
        _workers_here -= 1


def reach_workers() -> bool:
    """Whether a message sent from this process reaches a worker: always through a server
    broker (Redis, RabbitMQ); with embedded mode's in-process broker, only while this
    process runs workers (`sign`, `serve`), not from another command (`stop`, `ingest`),
    whose messages nobody would consume until their leases expired."""
    return not isinstance(dramatiq.get_broker(), StubBroker) or _workers_here > 0
