"""The audit: prove rules 1-5 from the tables alone, as an outside auditor would.

Every check is a query for the rows that break a rule, so a pass is an empty answer and a
breach names the rows. Signatures are verified again with each key's public key over the
documented signing input (in a process pool: verification is the slow part).
"""

from __future__ import annotations

import bisect
import heapq
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from django.db import connection

from kernel import crypto, merkle
from signing.audit import roots, sql
from signing.backends import backend

MAX_LISTED = 20
VERIFY_CHUNK = 5_000

Chunk = TypeVar("Chunk")
Result = TypeVar("Result")


@dataclass
class Check:
    name: str
    rule: str
    description: str
    breaches: list[str] = field(default_factory=list)
    breach_count: int = 0
    examined: int | None = None
    # What the check could not judge, and why; not a breach (the first MAX_LISTED of them).
    notes: list[str] = field(default_factory=list)
    note_count: int = 0

    @property
    def passed(self) -> bool:
        return self.breach_count == 0

    def add(self, breach: str) -> None:
        self.breach_count += 1
        if len(self.breaches) < MAX_LISTED:
            self.breaches.append(breach)

    def note(self, note: str) -> None:
        self.note_count += 1
        if len(self.notes) < MAX_LISTED:
            self.notes.append(note)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rule": self.rule,
            "description": self.description,
            "passed": self.passed,
            "examined": self.examined,
            "breach_count": self.breach_count,
            "breaches": self.breaches,
            "note_count": self.note_count,
            "notes": self.notes,
        }


@dataclass
class AuditReport:
    run_id: int | None
    checks: list[Check]
    # Records with no signature that no rule required to be signed yet (a state, not a
    # breach): in the whole database, those no completed run owed (outside its batches and
    # above its plan's mark); in one run's audit, those of its batches when it did not
    # complete (cancelled, failed, running). The rule-1 check notes them too.
    records_not_signed: int = 0

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "passed": self.passed,
            "records_not_signed": self.records_not_signed,
            "checks": [check.as_dict() for check in self.checks],
        }


def audit(*, run_id: int | None = None, processes: int | None = None) -> AuditReport:
    """Run every check, for one run or (run_id None) for everything in the database."""
    params = {"run_id": run_id}
    signed_once, not_signed = _check_each_record_signed_once(params)
    checks = [
        signed_once,
        _check_signatures_verify(params, processes=processes),
        *_check_merkle_roots_and_checkpoints(params),
        _check_one_key_per_batch(params),
        _check_no_overlapping_leases(params),
        _check_signed_within_lease(params),
        _check_lru_order(run_id),
        _check_no_open_leases_after_finish(params),
        _check_keys_marked_by_their_leases(),
        _check_batch_size_fixed(params),
    ]
    return AuditReport(run_id=run_id, checks=checks, records_not_signed=not_signed)


