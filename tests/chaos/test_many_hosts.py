"""Three worker hosts on one machine, and one of them cut off from the network mid-run.

Each host is a network namespace of its own (tests/chaos/hosts.py) running
`manage.py rundramatiq` (one process, two threads) against a private PostgreSQL and RabbitMQ
(devtools.sandbox) that listen on the bridge joining the hosts. Mid-run one host's link goes
down: its processes live on, holding leases and the messages RabbitMQ gave them, and no
server is told. The run must finish without it (those leases expire and the reaper
dispatches their batches again), every record signed once and the audit passing. Then the
link comes back, the cut host does whatever it was in the middle of, and that must change
nothing: the run had finished, so every lease it names is gone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings

from devtools.chaos import RUN_DEADLINE_SECONDS, Trial, prepare
from devtools.sandbox import RABBITMQ_SERVER, PrivateRabbitMQ, Sandbox, wait_for
from tests.chaos.hosts import HostNetwork, HostWorkerPool, NetworkUnavailable
from tests.conftest import ARTIFACTS

pytestmark = pytest.mark.workers

HOSTS = 3
RECORDS = 5_000
KEYS = 50
BATCH_SIZE = 10
# The cut host must be a full member of the run when it is cut: it has stored this many
# batches, and the run is a quarter done (three quarters are left to finish without it).
STORED_BEFORE_CUT = 5
# Once its link is back, the cut host's connections resume at their next TCP retransmission
# (seconds after, the longer the cut the later) and what it held is refused; an attempt
# that failed meanwhile is retried after a backoff of up to 10 s.
LATE_WORK_SECONDS = 90
# What a worker logs of each attempt at a batch: `batch.stored`, `batch.lease_lost`, ...
BATCH_REPORT = re.compile(r" batch\.\w+ (?:run_id=\d+ )?batch_id=\d+ lease_id=(\d+)\b")


@pytest.fixture(scope="module")
def network() -> Iterator[HostNetwork]:
    network = HostNetwork(HOSTS)
    try:
        network.create()
    except NetworkUnavailable as error:
        pytest.skip(f"no network namespaces here: {error}")
    try:
        yield network
    finally:
        network.remove()
        assert not network.leftovers(), "namespaces or links left behind"


@pytest.fixture(scope="module")
def sandbox(network: HostNetwork) -> Iterator[Sandbox]:
    """PostgreSQL and RabbitMQ on the bridge's address, migrated; RabbitMQ boots (about
    10 s) while PostgreSQL is created and migrated."""
    if not RABBITMQ_SERVER.exists():
        pytest.skip("RabbitMQ not installed")
    with Sandbox(host=network.gateway) as sandbox, ThreadPoolExecutor(1) as background:
        rabbitmq_started = background.submit(sandbox.rabbitmq.start)
        prepare(sandbox)
        rabbitmq_started.result()
        try:
            yield sandbox
        finally:  # the servers' logs, beside the workers' (the sandbox's folder goes)
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copy(sandbox.postgres.log, ARTIFACTS / "many-hosts-postgres.log")
            for log in (sandbox.rabbitmq.root / "log").glob("*@localhost.log"):
                shutil.copy(log, ARTIFACTS / "many-hosts-rabbitmq.log")


def held_by(rabbitmq: PrivateRabbitMQ, address: str) -> int:
    """Messages RabbitMQ gave to consumers at this address and has no acknowledgement for.
    A channel's name starts with its client's address ("10.77.3.2:41234 -> ...")."""
    rows = rabbitmq.ctl("list_channels", "name", "messages_unacknowledged")
    return sum(int(count) for name, count in rows if name.startswith(f"{address}:"))


def log_text(pool: HostWorkerPool) -> str:
    return pool.log_file.read_text(errors="replace")


def reported_leases(pools: list[HostWorkerPool]) -> set[int]:
    """The leases some host has reported an attempt under: stored, refused (lease lost),
    or failed for good."""
    return {int(lease) for pool in pools for lease in BATCH_REPORT.findall(log_text(pool))}


def start_run(trial: Trial) -> subprocess.Popen[str]:
    """`manage.py sign --no-wait` from the machine's own side, as an operator would, left
    running: the workers sign a good part of the run before the command has exited."""
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(settings.BASE_DIR) / "manage.py"),
            "sign",
            "--no-wait",
            "--batch-size",
            str(BATCH_SIZE),
        ],
        env=trial.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def worker_pools(network: HostNetwork, trial: Trial) -> list[HostWorkerPool]:
    """A pool per host, each logging to test-artifacts/ (kept when the test fails)."""
    ARTIFACTS.mkdir(exist_ok=True)
    pools = []
    for index, host in enumerate(network.hosts):
        log = ARTIFACTS / f"many-hosts-host{index}.log"
        log.unlink(missing_ok=True)  # the counts below read the whole file
        pools.append(HostWorkerPool(host, env=trial.env, log_file=log))
    return pools


def test_a_host_cut_off_mid_run_only_delays_the_run(network, sandbox):
    rabbitmq = sandbox.rabbitmq
    trial = Trial(
        sandbox, name="cut-host", records=RECORDS, batch_size=BATCH_SIZE, broker_url=rabbitmq.url
    )
    trial.seed(keys=KEYS)
    pools = worker_pools(network, trial)
    cut, cut_pool = network.hosts[0], pools[0]
    try:
        for pool in pools:
            pool.start()
        for pool in pools:
            pool.wait_ready(timeout=60)
        starting = start_run(trial)
        wait_for(
            lambda: (
                log_text(cut_pool).count("batch.stored") >= STORED_BEFORE_CUT
                and trial.signed() >= RECORDS // 4
            ),
            what=f"{cut.namespace} to store {STORED_BEFORE_CUT} batches",
            timeout=RUN_DEADLINE_SECONDS,
            every=0.01,
        )
        cut_at = time.time()
        network.cut(cut)
        # RabbitMQ's own count (asked while the others sign on): it cannot acknowledge now.
        held = held_by(rabbitmq, cut.address)
        assert held >= 1, "the cut host held no message: cutting it proves nothing"

        _, errors = starting.communicate(timeout=60)
        assert starting.returncode == 0, errors
        trial.wait_for_the_run()
        assert trial.run_status() == "completed"
        # The reaper, not the cut host, closed the leases the cut stranded.
        (stranded,) = trial.query(
            "SELECT coalesce(array_agg(id), '{}') FROM keyring_keylease"
            " WHERE outcome = 'expired' AND released_at >= to_timestamp(%s)",
            (cut_at,),
        )
        assert stranded, "no lease expired after the cut: the cut host held none"
        signed_without_it = trial.signed()

        restored_at = time.time()
        network.restore(cut)
        # Each stranded lease's message reaches a worker (the cut host, with what it held;
        # anyone, with what it had sent) and is reported: refused, or stored before the cut.
        wait_for(
            lambda: set(stranded) <= reported_leases(pools),
            what=f"a report of each of the stranded leases {sorted(stranded)}",
            timeout=LATE_WORK_SECONDS,
            every=0.1,
        )
    finally:
        network.restore(cut)
        for pool in pools:
            pool.stop(timeout=10)

    # It may report a store only after the link came back (the database wrote it before the
    # cut, and the answer was on its way); from then on, nobody wrote anything.
    assert trial.signed() == signed_without_it
    written_since = trial.query(
        "SELECT (SELECT count(*) FROM records_signature WHERE signed_at >= to_timestamp(%s)),"
        " (SELECT count(*) FROM keyring_keylease WHERE acquired_at >= to_timestamp(%s))",
        (restored_at, restored_at),
    )
    assert written_since == (0, 0), "signatures, leases written after the link came back"
    result = trial.conclude()
    assert result.passed, "\n".join([repr(result)[:500], *result.notes])
    assert result.records_signed == RECORDS
    assert result.double_signatures == 0
    assert result.keys_left_locked == 0
