"""Named failures of the keyring, each safe to show to a user as it is."""


class KekError(Exception):
    """The key-encryption key cannot open the keyring; the message says how to fix it."""


class KekMissing(KekError):
    """SIGNING_KEK is not set."""


class KekMalformed(KekError):
    """SIGNING_KEK is set but is not 32 bytes of URL-safe base64."""


class KekMismatch(KekError):
    """SIGNING_KEK is well formed but is not the key the private keys were sealed with."""


class KeyRetired(Exception):
    """The key was retired: it is never enabled again, and its sealed private key is erased
    from the keyring, so nothing here opens it.

    Not a KekError: the KEK is not at fault, and what a KekError means to its callers (a
    worker gives its batch back and its message up; a start is refused until the KEK is
    fixed) does not fit. Each caller that can meet it says what it means there."""


class KeyHeld(Exception):
    """A lease holds the key now, so it cannot be retired yet."""


class KeyMismatch(Exception):
    """A sealed private key does not belong to the public key stored beside it."""
