"""Bearer-token auth for the gRPC port: a grpc.aio server interceptor with constant-time token checks.

Every method needs `authorization: Bearer <token>` in the call metadata, except the gRPC health
service, so that load balancers and Kubernetes probes work without a secret. Deny by default:
a service added later is protected without anyone remembering to list it.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from service.rpc.handlers import refusing_handler
from service.rpc.pipeline import StageInterceptor
from service.tokens import TokenVerifier, load_tokens

__all__ = ["TokenAuthInterceptor", "load_tokens"]

AUTH_HEADER = "authorization"
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


class TokenAuthInterceptor(StageInterceptor):
    """Refuses calls without a valid bearer token with UNAUTHENTICATED, before their message is parsed.

    Takes the accepted tokens (at least one; ValueError otherwise); service.tokens.TokenVerifier
    checks them in constant time.
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        self._verifier = TokenVerifier(tokens)

    def apply(self, handler: grpc.RpcMethodHandler | None, handler_call_details: grpc.HandlerCallDetails):
        """`handler` if the call carries an accepted token (or needs none), else a refusing one; a pipeline stage."""
        method = handler_call_details.method or ""
        if method.startswith(EXEMPT_PREFIXES):
            return handler
        metadata = handler_call_details.invocation_metadata or ()
        value = next((v for k, v in metadata if k == AUTH_HEADER), None)
        problem = self._verifier.problem(value)
        if problem is None:
            return handler
        return refusing_handler(handler, grpc.StatusCode.UNAUTHENTICATED, problem)
