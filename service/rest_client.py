"""Light client for TensorFlow Serving's REST API (port 8501): stdlib http.client + json + numpy, no TensorFlow.

The same calls as BatchwiseClient (service/client.py), over TF Serving's documented REST endpoints:
  predict   POST /v1/models/{m}[/versions/{v} | /labels/{l}]:predict   (columnar "inputs" -> "outputs")
  metadata  GET  /v1/models/{m}[/versions/{v} | /labels/{l}]/metadata
  status    GET  /v1/models/{m}[/versions/{v}]
Failures raise ClientError with the gRPC status name that matches the HTTP status (404 -> NOT_FOUND,
400 -> INVALID_ARGUMENT, ...) and the server's `{"error": ...}` text, so callers and the CLI treat
both transports alike. Works against Batchwise and against TF Serving itself.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from service.api import types_pb2
from service.client import DEFAULT_SIGNATURE, VARIANT_HEADER, ClientError, Prediction
from service.errors import InvalidArgument
from service.rpc.codec import numpy_dtype

DEFAULT_REST_TARGET = "http://127.0.0.1:8501"
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
# The gRPC status each HTTP status stands for (TF Serving's REST layer maps them the other way).
STATUS_CODES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED", 409: "ABORTED", 413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip
STALE_CONNECTION_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def is_rest_target(target: str) -> bool:
    """True for http:// and https:// URLs, which the CLI sends to the REST client."""
    return target.startswith(("http://", "https://"))


