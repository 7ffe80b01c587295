"""The work of SigningTriggered: take up a batch under its lease, sign what the database
holds for it with the key the lease names, and store it, fenced.

The message is a hint, never a source: it names a lease, and everything signed comes from
the database under that lease (docs/architecture.md, "Trust nothing the broker says").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain

from django.conf import settings

import records.selectors
from kernel import crypto
from kernel.events import EventLogger
from keyring.exceptions import KekError, KeyRetired
from keyring.leases import LeaseHint
from keyring.models import SigningKey
from keyring.services import UnsealedKey, open_private_key
from records.models import Signature
from records.selectors import unsigned_record_pages
from signing.backends import backend
from signing.models import Batch
from signing.runs.checkpoints import make_checkpoints
from signing.runs.exceptions import LeaseLost
from signing.runs.leases import extend_lease
from signing.runs.recovery import give_back_batch
from signing.runs.store import (
    SignatureStage,
    StoreOutcome,
    store_signatures,
    store_staged_signatures,
)

log = EventLogger(__name__)

# How many records are signed between two looks at the clock for a heartbeat.
HEARTBEAT_EVERY_RECORDS = 500


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """How a batch went, for its actor (the outcome decides whether SigningCompleted is sent)
    and for tests; the `batch.stored` log line carries the same figures."""

    outcome: StoreOutcome
    signed: int
    conflicts: int
    seconds: float


@dataclass(frozen=True, slots=True)
class TakenUp:
    """A batch taken up under its lease: its status, the range of its records and, while it
    is leased, the first page of those still unsigned (read in the take-up's round trip)."""

    status: str
    first_record_id: int
    last_record_id: int
    follow: bool  # its run's: only a follow run's store makes checkpoints
    first_page: list[tuple[int, str]]
    page_size: int

    def unsigned_pages(self) -> Iterator[list[tuple[int, str]]]:
        """Every page of the batch's records still unsigned: the first, then any more."""
        if self.first_page:
            yield self.first_page
        if len(self.first_page) == self.page_size:
            yield from unsigned_record_pages(
                first_record_id=self.first_page[-1][0] + 1,
                last_record_id=self.last_record_id,
                page_size=self.page_size,
            )


def take_up_batch(hint: LeaseHint) -> TakenUp | None:
    """Check the message against its lease and take the batch up; None if it names no live
    lease (forged, stale, late, or its lease expired: sign nothing).

    The first take-up of a lease counts an attempt of its batch and gives the lease a full
    TTL from now (TAKE_UP_BATCH says why).
    """
    page_size = records.selectors.PAGE_SIZE
    row = backend().take_up(hint, ttl_seconds=settings.SIGNING_LEASE_TTL, page_size=page_size)
    return TakenUp(*row, page_size=page_size) if row is not None else None


def sign_batch(hint: LeaseHint) -> BatchSummary:
    """Sign every record of the batch on its own with the leased key, then store them all.

    What is signed is what the database holds: the records still unsigned in the batch's
    range, read under the lease a page at a time, with the key the lease names (loaded by
    the lease's key id and kid, both checked). Signing happens before any lock is taken. A
    long batch extends its lease as it goes (every third of a TTL) and stops as soon as the
    lease is gone; the store checks the lease and token again, so an attempt that lost its
    lease writes nothing. A batch of one page is stored from memory; a bigger one is staged
    page by page in the database (signing.runs.store.SignatureStage), so however big the
    batch, a worker holds at most two pages of it.
    """
    started = time.perf_counter()
    signed = 0
    taken = take_up_batch(hint)
    if taken is None:
        outcome, conflicts = StoreOutcome.LEASE_LOST, 0
    elif taken.status == Batch.Status.SIGNED:
        # Stored already under this very lease (a redelivered message): report it again,
        # after the checkpoints a worker that died after its store may have left unmade.
        outcome, conflicts = StoreOutcome.ALREADY_STORED, 0
        if taken.follow:
            _checkpoints_after_redelivery(hint)
    else:  # leased: an open lease holds a batch that is leased, or signed under it
        key = _open_leased_key(hint)
        if key is None:
            outcome, conflicts = StoreOutcome.LEASE_LOST, 0
        else:
            try:
                outcome, conflicts, signed = _sign_and_store(key, taken.unsigned_pages(), hint=hint)
            except LeaseLost:
                outcome, conflicts = StoreOutcome.LEASE_LOST, 0
            if outcome is StoreOutcome.STORED and taken.follow:
                # Still under the lease (SigningCompleted is sent after this returns): a
                # follow run's checkpoints now due, signed with this key; never fails the batch.
                make_checkpoints(hint, private_key=key.private_key)
    seconds = time.perf_counter() - started
    log.info(
        f"batch.{outcome.value}",
        batch_id=hint.batch_id,
        lease_id=hint.lease_id,
        kid=hint.kid,
        records=signed,
        seconds=round(seconds, 4),
    )
    if outcome is not StoreOutcome.STORED:
        return BatchSummary(outcome=outcome, signed=0, conflicts=0, seconds=seconds)
    return BatchSummary(
        outcome=outcome, signed=signed - conflicts, conflicts=conflicts, seconds=seconds
    )


def _open_leased_key(hint: LeaseHint) -> UnsealedKey | None:
    """The key a lease taken up names, opened; None if it was retired since.

    A KekError (this worker's KEK: none, or not the keys') no retry would help: the batch
    goes back at once with the reason, and the error goes on to the actor, which gives the
    message up. A key is retired only while no lease holds it, so a retired one means this
    lease has ended since its take-up (expired and reaped): the batch is another lease's
    business, and this attempt writes nothing, as for any lease lost.
    """
    try:
        return open_private_key(key_id=hint.key_id, kid=hint.kid)
    except KekError as error:
        give_back_batch(hint, reason=f"{type(error).__name__}: {error}")
        raise
    except KeyRetired:
        log.warning("lease.lost", lease_id=hint.lease_id, kid=hint.kid, reason="key retired")
        return None


def _checkpoints_after_redelivery(hint: LeaseHint) -> None:
    """make_checkpoints for a follow run's batch stored under this lease by an earlier
    delivery (its worker may have died between its store and its checkpoints): the key is
    opened again, and never at the batch's expense."""
    try:
        key = open_private_key(key_id=hint.key_id, kid=hint.kid)
    except (KekError, KeyRetired) as error:
        log.error("checkpoint.failed", batch_id=hint.batch_id, error=type(error).__name__)
        return
    make_checkpoints(hint, private_key=key.private_key)


def _sign_and_store(
    key: UnsealedKey, pages: Iterator[list[tuple[int, str]]], *, hint: LeaseHint
) -> tuple[StoreOutcome, int, int]:
    """Sign page by page and store: (outcome, conflicts, signatures written). Raises
    LeaseLost as soon as a heartbeat finds the lease gone."""
    heartbeat = Heartbeat(hint)
    signed_pages = (_sign_page(key, page, heartbeat) for page in pages)
    first = next(signed_pages, [])
    second = next(signed_pages, None)
    if second is None:
        outcome, conflicts = store_signatures(hint, signatures=first)
        return outcome, conflicts, len(first)
    with SignatureStage() as stage:
        for signatures in chain([first, second], signed_pages):
            stage.add(signatures)
        heartbeat.beat()  # the store of a big stage takes a while: start it with a fresh TTL
        outcome, conflicts = store_staged_signatures(hint, stage=stage)
        return outcome, conflicts, stage.count


def _sign_page(
    key: UnsealedKey, page: list[tuple[int, str]], heartbeat: Heartbeat
) -> list[crypto.SignedRecord]:
    """Sign a page in chunks, with a heartbeat after each when one is due."""
    signatures: list[crypto.SignedRecord] = []
    for first in range(0, len(page), HEARTBEAT_EVERY_RECORDS):
        chunk = page[first : first + HEARTBEAT_EVERY_RECORDS]
        signatures.extend(crypto.sign_records(key.private_key, chunk))
        heartbeat.beat_if_due()
    return signatures


class Heartbeat:
    """Extends a lease every third of a TTL while its batch is worked on; LeaseLost once the
    lease is gone (released, expired, re-tokened): the work must stop and write nothing."""

    def __init__(self, hint: LeaseHint) -> None:
        self.hint = hint
        self.ttl = settings.SIGNING_LEASE_TTL
        self.last = time.perf_counter()

    def beat_if_due(self) -> None:
        if time.perf_counter() - self.last >= self.ttl / 3:
            self.beat()

    def beat(self) -> None:
        if not extend_lease(self.hint, ttl_seconds=self.ttl):
            raise LeaseLost(f"lease {self.hint.lease_id} (token {self.hint.token}) is gone")
        self.last = time.perf_counter()


@dataclass(frozen=True, slots=True)
class Verdict:
    """One item's answer: valid or not, with when the key it was checked with was retired
    (None if it is not); or (valid None) why it could not be checked.

    A retired key still verifies: what it signed before it was retired is genuine, and
    its public key stays published. But retiring is also the way out for a key suspected
    compromised, and a signature over a message could then have been made by whoever took
    it, at any time; so every answer that checked a signature carries the key's
    `retired_at`, and the caller decides what a signature by a retired key is worth."""

    valid: bool | None
    errors: dict[str, list[str]] | None = None
    retired_at: datetime | None = None


def verify_record(record_id: int) -> Verdict | None:
    """Check a stored signature again over the record's signing input; None if unsigned."""
    signature = (
        Signature.objects.select_related("record", "key").filter(record_id=record_id).first()
    )
    if signature is None:
        return None
    valid = crypto.verify(
        crypto.load_public_key(signature.key.public_key_pem),
        crypto.signing_input(signature.record_id, signature.record.payload),
        bytes(signature.signature),
    )
    return Verdict(valid, retired_at=signature.key.retired_at)


def verify_message(*, kid: str, message: str, signature: bytes) -> Verdict | None:
    """Check a signature over a message's exact UTF-8 bytes with the public key of `kid`;
    None if no key has that kid."""
    key = SigningKey.objects.only("public_key_pem", "retired_at").filter(kid=kid).first()
    if key is None:
        return None
    valid = crypto.verify(crypto.load_public_key(key.public_key_pem), message.encode(), signature)
    return Verdict(valid, retired_at=key.retired_at)


# How many ids one query of verify_many reads: an IN list SQLite takes on any build.
VERIFY_QUERY_IDS = 500


@dataclass(frozen=True, slots=True)
class _PublicKey:
    """A key as verify_many checks with it: loaded once, with when it was retired."""

    key: crypto.PublicKey
    retired_at: datetime | None


def verify_many(items: list[dict]) -> list[Verdict]:
    """verify_record or verify_message for each item (validated: `record_id` alone, or `kid`,
    `message` and `signature`), in order, with one query per 500 records and one for the
    keys, each public key loaded once. An unsigned record or an unknown kid is that item's
    error, as it is the whole answer's in the one-item form."""
    record_ids = sorted({item["record_id"] for item in items if "record_id" in item})
    records: dict[int, Verdict] = {}
    keys: dict[str, _PublicKey] = {}
    for start in range(0, len(record_ids), VERIFY_QUERY_IDS):
        rows = Signature.objects.filter(
            record_id__in=record_ids[start : start + VERIFY_QUERY_IDS]
        ).values_list(
            "record_id",
            "record__payload",
            "signature",
            "key__kid",
            "key__public_key_pem",
            "key__retired_at",
        )
        for record_id, payload, signature, kid, pem, retired_at in rows:
            key = keys.get(kid) or keys.setdefault(kid, _load(pem, retired_at))
            valid = crypto.verify(
                key.key, crypto.signing_input(record_id, payload), bytes(signature)
            )
            records[record_id] = Verdict(valid, retired_at=key.retired_at)
    kids = {item["kid"] for item in items if "kid" in item} - set(keys)
    rows = SigningKey.objects.filter(kid__in=kids).values_list(
        "kid", "public_key_pem", "retired_at"
    )
    for kid, pem, retired_at in rows:
        keys[kid] = _load(pem, retired_at)
    verdicts = []
    for item in items:
        if "record_id" in item:
            verdicts.append(
                records.get(item["record_id"])
                or Verdict(None, {"record_id": ["No signed record has this id."]})
            )
        elif (key := keys.get(item["kid"])) is None:
            verdicts.append(Verdict(None, {"kid": ["No key has this kid."]}))
        else:
            valid = crypto.verify(key.key, item["message"].encode(), item["signature"])
            verdicts.append(Verdict(valid, retired_at=key.retired_at))
    return verdicts


def _load(public_key_pem: str, retired_at: datetime | None) -> _PublicKey:
    return _PublicKey(crypto.load_public_key(public_key_pem), retired_at)
