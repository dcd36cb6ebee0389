"""Basic authentication against bcrypt htpasswd entries (what `htpasswd -B` writes)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
from collections.abc import Mapping
from pathlib import Path

from ecr_backup.errors import InvalidInputError

REALM = "ecr-backup"
CHALLENGE = ("WWW-Authenticate", f'Basic realm="{REALM}"')
_BCRYPT_PREFIXES = ("$2y$", "$2b$", "$2a$")
# bcrypt is slow on purpose (~0.1 s a check): a client sends its credentials with every
# request, so a pair once checked is remembered (as a salted hash, never in clear).
_REMEMBERED_MAX = 1024


class Htpasswd:
    """Users and their bcrypt hashes; `check` answers whether a Basic header is one of them."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        if not users:
            raise InvalidInputError("the htpasswd file names no users")
        self._users = dict(users)
        self._remembered: set[bytes] = set()
        self._salt = hashlib.sha256(b"".join(self._users.values())).digest()
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, text: str, source: str = "htpasswd") -> Htpasswd:
        users: dict[str, bytes] = {}
        for number, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user:
                raise InvalidInputError(f"{source} line {number}: expected USER:HASH")
            if not hashed.startswith(_BCRYPT_PREFIXES):
                raise InvalidInputError(
                    f"{source} line {number}: {user}'s password is not a bcrypt hash "
                    "(write the file with `htpasswd -B`)"
                )
            users[user] = hashed.encode()
        return cls(users)

    @classmethod
    def load(cls, path: str) -> Htpasswd:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise InvalidInputError(f"cannot read --htpasswd {path}: {e.strerror}") from e
        return cls.parse(text, path)

    def check(self, authorization: str | None) -> bool:
        credentials = _basic(authorization)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._users.get(user)
        if hashed is None:
            return False
        key = hmac.new(self._salt, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:
            if key in self._remembered:
                return True
        import bcrypt  # only a server with users needs it

        try:
            good = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False  # a malformed hash matches nothing
        if good:
            with self._lock:
                if len(self._remembered) >= _REMEMBERED_MAX:
                    self._remembered.clear()
                self._remembered.add(key)
        return good


def _basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None
