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
from keyring.exceptions import KekMismatch, KeyHeld, KeyMismatch, KeyRetired
from keyring.models import KeyDisabledPeriod, KeyLease, SigningKey
from keyring.selectors import live_keys

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
    """Enable or disable keys; return how many were selected (when enabling, less the
    retired ones: they stay out for good). Every path goes through here (`keys disable`
    and `keys enable`, the admin's actions and form).

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
            selected = selected.filter(retired_at=None)
            KeyDisabledPeriod.objects.filter(key__in=selected, enabled_at=None).update(
                enabled_at=now
            )
            return selected.update(enabled=True, disabled_at=None)
        _take_out(selected, now=now)
        return selected.count()


def _take_out(selected: QuerySet[SigningKey], *, now: datetime) -> None:
    """Disable the enabled keys among `selected`, opening each a disabled period at `now`.
    The caller holds the keyring lock and read `now` from its clock under it."""
    turning_off = list(selected.filter(enabled=True).values_list("pk", flat=True))
    KeyDisabledPeriod.objects.bulk_create(
        KeyDisabledPeriod(key_id=key_id, disabled_at=now) for key_id in turning_off
    )
    SigningKey.objects.filter(pk__in=turning_off).update(enabled=False, disabled_at=now)


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
    if enabled and key.retired_at is not None:
        raise KeyRetired(
            f"{kid} was retired at {key.retired_at.isoformat()}: it is out for good, its sealed "
            "private key erased, and never leased again (`manage.py keys add` makes new keys)"
        )
    was_enabled = key.enabled
    set_keys_enabled(SigningKey.objects.filter(pk=key.pk), enabled=enabled)
    key.refresh_from_db()
    if was_enabled != enabled:
        log.info("key.enabled" if enabled else "key.disabled", kid=kid)
    return key


def retire_key(*, kid: str) -> SigningKey:
    """Take a key out of the keyring for good: disabled, never enabled again, its sealed
    private key erased from its row; its row, public key and lease history stay, so what it
    signed still verifies (the JWKS and `export-public` keep it; verify answers say when it
    was retired) and the audit still proves it.

    Erased from the row, not from the world: a database backup, or WAL archive, made
    before keeps the sealed copy (the KEK opens it), and a worker process that opened the
    key keeps it unsealed in memory (`_open_keys`) until it exits. Only this process's
    copy is dropped here. No lease takes a disabled key, so no process signs with it
    again; for a key suspected compromised, restart the workers anyway and see to the
    backups (docs/usage.md, "Key lifecycle").

    The way out for a key no KEK at hand opens (sealed under a KEK since lost): it would
    otherwise fail every run's readiness check and every `rotate-kek`. Refused (KeyHeld)
    while a lease holds the key, since that lease's worker may still need to open it.
    Under the keyring lock, by its clock, like disabling (the audit's replay reads the
    disabled period it opens). Retiring twice changes nothing. SigningKey.DoesNotExist for
    an unknown kid.
    """
    with transaction.atomic():
        lock_keyring()
        key = SigningKey.objects.select_for_update().defer("encrypted_private_key").get(kid=kid)
        if key.retired_at is not None:
            return key
        if KeyLease.objects.filter(key=key, released_at=None).exists():
            raise KeyHeld(
                f"a lease holds {kid} now: disable it (`manage.py keys disable {kid}`), "
                "then retire it once that lease has ended"
            )
        now = keyring_clock()
        this_key = SigningKey.objects.filter(pk=key.pk)
        _take_out(this_key, now=now)
        this_key.update(retired_at=now, encrypted_private_key=b"")
    with _open_keys_lock:
        _open_keys.pop(kid, None)
    log.info("key.retired", kid=kid)
    key.refresh_from_db()
    return key


def rotate_kek(*, old_kek: bytes, new_kek: bytes) -> int:
    """Re-seal every private key under a new KEK, all or none; return how many.

    Every key (but the retired ones, which have no private key left) is opened with the old
    KEK first (KekMismatch, saying how to fix it, if one does not open, and then nothing
    changes), in one transaction that holds the key rows and the keyring lock: a `keys
    add` checks its KEK under that lock, so it never seals a new key under the KEK being
    retired. Processes still running with the old KEK keep the keys they already opened;
    any other must get the new one. signing.runs.dispatch.rotate_kek_between_runs calls
    this when no run is active.
    """
    with transaction.atomic():
        lock_keyring()
        keys = _live_keys_for_resealing()
        secrets, not_opened = _open_each(old_kek, keys)
        if not_opened:
            raise kek_mismatch(not_opened, total=len(keys))
        for key in keys:
            key.encrypted_private_key = sealing.seal(new_kek, key.kid, secrets[key.kid])
        SigningKey.objects.bulk_update(keys, ["encrypted_private_key"], batch_size=1000)
    log.info("kek.rotated", keys=len(keys))
    return len(keys)


@dataclass(frozen=True, slots=True)
class Resealed:
    """What `reseal_keys` did: the kids it re-sealed, and those neither KEK opens."""

    kids: list[str]
    still_sealed_elsewhere: list[str]


def reseal_keys(*, old_kek: bytes, kek: bytes, old_name: str) -> Resealed:
    """Re-seal under `kek` (SIGNING_KEK) every key it does not open but `old_kek` does.

    The way out for a keyring sealed under two KEKs (a key added under the old KEK after
    a rotation, by a release whose `keys add` did not check): such a key fails every run's
    readiness check and every `rotate-kek`. Keys `kek` opens already are left as they are;
    keys neither KEK opens are left too and reported (re-seal them from their own KEK, or
    retire them). KekMismatch when `old_kek` (from the variable `old_name`) opens none of
    the keys `kek` does not open, and kek_mismatch when `kek` opens none of the keys: it
    is not the keyring's KEK then (most likely the wrong .env), not a few keys left
    behind. One transaction under the keyring lock, like `rotate_kek`; and, like it, only
    between runs (signing.runs.dispatch.reseal_keys_between_runs): which KEK the workers
    hold is not known here, and a worker holding `old_kek` needs these keys as they are.
    """
    with transaction.atomic():
        lock_keyring()
        keys = _live_keys_for_resealing()
        not_opened = _open_each(kek, keys)[1]
        if keys and len(not_opened) == len(keys):
            raise kek_mismatch(not_opened, total=len(keys))
        foreign_kids = set(not_opened)
        foreign = [key for key in keys if key.kid in foreign_kids]
        secrets, left = _open_each(old_kek, foreign)
        if foreign and not secrets:
            raise KekMismatch(
                f"{old_name} does not open {_private_keys(left)} that {sealing.KEK_ENV} "
                "does not open either: it is not the KEK they were sealed under. Set "
                f"{old_name} to that KEK, or if it is lost, take each key out for good with "
                "`manage.py keys retire KID`."
            )
        opened = [key for key in foreign if key.kid in secrets]
        for key in opened:
            key.encrypted_private_key = sealing.seal(kek, key.kid, secrets[key.kid])
        SigningKey.objects.bulk_update(opened, ["encrypted_private_key"], batch_size=1000)
    log.info("keys.resealed", keys=len(opened), left=len(left))
    return Resealed(kids=[key.kid for key in opened], still_sealed_elsewhere=left)


def _live_keys_for_resealing() -> list[SigningKey]:
    """Every key with a private key, by id, its row locked until the transaction ends."""
    columns = ("id", "kid", "encrypted_private_key")
    return list(live_keys().select_for_update().only(*columns).order_by("id"))


def _open_each(kek: bytes, keys: list[SigningKey]) -> tuple[dict[str, bytes], list[str]]:
    """Open each key with the KEK: the secrets by kid of those it opens, and the kids (in
    the keys' order) of those it does not."""
    secrets, not_opened = {}, []
    for key in keys:
        try:
            secrets[key.kid] = sealing.unseal(kek, key.kid, bytes(key.encrypted_private_key))
        except KekMismatch:
            not_opened.append(key.kid)
    return secrets, not_opened


def kek_mismatch(not_opened: list[str], *, total: int) -> KekMismatch:
    """The KekMismatch for SIGNING_KEK not opening the keys `not_opened` (kids, by id)
    among `total`, saying how to fix it: another KEK for all of them (as after a
    rotation), or a keyring sealed under two KEKs. Kids only, nothing secret."""
    name = sealing.KEK_ENV
    if len(not_opened) == total:
        return KekMismatch(
            f"{name} does not open {_private_keys(not_opened)}: it is not the KEK the keys "
            f"are sealed under. Set {name} to that KEK (after `manage.py keys rotate-kek`, "
            f"the {sealing.NEW_KEK_ENV} it was given)."
        )
    return KekMismatch(
        f"{name} does not open {_private_keys(not_opened)}, though it opens the other "
        f"{total - len(not_opened)}: sealed under another KEK. Re-seal under {name} with "
        "`manage.py keys reseal --old-kek-env VAR`, VAR holding that KEK, or if it is lost, "
        "take each key out for good with `manage.py keys retire KID`."
    )


def _private_keys(kids: list[str]) -> str:
    """`the private key of KID`, and how many more: a message names one kid, not all."""
    others = len(kids) - 1
    more = f" nor of {others} other key{'s' if others > 1 else ''}" if others else ""
    return f"the private key of {kids[0]}{more}"


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
    columns = ("kid", "algorithm", "public_key_pem", "encrypted_private_key", "retired_at")
    key = SigningKey.objects.only(*columns).get(pk=key_id, kid=kid)
    if key.retired_at is not None:
        raise KeyRetired(f"{kid} is retired: its sealed private key is erased")
    kek = sealing.kek_from_environment()
    try:
        der = sealing.unseal(kek, key.kid, bytes(key.encrypted_private_key))
    except KekMismatch as error:
        raise KekMismatch(
            f"{error} Give the workers the KEK the keys are sealed under (after `manage.py "
            f"keys rotate-kek`, the {sealing.NEW_KEK_ENV} it was given); `manage.py sign` "
            f"with that {sealing.KEK_ENV} says which keys it does not open."
        ) from None
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
    """Raise a KekError unless the KEK (SIGNING_KEK when not given) opens every key but the
    retired ones (which have no private key left).

    Every key, not the first alone: a key sealed under another KEK would otherwise pass
    here and fail each batch leased to it, in a worker, until the run fails. The
    KekMismatch names the first kid (by id) that does not open, how many more, and how to
    fix it (kek_mismatch); nothing secret.
    """
    if kek is None:
        kek = sealing.kek_from_environment()
    sealed_keys = live_keys().order_by("id").values_list("kid", "encrypted_private_key")
    total, not_opened = 0, []
    for kid, sealed in sealed_keys.iterator(chunk_size=1000):
        total += 1
        if not sealing.opens(kek, kid, bytes(sealed)):
            not_opened.append(kid)
    if not_opened:
        raise kek_mismatch(not_opened, total=total)