class RestClient:
    """A blocking TF Serving REST client over one keep-alive HTTP/1.1 connection.

    `base_url` is http://host:port or https://host:port (https with `ca_cert`, and with
    `client_cert`/`client_key` for mutual TLS; a bare host:port means http, or https when a TLS
    file is given). REST predict replies carry no model spec, so predict asks for the metadata
    first: it names the outputs, their dtypes and the version that was current (the version
    reported is that one unless you ask for a version). output_filter is applied on this side,
    since TF Serving's REST API has none. Raises ClientError for non-2xx replies and transport
    failures (UNAVAILABLE, DEADLINE_EXCEEDED) and InvalidArgument for inputs it cannot encode.
    NOTE: thread-safe; calls from several threads take turns on the one connection.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_REST_TARGET,
        *,
        timeout_s: float = 10.0,
        token: str | None = None,
        ca_cert: Path | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        tls_server_name: str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        tls_files = ca_cert is not None or client_cert is not None or client_key is not None
        url = urlsplit(base_url if is_rest_target(base_url) else f"{'https' if tls_files else 'http'}://{base_url}")
        if not url.hostname:
            raise ValueError(f"target {base_url!r}: expected http[s]://host:port")
        self.timeout_s = timeout_s
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._max_response_bytes = max_response_bytes
        port = url.port or (443 if url.scheme == "https" else 80)
        context = _tls_context(ca_cert, client_cert, client_key) if url.scheme == "https" else None
        self._open = lambda: _connection(url.hostname, port, context, tls_server_name, self.timeout_s)
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (the next call opens a new one)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def predict(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        output_filter: Iterable[str] = (),
        variant: str | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, dict[str, np.ndarray]]:
        """POST :predict; return (the version that served it, {output name: ndarray})."""
        result = self.predict_detailed(
            model,
            inputs,
            version=version,
            label=label,
            signature=signature,
            output_filter=output_filter,
            variant=variant,
            timeout_s=timeout_s,
        )
        return result.version, result.outputs

    def predict_detailed(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray],
        *,
        version: int | None = None,
        label: str | None = None,
        signature: str = "",
        output_filter: Iterable[str] = (),
        variant: str | None = None,
        timeout_s: float | None = None,
    ) -> Prediction:
        """POST :predict with the columnar format; return a Prediction with outputs cast to the signature's dtypes."""
        body: dict[str, Any] = {"inputs": {name: encode_tensor(name, value) for name, value in inputs.items()}}
        if signature:
            body["signature_name"] = signature
        meta = self.metadata(model, version=version, label=label, timeout_s=timeout_s)
        name = signature or DEFAULT_SIGNATURE
        outputs_spec = meta["signature_def"].get(name, {}).get("outputs", {})
        headers = {VARIANT_HEADER: variant} if variant else {}
        reply = self._request("POST", f"{model_path(model, version, label)}:predict", body, timeout_s, headers)
        outputs = decode_outputs(reply, outputs_spec)
        wanted = list(output_filter)
        if wanted:
            missing = [w for w in wanted if w not in outputs]
            if missing:
                raise ClientError("INVALID_ARGUMENT", f"output_filter names unknown outputs {missing}")
            outputs = {w: outputs[w] for w in wanted}
        return Prediction(model, version if version is not None else meta["model_spec"]["version"], name, outputs)

    def metadata(
        self, model: str, *, version: int | None = None, label: str | None = None, timeout_s: float | None = None
    ) -> dict:
        """GET .../metadata as {"model_spec": {"name", "version": int}, "signature_def": {name: SignatureDef JSON}}:
        the same shape as BatchwiseClient.metadata."""
        reply = self._request("GET", f"{model_path(model, version, label)}/metadata", None, timeout_s)
        try:
            spec, defs = reply["model_spec"], reply["metadata"]["signature_def"]
            return {"model_spec": {"name": spec["name"], "version": int(spec["version"])}, **defs}
        except (KeyError, TypeError, ValueError) as exc:
            raise ClientError("INTERNAL", f"the metadata reply is not TF Serving's shape (missing {exc})") from None

    def input_dtypes(
        self, model: str, *, signature: str = "", version: int | None = None, label: str | None = None
    ) -> dict[str, np.dtype]:
        """The numpy dtype of every input of `signature` (serving_default when empty), from the metadata."""
        found = self.metadata(model, version=version, label=label)["signature_def"].get(signature or DEFAULT_SIGNATURE)
        return (
            {}
            if found is None
            else {name: dtype_of_tensor_info(info) for name, info in found.get("inputs", {}).items()}
        )

    def status(self, model: str, *, version: int | None = None, timeout_s: float | None = None) -> dict:
        """GET the model status, shaped like BatchwiseClient.status (integer versions)."""
        reply = self._request("GET", model_path(model, version, None), None, timeout_s)
        entries = reply.get("model_version_status", []) if isinstance(reply, dict) else []
        return {"model_version_status": [{**entry, "version": int(entry["version"])} for entry in entries]}

    def _request(
        self,
        method: str,
        path: str,
        body: object,
        timeout_s: float | None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Any:
        payload = None if body is None else json.dumps(body).encode("utf-8")
        headers = {**self._headers, **(extra_headers or {})}
        with self._lock:
            status, data = self._exchange(method, path, payload, headers, timeout_s)
        try:
            document = json.loads(data) if data else {}
        except ValueError:
            document = {"error": data[:200].decode("utf-8", "replace")}
        if status >= 300:
            message = document.get("error", "") if isinstance(document, dict) else ""
            raise ClientError(
                STATUS_CODES.get(status, "INTERNAL" if status >= 500 else "UNKNOWN"), message or f"HTTP {status}"
            )
        return document

    def _exchange(self, method: str, path: str, payload: bytes | None, headers: dict, timeout_s: float | None):
        """One request/response on the kept-alive connection; a connection the server closed while idle is
        replaced once (requests here have no side effects). NOTE: call with self._lock held."""
        for attempt in (0, 1):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._open()
            self._conn.timeout = self.timeout_s if timeout_s is None else timeout_s
            if self._conn.sock is not None:
                self._conn.sock.settimeout(self._conn.timeout)
            try:
                self._conn.request(method, path, body=payload, headers=headers)
                response = self._conn.getresponse()
                data = response.read(self._max_response_bytes + 1)
            except STALE_CONNECTION_ERRORS as exc:
                self.close_locked()
                if reused and attempt == 0:
                    continue
                raise ClientError("UNAVAILABLE", f"connection lost: {exc}") from None
            except TimeoutError:
                self.close_locked()
                raise ClientError("DEADLINE_EXCEEDED", "no reply within the deadline") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close_locked()
                raise ClientError("UNAVAILABLE", f"cannot reach the server: {exc}") from None
            if len(data) > self._max_response_bytes:
                self.close_locked()
                raise ClientError("RESOURCE_EXHAUSTED", f"reply larger than {self._max_response_bytes} bytes")
            if response.will_close:
                self.close_locked()
            return response.status, data
        raise AssertionError("unreachable")

    def close_locked(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def model_path(model: str, version: int | None, label: str | None) -> str:
    """/v1/models/{m}[/versions/{v} | /labels/{l}]; ValueError if both a version and a label are given."""
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None:
        return f"{path}/versions/{int(version)}"
    return f"{path}/labels/{quote(label, safe='')}" if label is not None else path


def encode_tensor(name: str, value: np.ndarray) -> object:
    """An ndarray as TF Serving REST JSON: nested lists; strings as {"b64": ...}; raises InvalidArgument."""
    array = np.asarray(value)
    if array.dtype.kind in "OSU":
        encode = np.frompyfunc(lambda v: {"b64": base64.b64encode(_as_bytes(name, v)).decode("ascii")}, 1, 1)
        encoded = encode(array)
        return encoded.tolist() if isinstance(encoded, np.ndarray) else encoded
    if array.dtype.kind not in "biuf":
        raise InvalidArgument(f"input {name!r}: dtype {array.dtype} cannot be sent as JSON")
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    return array.tolist()


def decode_outputs(reply: object, outputs_spec: Mapping[str, dict]) -> dict[str, np.ndarray]:
    """The "outputs" of a columnar predict reply as ndarrays of the signature's dtypes.

    TF Serving leaves out the name when the signature has a single output.
    """
    if not isinstance(reply, dict) or "outputs" not in reply:
        raise ClientError("INTERNAL", 'the predict reply has no "outputs"')
    outputs = reply["outputs"]
    names = list(outputs_spec)
    if not isinstance(outputs, dict) or (len(names) == 1 and set(outputs) == {"b64"}):
        if len(names) != 1:
            raise ClientError("INTERNAL", f"an unnamed output, but the signature has outputs {names}")
        outputs = {names[0]: outputs}
    return {name: _to_array(value, dtype_of_tensor_info(outputs_spec.get(name, {}))) for name, value in outputs.items()}


def _to_array(value: object, dtype: np.dtype | None) -> np.ndarray:
    if dtype is not None and dtype.kind == "O":
        decoded = np.frompyfunc(_string_value, 1, 1)(np.array(value, dtype=object))
        return decoded if isinstance(decoded, np.ndarray) else np.array(decoded, dtype=object)  # a scalar
    return np.array(value, dtype=dtype)


def _string_value(value: object) -> bytes:
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    return str(value).encode("utf-8")


def dtype_of_tensor_info(info: dict) -> np.dtype | None:
    """numpy dtype of a TensorInfo JSON ({"dtype": "DT_FLOAT", ...}); None when absent or unknown."""
    try:
        return numpy_dtype(types_pb2.DataType.Value(info["dtype"]))
    except (KeyError, ValueError, InvalidArgument):
        return None


def _as_bytes(name: str, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise InvalidArgument(f"input {name!r}: expected bytes or str in a string tensor, got {type(value).__name__}")


def _tls_context(ca_cert: Path | None, client_cert: Path | None, client_key: Path | None) -> ssl.SSLContext:
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key must be given together")
    context = ssl.create_default_context(cafile=str(ca_cert) if ca_cert else None)
    if client_cert is not None and client_key is not None:
        context.load_cert_chain(str(client_cert), str(client_key))
    return context


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS whose certificate check expects `server_name` instead of the host it dials."""

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext, server_name: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls_context, self._server_name = context, server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls_context.wrap_socket(sock, server_hostname=self._server_name)


def _connection(
    host: str, port: int, context: ssl.SSLContext | None, server_name: str | None, timeout_s: float
) -> http.client.HTTPConnection:
    if context is None:
        return http.client.HTTPConnection(host, port, timeout=timeout_s)
    return _HTTPSConnection(host, port, context=context, server_name=server_name or host, timeout=timeout_s)
