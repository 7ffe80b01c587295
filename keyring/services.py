"""The seed's Key Management Service: create, enable and disable keys, rotate the KEK, open a
private key for signing.

Every change of the keyring runs under the keyring lock and is stamped by its clock, as
leases are (docs/architecture.md, "Why one keyring lock"), so the audit's replay of the LRU
rule knows, at every lease, which keys were candidates. The lock and clock are the database
seam's, asked for through settings (KeyringDatabase below says why).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, cast

from django.db import transaction
from django.db.models import QuerySet

from kernel import crypto
from kernel.events import EventLogger
from kernel.seam import configured_backend
from keyring import sealing
from keyring.exceptions import KeyMismatch
from keyring.models import KeyDisabledPeriod, SigningKey

log = EventLogger(__name__)


@dataclass(frozen=True, slots=True)
class UnsealedKey:
    """A private key opened for signing; its repr shows only the kid and algorithm."""

    kid: str
    algorithm: str
    public_key_pem: str = field(repr=False)
    private_key: crypto.PrivateKey = field(repr=False)


class KeyringDatabase(Protocol):
    """What the keyring needs of the database seam: its lock and its clock. The seam
    (signing.backends, the top app's) provides them; settings name it, so the keyring asks
    for this much by that name and imports nothing above it (as Django's mail asks for the
    EMAIL_BACKEND it is given)."""

    def lock_keyring(self) -> None: ...

    def clock(self) -> datetime: ...


def _keyring_backend() -> KeyringDatabase:
    return cast(KeyringDatabase, configured_backend())


def lock_keyring() -> None:
    """Serialize with every other lease and release until this transaction ends."""
    _keyring_backend().lock_keyring()


def create_keys(*, count: int, algorithm: str = crypto.ED25519, kek: bytes) -> list[SigningKey]:
    """Generate keys, sealing each private key under the KEK before it reaches the database.

    Refuses (KekMismatch, nothing created) a KEK that does not open every key already in
    the keyring: one sealed under two KEKs fails the readiness check of every run, and
    rotate-kek cannot open it whole.

    The keys are inserted under the keyring lock, in one transaction, with `created_at`
    read from the keyring clock under that lock. The audit's replay counts a key as a
    candidate for rule 4 from its `created_at`; stamped earlier (this process's clock,
    before the commit), a lease granted in between, which could not see the key yet,
    would look like one that skipped it.
    """
    private_keys = [crypto.generate_private_key(algorithm) for _ in range(count)]
    with transaction.atomic():
        lock_keyring()
        check_kek_opens_keyring(kek)
        created_at = keyring_clock()
        start = SigningKey.objects.count()
        keys = []
        for number, private_key in enumerate(private_keys, start=start + 1):
            kid = f"key-{number:04d}-{_short_fingerprint(private_key)}"
            keys.append(
                SigningKey(
                    kid=kid,
                    algorithm=algorithm,
                    public_key_pem=crypto.public_key_pem(private_key),
                    encrypted_private_key=sealing.seal(
                        kek, kid, crypto.private_key_to_der(private_key)
                    ),
                    created_at=created_at,
                )
            )
        return SigningKey.objects.bulk_create(keys)


def set_keys_enabled(keys: QuerySet[SigningKey], *, enabled: bool) -> int:
    """Enable or disable keys; return how many were selected. Every path goes through here
    (`keys disable` and `keys enable`, the admin's actions and form).

    Under the keyring lock, by the clock leases are stamped with, a key taken out gets its
    `disabled_at` and opens a disabled period; a key put back clears `disabled_at` and
    closes its period. So the audit's replay knows, at every lease, exactly which keys
    were candidates. A key already in the state asked for is left as it is.
    """
    with transaction.atomic():
        lock_keyring()
        now = keyring_clock()
        selected = SigningKey.objects.filter(pk__in=keys.values("pk"))
        if enabled:
            KeyDisabledPeriod.objects.filter(key__in=selected, enabled_at=None).update(
                enabled_at=now
            )
            return selected.update(enabled=True, disabled_at=None)
        turning_off = list(selected.filter(enabled=True).values_list("pk", flat=True))
        KeyDisabledPeriod.objects.bulk_create(
            KeyDisabledPeriod(key_id=key_id, disabled_at=now) for key_id in turning_off
        )
        SigningKey.objects.filter(pk__in=turning_off).update(enabled=False, disabled_at=now)
        return selected.count()


def keyring_clock() -> datetime:
    """The time by the clock leases are stamped with: PostgreSQL's, or on SQLite (embedded
    mode, one process) this process's."""
    return _keyring_backend().clock()


def disable_key(*, kid: str) -> SigningKey:
    """Take a key out of the keyring: it is not leased again until it is enabled.

    A lease it holds now runs to its end, and every signature it made still verifies.
    Disabling twice changes nothing. Raises SigningKey.DoesNotExist for an unknown kid.
    """
    return _set_key_enabled(kid, enabled=False)


def enable_key(*, kid: str) -> SigningKey:
    """Put a disabled key back: it takes its place in the LRU order by its last use."""
    return _set_key_enabled(kid, enabled=True)


def _set_key_enabled(kid: str, *, enabled: bool) -> SigningKey:
    key = SigningKey.objects.get(kid=kid)
    was_enabled = key.enabled
    set_keys_enabled(SigningKey.objects.filter(pk=key.pk), enabled=enabled)
    key.refresh_from_db()
    if was_enabled != enabled:
        log.info("key.enabled" if enabled else "key.disabled", kid=kid)
    return key


def rotate_kek(*, old_kek: bytes, new_kek: bytes) -> int:
    """Re-seal every private key under a new KEK, all or none; return how many.

    Every key is opened with the old KEK first (KekMismatch if one does not open, and then
    nothing changes), in one transaction that holds the key rows and the keyring lock: a
    `keys add` checks its KEK under that lock, so it never seals a new key under the KEK
    being retired. Processes still running with the old KEK keep the keys they already
    opened; any other must get the new one. signing.runs.dispatch.rotate_kek_between_runs
    calls this when no run is active.
    """
    with transaction.atomic():
        lock_keyring()
        keys = list(
            SigningKey.objects.select_for_update().only("id", "kid", "encrypted_private_key")
        )
        for key in keys:
            secret = sealing.unseal(old_kek, key.kid, bytes(key.encrypted_private_key))
            key.encrypted_private_key = sealing.seal(new_kek, key.kid, secret)
        SigningKey.objects.bulk_update(keys, ["encrypted_private_key"], batch_size=1000)
    log.info("kek.rotated", keys=len(keys))
    return len(keys)


def _short_fingerprint(private_key: crypto.PrivateKey) -> str:
    """First 48 bits of the SHA-256 of the public key: a kid never names two keys."""
    return hashlib.sha256(crypto.public_key_pem(private_key).encode("ascii")).hexdigest()[:12]


# Cached by kid, not id: `seed --reset` restarts ids, and a kid embeds its key's fingerprint.
_open_keys: dict[str, UnsealedKey] = {}
_open_keys_lock = threading.Lock()


def open_private_key(*, key_id: int, kid: str) -> UnsealedKey:
    """Unseal a key once per process and keep it in memory for the next batch.

    Loaded by id and kid together (a lease names both), and checked against the public key
    stored beside it, which is the one every signature is verified with.
    """
    cached = _open_keys.get(kid)
    if cached is not None:
        return cached
    columns = ("kid", "algorithm", "public_key_pem", "encrypted_private_key")
    key = SigningKey.objects.only(*columns).get(pk=key_id, kid=kid)
    kek = sealing.kek_from_environment()
    der = sealing.unseal(kek, key.kid, bytes(key.encrypted_private_key))
    private_key = crypto.private_key_from_der(der)
    public_key_pem = crypto.public_key_pem(private_key)
    if public_key_pem != key.public_key_pem:
        raise KeyMismatch(f"{kid}'s private key does not match its stored public key")
    unsealed = UnsealedKey(key.kid, key.algorithm, public_key_pem, private_key)
    with _open_keys_lock:
        return _open_keys.setdefault(kid, unsealed)


def forget_private_keys() -> None:
    """Drop every unsealed key from memory (after `seed --reset`, and in tests)."""
    with _open_keys_lock:
        _open_keys.clear()


def check_kek_opens_keyring(kek: bytes | None = None) -> None:
    """Raise a KekError unless the KEK (SIGNING_KEK when not given) opens every key.

    Every key, not the first alone: a key sealed under another KEK would otherwise pass
    here and fail each batch leased to it, in a worker, until the run fails. The
    KekMismatch names the first kid (by id) that does not open, and nothing secret.
    """
    if kek is None:
        kek = sealing.kek_from_environment()
    sealed_keys = SigningKey.objects.order_by("id").values_list("kid", "encrypted_private_key")
    for kid, sealed in sealed_keys.iterator(chunk_size=1000):
        sealing.unseal(kek, kid, bytes(sealed))