def _rows(query: str, params: dict[str, Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def _check_each_record_signed_once(params: dict[str, Any]) -> tuple[Check, int]:
    """Rule 1, and how many records are not signed yet (returned, and noted).

    A record with no signature is a breach only where a rule required its signature: in a
    completed run's batches (each signed whole), at or below a completed run's high-water
    mark (its plan saw it unsigned: the run owed it, in a batch or not), or in a signed batch
    (its count). Any other is not signed yet, a state (seeded or arrived since the last run,
    or left by a run that was cancelled or failed): the next run signs it. So `seed` then
    `audit`, or a cancel then `audit`, passes, and says how many wait.
    """
    check = Check(
        "one_signature_per_record",
        "1",
        "no record has two signatures, and every record a completed run owed (in its "
        "batches, or up to the highest id its plan saw) or a signed batch holds has one",
    )
    for record_id, count in _rows(sql.DOUBLE_SIGNED, params):
        check.add(f"record {record_id} has {count} signatures")
    lost = _lost_records(check, params)
    for batch_id, seq, size, count in _rows(sql.BATCH_COUNT_MISMATCH, params):
        check.add(f"batch {batch_id} (#{seq}) is signed with {count} signatures for {size} records")
    not_signed = _count_not_signed(params) - _lost_among_counted(lost, params)
    if not_signed:
        check.note(_not_signed_note(not_signed, params))
    return check, not_signed


def _lost_records(check: Check, params: dict[str, Any]) -> set[int]:
    """Name each record a completed run owed and left unsigned; their ids.

    Those inside its batches' ranges first (the check every run has); then those below its
    high-water mark outside them, with the run that planned them (a run planned before the
    mark existed has none, and only its ranges judge it).
    """
    lost: set[int] = set()
    for (record_id,) in _rows(sql.UNSIGNED_IN_COMPLETED_RUNS, params):
        lost.add(record_id)
        check.add(f"record {record_id} has no signature")
    for record_id, run_id, follow in _rows(sql.UNSIGNED_BELOW_COMPLETED_MARKS, params):
        if record_id in lost:
            continue
        lost.add(record_id)
        seen = f"follow run {run_id} cut through it" if follow else f"run {run_id} planned"
        check.add(
            f"record {record_id} was unsigned when {seen}, and run {run_id} completed without it"
        )
    return lost


def _lost_among_counted(lost: set[int], params: dict[str, Any]) -> int:
    """How many of the lost records _count_not_signed counted: all of them in the whole
    database; in one run's audit, those inside its batches' ranges (a dropped record lies
    outside them)."""
    if params["run_id"] is None or not lost:
        return len(lost)
    ranges = _rows(sql.RUN_BATCH_RANGES, params)  # by first id; a run's never overlap
    firsts = [first for first, _ in ranges]
    counted = 0
    for record_id in lost:
        at = bisect.bisect_right(firsts, record_id) - 1
        counted += at >= 0 and record_id <= ranges[at][1]
    return counted


def _count_not_signed(params: dict[str, Any]) -> int:
    unsigned = sql.NOT_SIGNED_ALL if params["run_id"] is None else sql.NOT_SIGNED_IN_RUN
    return _rows(unsigned, params)[0][0]


def _not_signed_note(count: int, params: dict[str, Any]) -> str:
    """Say how many records wait, and why that is no breach."""
    records = f"{count:,} record{'' if count == 1 else 's'}"
    if params["run_id"] is None:
        return (
            f"{records} not signed yet, in no completed run's batches (a state, not a breach: "
            "the next run signs them)"
        )
    (status,) = _rows(sql.RUN_STATUS, params)[0]
    later = "it signs them as it goes on" if status == "running" else "the next run signs them"
    return (
        f"{records} of its batches not signed: the run is {status} (a state, not a breach: {later})"
    )


def _check_signatures_verify(params: dict[str, Any], *, processes: int | None) -> Check:
    check = Check(
        "signatures_verify", "1", "every signature verifies with its key over the signing input"
    )
    public_keys = {
        key_id: pem
        for key_id, pem in _rows("SELECT id, public_key_pem FROM keyring_signingkey", {})
    }
    workers = processes or min(os.cpu_count() or 1, 4)
    if workers == 1:  # in a worker thread: no process pool (forking a threaded process)
        _load_public_keys(public_keys)
        results = map(_verify_chunk, _signature_chunks(params))
    else:
        pool = ProcessPoolExecutor(
            max_workers=workers, initializer=_load_public_keys, initargs=(public_keys,)
        )
        results = _map_bounded(pool, _verify_chunk, _signature_chunks(params), ahead=2 * workers)
    examined = 0
    try:
        for chunk_size, failures in results:
            examined += chunk_size
            for record_id in failures:
                check.add(f"record {record_id}: signature does not verify")
    finally:
        if workers != 1:
            pool.shutdown()
    check.examined = examined
    return check


def _map_bounded(
    pool: Executor, fn: Callable[[Chunk], Result], chunks: Iterable[Chunk], *, ahead: int
) -> Iterator[Result]:
    """Executor.map, in order, with at most `ahead` chunks submitted and not yet consumed.

    Executor.map submits every chunk at once, so the whole table would be read into memory
    before the first result (1M signatures: gigabytes); this keeps memory flat.
    """
    pending: deque[Future[Result]] = deque()
    for chunk in chunks:
        pending.append(pool.submit(fn, chunk))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _signature_chunks(params: dict[str, Any]) -> Iterator[list[tuple[int, str, int, bytes]]]:
    # A named cursor streams rows instead of loading every signature into memory.
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql.SIGNATURES_TO_VERIFY, params)
        while rows := cursor.fetchmany(VERIFY_CHUNK):
            yield [(rid, payload, key_id, bytes(sig)) for rid, payload, key_id, sig in rows]


_public_keys: dict[int, crypto.PublicKey] = {}


def _load_public_keys(pems: dict[int, str]) -> None:
    _public_keys.update({key_id: crypto.load_public_key(pem) for key_id, pem in pems.items()})


def _verify_chunk(rows: list[tuple[int, str, int, bytes]]) -> tuple[int, list[int]]:
    failures = [
        record_id
        for record_id, payload, key_id, signature in rows
        if key_id not in _public_keys
        or not crypto.verify(
            _public_keys[key_id], crypto.signing_input(record_id, payload), signature
        )
    ]
    return len(rows), failures


NO_ROOT = "no root (signed before roots existed)"


def _check_merkle_roots_and_checkpoints(params: dict[str, Any]) -> tuple[Check, Check]:
    """The Merkle roots, then the follow runs' checkpoints against the batch roots the
    first recomputed from the signatures (one pass over the signatures for both)."""
    recomputed: dict[int, list[tuple[int, bytes]]] = {}  # run -> (seq, batch root)
    merkle_roots = _check_merkle_roots(params, recomputed)
    return merkle_roots, _check_checkpoints(params, recomputed)


def _check_merkle_roots(
    params: dict[str, Any], recomputed: dict[int, list[tuple[int, bytes]]]
) -> Check:
    """Recompute every signed batch's root from its signatures and every completed run's
    from those, and compare them with the roots stored (issue 18, tamper evidence).

    A signature changed, removed or added changes its batch's root, and so its run's. A
    batch or run with no root was signed before roots existed (signing migration 0012): a
    note, not a breach, unless its run (or one of its batches) has a root, which the code
    never leaves behind. The run's root is recomputed from the signatures, not from the
    batches' stored roots, so a batch root cleared alongside a changed signature is still
    caught by its run.
    """
    check = Check(
        "merkle_roots",
        "1",
        "Merkle roots: each signed batch's matches its signatures, each completed run's its "
        "batches",
    )
    batches: dict[int, dict[int, tuple[int, bool]]] = {}  # run -> batch -> (seq, has a root)
    for (run_id, batch_id, seq, stored), signatures, root in _signatures_by_batch(params):
        recomputed.setdefault(run_id, []).append((seq, root))
        batches.setdefault(run_id, {})[batch_id] = (seq, stored is not None)
        if stored is not None and stored != root:
            check.add(
                f"batch {batch_id} (#{seq} of run {run_id}): its root does not match its "
                f"{signatures} signatures"
            )
    check.examined = sum(len(of_run) for of_run in batches.values())
    for run_id, stored in _rows(sql.COMPLETED_RUN_ROOTS, params):
        of_run = batches.get(run_id, {})
        rootless = sorted(batch_id for batch_id, (_, rooted) in of_run.items() if not rooted)
        if stored is None:
            if rootless or not of_run:
                check.note(f"run {run_id}: {NO_ROOT}")
            else:
                check.add(f"run {run_id}: completed with no root, though its batches have roots")
        elif bytes(stored) != roots.run_root(recomputed.get(run_id, [])):
            check.add(
                f"run {run_id}: its root does not match the roots of its {len(of_run)} batches"
            )
        elif rootless:
            check.add(f"run {run_id} has a root but its batch {rootless[0]} has none")
    for run_id, of_run in batches.items():
        for batch_id, (seq, rooted) in sorted(of_run.items()):
            if not rooted:
                check.note(f"batch {batch_id} (#{seq} of run {run_id}): {NO_ROOT}")
    return check


def _check_checkpoints(
    params: dict[str, Any], recomputed: dict[int, list[tuple[int, bytes]]]
) -> Check:
    """Each follow run's checkpoint (signing.runs.checkpoints): its root is the root of its
    run's first `batches` batches as recomputed from their signatures, its signature
    verifies with its key over kernel.merkle.checkpoint_input, and its key is the key of the
    lease it names, a lease of its run, held when it was signed (rule 2: a key signs only
    while leased). Checkpoints are few (one per N batches), so each is checked in full."""
    check = Check(
        "checkpoints",
        "1",
        "each follow-run checkpoint's root matches its batches' signatures, its signature "
        "verifies, and its key was leased to its run when it signed",
    )
    rows = _rows(sql.CHECKPOINTS, params)
    check.examined = len(rows)
    prefixes: dict[int, list[tuple[int, bytes]]] = {
        run_id: sorted(of_run) for run_id, of_run in recomputed.items()
    }
    public_keys: dict[str, crypto.PublicKey] = {}
    for row in rows:
        key_id, run_id, count, stored, signature, kid, pem, lease_key, lease_run, held = row
        name = f"checkpoint of run {run_id} at {count} batches"
        stored = bytes(stored)
        prefix = [(seq, root) for seq, root in prefixes.get(run_id, []) if seq <= count]
        if [seq for seq, _ in prefix] != list(range(1, count + 1)):
            check.add(f"{name}: only {len(prefix)} of its batches are signed")
        elif roots.run_root(prefix) != stored:
            check.add(f"{name}: its root does not match the signatures of its batches")
        key = public_keys.get(kid) or public_keys.setdefault(kid, crypto.load_public_key(pem))
        try:
            data = merkle.checkpoint_input(run_id, count, stored)
        except ValueError:
            check.add(f"{name}: its root is not 32 bytes")
            continue
        if not crypto.verify(key, data, bytes(signature)):
            check.add(f"{name}: its signature does not verify with key {kid}")
        if lease_key is None or lease_run != run_id:
            check.add(f"{name}: its lease is not a lease of run {run_id}")
        elif not held:
            check.add(f"{name}: signed while its lease was not held")
        if lease_key is not None and lease_key != key_id:
            check.add(f"{name}: signed by key {kid}, not its lease's key")
    return check


def _signatures_by_batch(
    params: dict[str, Any],
) -> Iterator[tuple[tuple[int, int, int, bytes | None], int, bytes]]:
    """((run, batch, seq, stored root), signatures, recomputed root) per signed batch.

    Streamed, each batch's root built as its rows come (in record id order), so a batch of
    a million signatures costs the audit no list of them.
    """
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql.BATCH_SIGNATURES_FOR_ROOTS, params)
        batch: tuple[int, int, int, bytes | None] | None = None
        builder, count = roots.BatchRootBuilder(), 0
        while rows := cursor.fetchmany(VERIFY_CHUNK):
            for run_id, batch_id, seq, stored, record_id, signature in rows:
                if batch is None or batch[1] != batch_id:
                    if batch is not None:
                        yield batch, count, builder.root()
                    stored_root = None if stored is None else bytes(stored)
                    batch = (run_id, batch_id, seq, stored_root)
                    builder, count = roots.BatchRootBuilder(), 0
                if record_id is not None:
                    count += 1
                    with suppress(ValueError):  # a record twice (no primary key): no root
                        builder.add([(record_id, bytes(signature))])
        if batch is not None:
            yield batch, count, builder.root()


