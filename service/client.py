"""Light client for Batchwise and TF Serving: grpcio + protobuf + numpy only, never TensorFlow.

API:  with BatchwiseClient("127.0.0.1:8500") as client:
          version, outputs = client.predict("digits", {"pixels": batch})
CLI:  python -m service.client predict --model digits --input 'pixels=[[...]]'   (console script batchwise-client)
      python -m service.client metadata --model digits
      python -m service.client status --model digits
Results are printed as one line of JSON; failures as `error: <GRPC_CODE>: <message>` on stderr, exit status 1.
The importable API lives here; argument parsing and JSON/.npy handling live in service/client_cli.py.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import json_format

from service.api import (
    error_codes_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from service.errors import InvalidArgument
from service.rpc.codec import numpy_dtype, to_ndarray, to_tensor_proto
from service.rpc.headers import VARIANT_HEADER
from service.runtime.base import DEFAULT_SIGNATURE

DEFAULT_TARGET = "127.0.0.1:8500"
SIGNATURE_DEF = "signature_def"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ClientError(Exception):
    """A failed call. `code` is the gRPC status name (e.g. "NOT_FOUND"), `message` the server's details."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Prediction:
    """What Predict returned: the model, version and signature that served it, and decoded outputs."""

    model: str
    version: int
    signature: str
    outputs: dict[str, np.ndarray]


