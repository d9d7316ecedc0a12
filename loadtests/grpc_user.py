"""Locust's gRPC pattern: a User whose channel carries a client interceptor that fires locust request events.

NOTE: imported from a locustfile only. Locust has monkey-patched the standard library with gevent by then;
`init_gevent()` below makes grpcio cooperate with gevent and must run before any gRPC object exists, so this
module calls it at import time. Requests are sent as pre-serialized bytes (no per-call protobuf work).
"""

from __future__ import annotations

import time
from collections import namedtuple

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User
from locust.exception import LocustError

grpc_gevent.init_gevent()

NAME_KEY = "x-locust-name"  # carries the stats entry name to the interceptor; never sent to the server
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class GrpcStatusError(Exception):
    """A non-OK gRPC status, as locust records it: one failure entry per code and message."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code


class _CallDetails(
    namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Times every unary call and fires `environment.events.request` with its outcome.

    The entry name is the `x-locust-name` call metadata (removed before the call goes out), else the method.
    Failed calls are reported with a GrpcStatusError; the call's outcome is returned unchanged.
    """

    def __init__(self, environment) -> None:
        self._environment = environment

    def intercept_unary_unary(self, continuation, client_call_details, request):
        name, details = _pop_name(client_call_details)
        start = time.perf_counter()
        outcome = continuation(details, request)
        exception, length = None, 0
        try:
            response = outcome.result()
            length = len(response) if isinstance(response, bytes) else response.ByteSize()
        except grpc.RpcError as exc:
            exception = GrpcStatusError(exc.code(), exc.details() or "")
        self._environment.events.request.fire(
            request_type="grpc", name=name, response_time=(time.perf_counter() - start) * 1000,
            response_length=length, exception=exception, context={},
        )
        return outcome


def _pop_name(details: grpc.ClientCallDetails) -> tuple[str, grpc.ClientCallDetails]:
    metadata = list(details.metadata or ())
    names = [value for key, value in metadata if key == NAME_KEY]
    if not names:
        return details.method, details
    kept = [(key, value) for key, value in metadata if key != NAME_KEY]
    stripped = _CallDetails(details.method, details.timeout, kept or None, details.credentials,
                            details.wait_for_ready, details.compression)
    return names[0], stripped


class GrpcUser(User):
    """An abstract locust User with an intercepted plaintext channel to `host` ("HOST:PORT", optional grpc://).

    `raw_method(path)` returns a callable that sends bytes and returns bytes. Raises LocustError without a host.
    """

    abstract = True

    def __init__(self, environment) -> None:
        super().__init__(environment)
        if not self.host:
            raise LocustError("set the target with --host HOST:PORT")
        self.target = self.host.removeprefix("grpc://")
        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        self._raw_channel = grpc.insecure_channel(self.target, options=options)
        self.channel = grpc.intercept_channel(self._raw_channel, LocustInterceptor(environment))

    def raw_method(self, path: str) -> grpc.UnaryUnaryMultiCallable:
        """A stub for `path` ("/package.Service/Method") with no serializers: bytes in, bytes out."""
        return self.channel.unary_unary(path)

    def on_stop(self) -> None:
        self._raw_channel.close()