def _check_one_key_per_batch(params: dict[str, Any]) -> Check:
    check = Check(
        "one_key_per_batch",
        "3",
        "each batch was signed by one key under one lease, for the records of its range",
    )
    for batch_id, keys, leases in _rows(sql.BATCH_MANY_KEYS, params):
        check.add(f"batch {batch_id} was signed with {keys} keys under {leases} leases")
    for record_id, key_id, lease_key_id, batch_id, lease_batch_id in _rows(
        sql.SIGNATURE_NOT_LEASE_KEY, params
    ):
        check.add(
            f"record {record_id} names key {key_id} / batch {batch_id} but its lease was "
            f"for key {lease_key_id} / batch {lease_batch_id}"
        )
    for record_id, batch_id, first, last in _rows(sql.SIGNATURE_OUTSIDE_BATCH, params):
        check.add(f"record {record_id} is signed under batch {batch_id}, of records {first}-{last}")
    return check


def _check_no_overlapping_leases(params: dict[str, Any]) -> Check:
    check = Check("no_overlapping_leases", "2", "no key was leased to two batches at once")
    for first, second, kid in backend().overlapping_leases(run_id=params["run_id"]):
        check.add(f"leases {first} and {second} of {kid} overlap in time")
    return check


def _check_signed_within_lease(params: dict[str, Any]) -> Check:
    check = Check(
        "signed_within_lease", "2", "every signature was written while its lease was held"
    )
    for record_id, lease_id, signed_at, acquired_at, released_at in _rows(
        sql.SIGNED_OUTSIDE_LEASE, params
    ):
        check.add(
            f"record {record_id} signed at {signed_at.isoformat()} outside lease {lease_id} "
            f"[{acquired_at.isoformat()}, {released_at.isoformat() if released_at else 'open'})"
        )
    return check


