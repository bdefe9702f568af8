"""Server-issued, signed anonymous client ids, and their keyed hashes.

An id is `<kid>.<nonce>.<sig>`: kid names the secret that signed it (8 hex),
nonce is 16 random bytes and sig a truncated HMAC-SHA256, both base64url.
Ids signed with CLIENT_ID_SECRET_PREVIOUS stay valid during a rotation's grace
period. Only HMAC(secret, nonce) is ever stored, never the id itself.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

_ID_RE = re.compile(r"[0-9a-f]{8}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{22}")
MAX_ID_LENGTH = 64


class InvalidClientId(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ClientIds:
    def __init__(self, secret: str, previous: str | None = None):
        self._keys: dict[str, bytes] = {}
        for s in (secret, previous):
            if s:
                key = s.encode()
                self._keys.setdefault(hashlib.sha256(key).hexdigest()[:8], key)
        self._current_kid = hashlib.sha256(secret.encode()).hexdigest()[:8]

    def issue(self) -> str:
        body = f"{self._current_kid}.{_b64(secrets.token_bytes(16))}"
        return f"{body}.{self._sign(self._keys[self._current_kid], body)}"

    def hash(self, client_id: object) -> bytes:
        """Verify a client id and return its 32-byte keyed hash."""
        if not isinstance(client_id, str):
            raise InvalidClientId(f"clientId must be a string, not {type(client_id).__name__}")
        if len(client_id) > MAX_ID_LENGTH or not _ID_RE.fullmatch(client_id):
            raise InvalidClientId("clientId is malformed: use the id the server issued, or send none to get one")
        kid, nonce, sig = client_id.split(".")
        key = self._keys.get(kid)
        if key is None or not hmac.compare_digest(sig, self._sign(key, f"{kid}.{nonce}")):
            raise InvalidClientId("clientId has no valid signature: use the id the server issued, or send none to get one")
        return hmac.new(key, b"hash:" + nonce.encode(), hashlib.sha256).digest()

    @staticmethod
    def _sign(key: bytes, body: str) -> str:
        return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest()[:16])