class BatchwiseClient:
    """A blocking client over one gRPC channel to a Batchwise (or TF Serving) server.

    Takes the target, a default per-call timeout, an optional bearer token, and optional TLS files
    (`ca_cert` alone for TLS, plus `client_cert`/`client_key` for mutual TLS). Calls raise
    ClientError for any non-OK status and InvalidArgument for inputs that cannot be encoded.
    NOTE: thread-safe (gRPC channels are); use it as a context manager or call close().
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout_s: float = 10.0,
        token: str | None = None,
        ca_cert: Path | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        tls_server_name: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.timeout_s = timeout_s
        self._token = token
        self._max_elements = max_message_bytes  # an honest server sends at least one byte per element
        self._channel = open_channel(
            target, ca_cert=ca_cert, client_cert=client_cert, client_key=client_key,
            tls_server_name=tls_server_name, max_message_bytes=max_message_bytes,
        )
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def __enter__(self) -> BatchwiseClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel; in-flight calls are cancelled."""
        self._channel.close()

    def predict(
        self, model: str, inputs: Mapping[str, np.ndarray], *, version: int | None = None, label: str | None = None,
        signature: str = "", output_filter: Iterable[str] = (), variant: str | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, dict[str, np.ndarray]]:
        """Run Predict; return (the version that served it, {output name: ndarray})."""
        result = self.predict_detailed(
            model, inputs, version=version, label=label, signature=signature,
            output_filter=output_filter, variant=variant, timeout_s=timeout_s,
        )
        return result.version, result.outputs

    def predict_detailed(
        self, model: str, inputs: Mapping[str, np.ndarray], *, version: int | None = None, label: str | None = None,
        signature: str = "", output_filter: Iterable[str] = (), variant: str | None = None,
        timeout_s: float | None = None,
    ) -> Prediction:
        """Run Predict; return a Prediction with the served model spec and the decoded outputs."""
        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        fill_model_spec(request.model_spec, model, version, label, signature)
        for name, value in inputs.items():
            try:
                request.inputs[name].CopyFrom(to_tensor_proto(np.asarray(value)))
            except InvalidArgument as exc:
                raise InvalidArgument(f"input {name!r}: {exc.message}") from None
        response = self._call(self._predictions.Predict, request, timeout_s, variant)
        outputs = {name: to_ndarray(t, name, max_elements=self._max_elements) for name, t in response.outputs.items()}
        spec = response.model_spec
        return Prediction(spec.name or model, spec.version.value, spec.signature_name or signature, outputs)

    def signature_def_map(
        self, model: str, *, version: int | None = None, label: str | None = None, timeout_s: float | None = None
    ) -> tuple[model_pb2.ModelSpec, get_model_metadata_pb2.SignatureDefMap]:
        """GetModelMetadata; return the served ModelSpec and the unpacked SignatureDefMap."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[SIGNATURE_DEF])
        fill_model_spec(request.model_spec, model, version, label, "")
        response = self._call(self._predictions.GetModelMetadata, request, timeout_s, None)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        if SIGNATURE_DEF not in response.metadata or not response.metadata[SIGNATURE_DEF].Unpack(signature_defs):
            raise ClientError("INTERNAL", f"the metadata response holds no {SIGNATURE_DEF} of type SignatureDefMap")
        return response.model_spec, signature_defs

    def metadata(
        self, model: str, *, version: int | None = None, label: str | None = None, timeout_s: float | None = None
    ) -> dict:
        """GetModelMetadata as JSON-ready data: {"model_spec": {...}, "signature_def": {name: SignatureDef JSON}}.

        SignatureDefs use protobuf's JSON mapping with proto field names (as TF Serving's REST API
        does), so 64-bit integers such as dimension sizes are strings.
        """
        spec, signature_defs = self.signature_def_map(model, version=version, label=label, timeout_s=timeout_s)
        as_json = json_format.MessageToDict(signature_defs, preserving_proto_field_name=True)
        return {"model_spec": {"name": spec.name, "version": spec.version.value}, **as_json}

    def input_dtypes(
        self, model: str, *, signature: str = "", version: int | None = None, label: str | None = None
    ) -> dict[str, np.dtype]:
        """The numpy dtype of every input of `signature` (serving_default when empty), from GetModelMetadata."""
        _, signature_defs = self.signature_def_map(model, version=version, label=label)
        found = signature_defs.signature_def.get(signature or DEFAULT_SIGNATURE)
        if found is None:
            return {}
        return {name: numpy_dtype(info.dtype) for name, info in found.inputs.items()}

    def status(self, model: str, *, version: int | None = None, timeout_s: float | None = None) -> dict:
        """GetModelStatus as JSON-ready data, shaped like TF Serving's REST reply (with integer versions)."""
        request = get_model_status_pb2.GetModelStatusRequest()
        fill_model_spec(request.model_spec, model, version, None, "")
        response = self._call(self._models.GetModelStatus, request, timeout_s, None)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return {"model_version_status": [
            {
                "version": entry.version,
                "state": state_name(entry.state),
                "status": {
                    "error_code": error_codes_pb2.Code.Name(entry.status.error_code),
                    "error_message": entry.status.error_message,
                },
            }
            for entry in response.model_version_status
        ]}

    def _call(self, method, request, timeout_s: float | None, variant: str | None):
        metadata = []
        if self._token:
            metadata.append(("authorization", f"Bearer {self._token}"))
        if variant:
            metadata.append((VARIANT_HEADER, variant))
        try:
            return method(request, timeout=self.timeout_s if timeout_s is None else timeout_s, metadata=metadata)
        except grpc.RpcError as exc:
            raise ClientError(exc.code().name, exc.details() or "") from None


def open_channel(
    target: str, *, ca_cert: Path | None = None, client_cert: Path | None = None, client_key: Path | None = None,
    tls_server_name: str | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> grpc.Channel:
    """A plaintext channel, or TLS when any TLS file is given; raises ValueError for half a client key pair."""
    options: list[tuple[str, object]] = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]
    if ca_cert is None and client_cert is None and client_key is None:
        return grpc.insecure_channel(target, options=options)
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key must be given together")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_cert.read_bytes() if ca_cert else None,
        private_key=client_key.read_bytes() if client_key else None,
        certificate_chain=client_cert.read_bytes() if client_cert else None,
    )
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    return grpc.secure_channel(target, credentials, options=options)


def fill_model_spec(spec: model_pb2.ModelSpec, model: str, version: int | None, label: str | None, signature: str):
    """Fill a ModelSpec; version and label are exclusive (ValueError if both are given)."""
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    spec.name = model
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label
    if signature:
        spec.signature_name = signature


def main(argv: list[str] | None = None) -> int:
    """The `batchwise-client` command (see service/client_cli.py); returns the exit status."""
    from service.client_cli import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
