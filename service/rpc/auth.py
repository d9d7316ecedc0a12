"""Bearer-token auth for the gRPC port: a grpc.aio server interceptor with constant-time token checks.

Every method needs `authorization: Bearer <token>` in the call metadata, except the gRPC health
service, so that load balancers and Kubernetes probes work without a secret. Deny by default:
a service added later is protected without anyone remembering to list it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

import grpc

from service.rpc.handlers import refusing_handler
from service.rpc.pipeline import StageInterceptor
from service.settings import SecuritySettings

AUTH_HEADER = "authorization"
SCHEME = "bearer"
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


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


class TokenAuthInterceptor(StageInterceptor):
    """Refuses calls without a valid bearer token with UNAUTHENTICATED, before their message is parsed.

    Takes the accepted tokens (at least one; ValueError otherwise). Tokens are kept only as
    SHA-256 digests and every presented token is compared with every digest using
    hmac.compare_digest, so neither the match position nor the token length shows in timing.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        self._digests = [_digest(token) for token in tokens]
        if not self._digests:
            raise ValueError("TokenAuthInterceptor needs at least one token")

    def apply(self, handler: grpc.RpcMethodHandler | None, handler_call_details: grpc.HandlerCallDetails):
        """`handler` if the call carries an accepted token (or needs none), else a refusing one; a pipeline stage."""
        method = handler_call_details.method or ""
        if method.startswith(EXEMPT_PREFIXES):
            return handler
        problem = self._problem(handler_call_details.invocation_metadata or ())
        if problem is None:
            return handler
        return refusing_handler(handler, grpc.StatusCode.UNAUTHENTICATED, problem)

    def _problem(self, metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
        """None if the metadata carries an accepted token, else what is wrong (never echoing the token)."""
        value = next((v for k, v in metadata if k == AUTH_HEADER), None)
        if value is None:
            return "missing bearer token: send metadata 'authorization: Bearer <token>'"
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != SCHEME or not token.strip():
            return "malformed authorization metadata: expected 'Bearer <token>'"
        presented = _digest(token.strip())
        matched = False
        for digest in self._digests:  # no early exit: the time does not depend on which token matched
            matched |= hmac.compare_digest(presented, digest)
        return None if matched else "invalid bearer token"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
