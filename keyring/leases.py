"""A lease just granted, as both keyrings return it: PostgreSQL's lease functions and
embedded mode's (keyring.sqlite)."""

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
