"""Bearer tokens, transport-free: load the accepted ones from the settings and check a presented header.

Both doors use it: the gRPC interceptor (service/rpc/auth.py) with the `authorization` metadata,
the HTTP server (service/http/) with the `Authorization` header.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

from service.settings import SecuritySettings

SCHEME = "bearer"


def load_tokens(security: SecuritySettings) -> list[str]:
    """The accepted tokens: `auth_tokens` plus the lines of `auth_token_file` (blank and # lines skipped).

    Raises ValueError for a token with whitespace, or a token file that holds no token (auth
    would then be configured but would refuse everyone, which is surely a deployment mistake);
    OSError if the file cannot be read.
    """
    tokens = [t.strip() for t in security.auth_tokens]
    if security.auth_token_file is not None:
        from_file = _read_token_file(security.auth_token_file)
        if not from_file:
            raise ValueError(f"security.auth_token_file {security.auth_token_file} holds no token")
        tokens.extend(from_file)
    for token in tokens:
        if not token or any(c.isspace() for c in token):
            raise ValueError("auth tokens must be non-empty and contain no whitespace")
    return tokens


def _read_token_file(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class TokenVerifier:
    """Checks `Bearer <token>` values against the accepted tokens (at least one; ValueError otherwise).

    Tokens are kept only as SHA-256 digests and every presented token is compared with every digest
    using hmac.compare_digest, so neither the match position nor the token length shows in timing.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = [_digest(token) for token in tokens]
        if not self._digests:
            raise ValueError("TokenVerifier needs at least one token")

    def problem(self, value: str | bytes | None, where: str = "metadata") -> str | None:
        """None if `value` (the authorization header or metadata, None if absent) carries an accepted
        token, else what is wrong (never echoing the token); `where` names the carrier in the message."""
        if value is None:
            return f"missing bearer token: send {where} 'authorization: Bearer <token>'"
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != SCHEME or not token.strip():
            return f"malformed authorization {where}: expected 'Bearer <token>'"
        presented = _digest(token.strip())
        matched = False
        for digest in self._digests:  # no early exit: the time does not depend on which token matched
            matched |= hmac.compare_digest(presented, digest)
        return None if matched else "invalid bearer token"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
