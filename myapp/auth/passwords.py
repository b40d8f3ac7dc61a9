"""Password hashing: argon2id through argon2-cffi, salted and slow on purpose.

The cost is OWASP's recommended minimum for argon2id (19 MiB of memory, two
passes, one lane). Its RFC 9106 profile (64 MiB, three passes, four lanes)
took about a second per sign-in on a busy two-core machine, with up to
sixteen request threads able to hash at once; one lane also keeps a hash on
the request's own thread. Hashes store their parameters, so raising these
later upgrades each account at its next sign-in (:func:`needs_rehash`).
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

PASSWORD_MIN = 12
# Long passphrases are welcome; megabytes of "password" are not worth hashing.
PASSWORD_MAX = 1024

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# Verified against when no account has the email typed, so that a sign-in
# takes as long whether the address exists or not.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; with no hash, spend the same time and say no."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def random_password() -> str:
    """A password for an account nobody chose one for (the first admin)."""
    return secrets.token_urlsafe(18)  # 24 characters, 144 bits