def _check_no_open_leases_after_finish(params: dict[str, Any]) -> Check:
    check = Check("no_open_leases_after_finish", "2", "no lease is left open after its run ended")
    for lease_id, kid, run_id, status in _rows(sql.OPEN_AFTER_FINISH, params):
        check.add(f"lease {lease_id} of {kid} is still open but run {run_id} is {status}")
    for run_id, run_status, batch_status, count in _rows(sql.RUN_STATUS_INCONSISTENT, params):
        check.add(f"run {run_id} is {run_status} but {count} of its batches are {batch_status}")
    return check


def _check_keys_marked_by_their_leases() -> Check:
    """The keyring as it is now: each key held exactly when an open lease holds it.

    A key marked held with no open lease would never be leased again; an open lease its key
    does not name would let the pick offer the key (the exclusion constraint would still
    refuse the second lease). Neither should ever be seen.
    """
    check = Check("keys_marked_by_their_leases", "2", "each key is marked held by its open lease")
    for kid, marked, open_lease in _rows(sql.KEY_HOLDERS_MISMATCHED, {}):
        held_by = f"lease {marked}" if marked else "no lease"
        check.add(f"{kid} is marked held by {held_by} but its open lease is {open_lease or 'none'}")
    return check


def _check_batch_size_fixed(params: dict[str, Any]) -> Check:
    check = Check(
        "batch_size_fixed",
        "5",
        "every batch has its run's batch size (the last may be smaller; in a follow run, a "
        "batch is smaller only when fewer records were waiting when it was cut)",
    )
    for run_id, seq, size, batch_size, follow, waiting in _rows(sql.BATCH_SIZE_BROKEN, params):
        breach = f"run {run_id} batch #{seq} has {size} records for a batch size of {batch_size}"
        if follow:
            breach += f", cut with {'an unknown number' if waiting is None else waiting} waiting"
        check.add(breach)
    return check


