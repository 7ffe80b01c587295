"""Reads of the keyring."""

from django.db.models import Count, Exists, F, OuterRef, QuerySet

from kernel import crypto
from keyring.models import KeyLease, SigningKey


def open_leases() -> QuerySet[KeyLease]:
    return KeyLease.objects.filter(released_at=None)


def held_now() -> Exists:
    """For a key queryset: an open lease holds the key (the leases are the proof)."""
    return Exists(open_leases().filter(key=OuterRef("pk")))


def free_keys() -> QuerySet[SigningKey]:
    """Enabled keys that no open lease holds."""
    return SigningKey.objects.filter(enabled=True).exclude(held_now())


def keys_in_lru_order(queryset: QuerySet[SigningKey]) -> QuerySet[SigningKey]:
    """Rule 4's order: never-used keys first, then the oldest `last_used_at`, ties by id."""
    return queryset.order_by(F("last_used_at").asc(nulls_first=True), "id")


def keys_for_display() -> QuerySet[SigningKey]:
    """Keys in LRU order with their lease count and whether a lease holds them now.

    The sealed private key is deferred: pages never load it.
    """
    return keys_in_lru_order(
        SigningKey.objects.defer("encrypted_private_key").annotate(
            lease_count=Count("leases"),
            held=held_now(),
        )
    )


def public_jwks() -> dict[str, list[dict[str, str]]]:
    """Every key's public part as a JSON Web Key Set, in LRU order.

    Disabled keys are included: the signatures they made still need verifying.
    """
    keys = keys_in_lru_order(SigningKey.objects.only("kid", "public_key_pem"))
    return {
        "keys": [crypto.public_jwk(crypto.load_public_key(k.public_key_pem), k.kid) for k in keys]
    }
