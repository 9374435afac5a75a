"""Staff accounts of a tenant (the inbox): argon2id password hashes and the account rows. The
ingress uses it for login and user administration, the CLI for a tenant's first admin."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

if TYPE_CHECKING:
    import asyncpg

ROLES = ("admin", "agent")
_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified when the email is unknown, so that a wrong email costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


async def create_user(conn: asyncpg.Connection, tenant_id: uuid.UUID, email: str, name: str,
                      role: str, password: str, language: str = "es", *,
                      password_hash: str | None = None) -> uuid.UUID:
    """Creates the user, or updates name, role and password of an existing one (idempotent seed).
    The connection must be in the tenant's scope. `password_hash`: an argon2 hash of `password`
    made earlier (test fixtures hash once: each hash costs about half a second of CPU)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    return await conn.fetchval(
        """INSERT INTO staff_users (tenant_id, email, name, role, password_hash, language)
           VALUES ($1, lower($2), $3, $4, $5, $6)
           ON CONFLICT (tenant_id, email) DO UPDATE SET name = EXCLUDED.name, role = EXCLUDED.role,
             password_hash = EXCLUDED.password_hash, disabled_at = NULL
           RETURNING id""",
        tenant_id, email, name, role, password_hash or hash_password(password), language,
    )
