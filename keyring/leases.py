"""A lease as it travels: granted (as both backends return it, signing.backends), and named
by a message (LeaseHint)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class GrantedLease:
    """Its fields come in the order the lease SQL returns them."""

    id: int
    key_id: int
    kid: str
    public_key_pem: str
    batch_id: int
    token: int
    acquired_at: datetime
    expires_at: datetime

    def hint(self) -> LeaseHint:
        """The lease as its SigningTriggered names it."""
        return LeaseHint(
            lease_id=self.id,
            token=self.token,
            batch_id=self.batch_id,
            key_id=self.key_id,
            kid=self.kid,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseHint:
    """What a SigningTriggered says about its lease, checked against the database whole: the
    one value a lease travels as into the fenced operations (take-up, heartbeat, store)."""

    lease_id: int
    token: int
    batch_id: int
    key_id: int
    kid: str