def _check_lru_order(run_id: int | None) -> Check:
    """Replay every lease and release in time order and compare each pick with the LRU key.

    Leases, releases, disables and enables are serialized by the keyring lock and stamped
    by one clock, so at each lease the free keys and their `last_used_at` are exactly what
    the replay holds.
    """
    check = Check("lru_order", "4", "each lease took the least recently used free key")
    periods: dict[int, list[Period]] = {}
    for key_id, disabled_at, enabled_at in _rows(sql.DISABLED_PERIODS, {}):
        periods.setdefault(key_id, []).append(Period(disabled_at, enabled_at))
    keys = {
        key_id: KeyHistory(kid, created_at, enabled, periods.get(key_id, []))
        for key_id, kid, created_at, enabled in _rows(sql.KEYS, {})
    }
    leases = [LeaseHistory._make(row) for row in _rows(sql.LEASE_HISTORY, {})]
    check.examined = sum(1 for lease in leases if run_id is None or lease.run_id == run_id)
    for breach in replay_lru(keys, leases, run_id=run_id):
        check.add(breach)
    return check


class Period(NamedTuple):
    """A time a key was out of the keyring: [since, until), open while still disabled."""

    since: datetime
    until: datetime | None


class KeyHistory(NamedTuple):
    kid: str
    created_at: datetime
    enabled: bool  # now
    disabled: list[Period]  # in order


