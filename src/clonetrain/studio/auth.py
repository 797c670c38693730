"""Passwords, sessions and CSRF tokens, from the standard library (hashlib.scrypt, hmac, secrets).

A password is stored as "scrypt$N$r$p$salt$hash" (hex); the session cookie is signed by Starlette's
SessionMiddleware with the studio's secret key (<root>/studio/secret.key, made once, readable by its owner only).
Every POST carries the session's CSRF token (a form field or the X-CSRF-Token header).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    if not password:
        raise ValueError("an empty password is not allowed")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=2**26)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), maxmem=2**26)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


# Checked against when the user name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY = None


def check_login(users: dict, name: str, password: str):
    """The User for a correct name and password, else None (in about the same time either way)."""
    global _DUMMY
    user = users.get(name)
    if user is None:
        _DUMMY = _DUMMY or hash_password("not a password")
        verify_password(password, _DUMMY)
        return None
    return user if verify_password(password, user.password) else None


def secret_key(studio_dir: Path) -> str:
    """The key that signs session cookies: made once (0600), so sessions survive a restart of the studio."""
    path = studio_dir / "secret.key"
    if not path.is_file():
        studio_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def csrf_token(session: dict) -> str:
    """The session's CSRF token (made on first use)."""
    if not session.get(CSRF_FIELD):
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def csrf_ok(session: dict, sent: str | None) -> bool:
    expected = session.get(CSRF_FIELD)
    return bool(expected and sent and hmac.compare_digest(str(expected), str(sent)))
