"""Reads of the keyring."""

from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.lookups import IsNull

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


def live_keys() -> QuerySet[SigningKey]:
    """The keys whose private key exists: every key but the retired ones (`keys retire`
    erased theirs), enabled or not."""
    return SigningKey.objects.filter(retired_at=None)


def keys_in_lru_order(queryset: QuerySet[SigningKey]) -> QuerySet[SigningKey]:
    """Rule 4's order: never-used keys first, then the oldest `last_used_at`, ties by id."""
    return queryset.order_by(F("last_used_at").asc(nulls_first=True), "id")


class _Count(Subquery):
    """COUNT(*) of a correlated subquery's rows, 0 when there are none."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) counted)"
    output_field = IntegerField()


def _before_the_outer_key() -> Q:
    """For a key queryset inside a subquery: the key comes before the outer one in rule 4's
    order (never used first, then the oldest `last_used_at`, ties by id)."""
    outer_used, outer_id = OuterRef("last_used_at"), OuterRef("id")
    return (
        (Q(last_used_at=None) & (Q(IsNull(outer_used, False)) | Q(id__lt=outer_id)))
        | Q(last_used_at__lt=outer_used)
        | Q(last_used_at=outer_used, id__lt=outer_id)
    )


def lru_position() -> Case:
    """For a key queryset: the key's place in the order leases take enabled keys (1 first),
    NULL for a disabled key, which no lease takes.

    A correlated count, not a window: a window numbers only the rows left after the
    query's own filter, so the detail page of one key (filtered by kid) would always say 1.
    Counted this way each key's position depends on the keyring alone, whatever else the
    query filters. A key held now keeps its place by its last release; its lease's release
    moves it to the end.
    """
    enabled_before = SigningKey.objects.filter(enabled=True).filter(_before_the_outer_key())
    return Case(
        When(enabled=True, then=_Count(enabled_before.values("id")) + Value(1)),
        default=None,
        output_field=IntegerField(),
    )


def keys_for_display() -> QuerySet[SigningKey]:
    """Keys in the order the next leases take them, with their lease count, whether a lease
    holds them now and their `lru_position`: the enabled keys in LRU order, then the
    disabled ones (in the same order among themselves), which no lease takes.

    The sealed private key is deferred: pages never load it.
    """
    keys = SigningKey.objects.defer("encrypted_private_key").annotate(
        lease_count=Count("leases"),
        held=held_now(),
        lru_position=lru_position(),
    )
    return keys.order_by(F("enabled").desc(), F("last_used_at").asc(nulls_first=True), "id")


def public_jwks() -> dict[str, list[dict[str, str]]]:
    """Every key's public part as a JSON Web Key Set, in LRU order.

    Disabled keys are included: the signatures they made still need verifying.
    """
    keys = keys_in_lru_order(SigningKey.objects.only("kid", "public_key_pem"))
    return {
        "keys": [crypto.public_jwk(crypto.load_public_key(k.public_key_pem), k.kid) for k in keys]
    }