class LeaseHistory(NamedTuple):
    lease_id: int
    key_id: int
    acquired_at: datetime
    released_at: datetime | None
    run_id: int


def replay_lru(
    keys: dict[int, KeyHistory],
    leases: list[LeaseHistory],
    *,
    run_id: int | None,
) -> Iterator[str]:
    """Yield a breach for every lease that did not take the LRU free key at its time.

    A key is a candidate from its creation on, except while it was disabled. A key disabled
    with no period recorded (before they were) is no candidate, and its leases are not
    judged: the tables cannot say what was free back then.
    """
    RELEASE, ENABLE, ACQUIRE = 0, 1, 2  # at one instant: releases, then enables, then leases
    events = []
    for lease in leases:
        events.append((lease.acquired_at, ACQUIRE, lease.lease_id, lease.key_id, lease.run_id))
        if lease.released_at is not None:
            events.append((lease.released_at, RELEASE, lease.lease_id, lease.key_id, lease.run_id))
    for key_id, history in keys.items():
        events.extend(
            (period.until, ENABLE, 0, key_id, None) for period in history.disabled if period.until
        )
    events.sort(key=lambda event: (event[0], event[1], event[2]))

    def unknown(key_id: int) -> bool:
        history = keys.get(key_id)
        return history is None or (
            not history.enabled and not any(period.until is None for period in history.disabled)
        )

    def disabled_at(key_id: int, moment: datetime) -> datetime | None:
        """When the key's disabled period holding `moment` began, or None."""
        for period in keys[key_id].disabled:
            if period.since <= moment and (period.until is None or moment < period.until):
                return period.since
        return None

    never_used: datetime | None = None
    last_used: dict[int, datetime | None] = {key_id: never_used for key_id in keys}
    held: set[int] = set()
    # Heap of (used?, last_used, key_id) for free candidates; stale entries are skipped.
    by_creation = sorted(
        (history.created_at, key_id) for key_id, history in keys.items() if not unknown(key_id)
    )
    free: list[tuple[bool, datetime | None, int]] = []
    created = 0

    def lru_order(key_id: int) -> tuple[bool, datetime | None, int]:
        used = last_used[key_id]
        return (used is not None, used, key_id)

    def stale(entry: tuple[bool, datetime | None, int], moment: datetime) -> bool:
        key_id = entry[2]
        return (
            key_id in held or entry != lru_order(key_id) or disabled_at(key_id, moment) is not None
        )

    for at, kind, lease_id, key_id, lease_run in events:
        while created < len(by_creation) and by_creation[created][0] <= at:
            heapq.heappush(free, lru_order(by_creation[created][1]))
            created += 1
        if kind == ENABLE:
            if key_id not in held and not unknown(key_id):
                heapq.heappush(free, lru_order(key_id))
            continue
        if kind == RELEASE:
            held.discard(key_id)
            last_used[key_id] = at
            if key_id in keys and not unknown(key_id):
                heapq.heappush(free, lru_order(key_id))
            continue
        while free and stale(free[0], at):
            heapq.heappop(free)
        expected = free[0][2] if free else None
        held.add(key_id)
        if (run_id is not None and lease_run != run_id) or unknown(key_id):
            continue
        if (since := disabled_at(key_id, at)) is not None:
            yield (
                f"lease {lease_id} at {at.isoformat()} took {keys[key_id].kid}, "
                f"disabled at {since.isoformat()}"
            )
        elif expected is not None and expected != key_id:
            yield (
                f"lease {lease_id} at {at.isoformat()} took {keys[key_id].kid} "
                f"(last used {_when(last_used[key_id])}) while {keys[expected].kid} "
                f"(last used {_when(last_used[expected])}) was free"
            )


def _when(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "never"
