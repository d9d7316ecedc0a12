"""Load-test scenarios: discover each model's signature with GetModelMetadata, then pre-serialize its requests.

A Scenario is one named request whose bytes are built once: Predict at each row count for each model, and
GetModelMetadata for each model (`build_plan`); or the same through the v2 protocol's door, ModelInfer with
raw_input_contents (as tritonclient sends it) and ModelMetadata, discovered with v2 ModelMetadata (`build_v2_plan`).
Input names, dtypes and shapes come from the served signature, so any model
works without hard-coded shapes (iris: features[N,4], digits: pixels[N,8,8,1], ...). Input values are
random in [0, 1) (integers 0..9, strings b"batchwise"): the compute cost of these models does not depend on them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from service import datatypes
from service.api import get_model_metadata_pb2, grpc_service_pb2, grpc_service_pb2_grpc, predict_pb2
from service.client import DEFAULT_SIGNATURE, VARIANT_HEADER, BatchwiseClient, fill_model_spec
from service.rpc.codec import numpy_dtype, to_tensor_proto
from service.rpc.v2.codec import raw_bytes

PREDICT = "/tensorflow.serving.PredictionService/Predict"
GET_MODEL_METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
MODEL_METADATA = "/inference.GRPCInferenceService/ModelMetadata"


@dataclass(frozen=True)
class InputSpec:
    """One signature input: its name, numpy dtype and shape (-1 for unknown dimensions)."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Scenario:
    """One pre-serialized request: the stats entry name, the gRPC method path, the bytes and the call metadata."""

    name: str
    method: str
    payload: bytes
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Plan:
    """Everything a user sends, chosen per call: predicts uniformly, metadata with probability `metadata_ratio`."""

    predicts: tuple[Scenario, ...]
    metadata: tuple[Scenario, ...]
    metadata_ratio: float

    def pick(self, rng: random.Random) -> Scenario:
        """The next request to send."""
        if self.metadata and (not self.predicts or rng.random() < self.metadata_ratio):
            return rng.choice(self.metadata)
        return rng.choice(self.predicts)


def discover_inputs(target: str, model: str, signature: str = "", timeout_s: float = 10.0) -> list[InputSpec]:
    """The inputs of `model`'s `signature` (serving_default when empty), read with GetModelMetadata.

    Raises service.client.ClientError when the call fails, LookupError when the signature does not exist.
    """
    with BatchwiseClient(target, timeout_s=timeout_s) as client:
        _, signature_defs = client.signature_def_map(model)
    found = signature_defs.signature_def.get(signature or DEFAULT_SIGNATURE)
    if found is None:
        raise LookupError(f"model {model!r} has no signature {signature or DEFAULT_SIGNATURE!r}")
    return [
        InputSpec(name, numpy_dtype(info.dtype), tuple(dim.size for dim in info.tensor_shape.dim))
        for name, info in sorted(found.inputs.items())
    ]


def sample_array(spec: InputSpec, rows: int, rng: np.random.Generator) -> np.ndarray:
    """A batch for `spec`: the first dimension is `rows`, other unknown dimensions are 1."""
    shape = tuple(rows if i == 0 else (1 if d < 0 else d) for i, d in enumerate(spec.shape))
    kind = spec.dtype.kind
    if kind == "O":
        return np.full(shape, b"batchwise", dtype=object)
    if kind == "b":
        return rng.random(shape) < 0.5
    if kind in "iu":
        return rng.integers(0, 10, shape).astype(spec.dtype)
    return rng.random(shape).astype(spec.dtype)


def predict_payload(model: str, inputs: Sequence[InputSpec], rows: int, signature: str = "", seed: int = 0) -> bytes:
    """A serialized PredictRequest for `model` with `rows` rows in every input."""
    rng = np.random.default_rng(seed)
    request = predict_pb2.PredictRequest()
    fill_model_spec(request.model_spec, model, None, None, signature)
    for spec in inputs:
        request.inputs[spec.name].CopyFrom(to_tensor_proto(sample_array(spec, rows, rng)))
    return request.SerializeToString()


def metadata_payload(model: str) -> bytes:
    """A serialized GetModelMetadataRequest asking for `model`'s signature_def."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    fill_model_spec(request.model_spec, model, None, None, "")
    return request.SerializeToString()


def build_plan(
    target: str, models: Sequence[str], rows: Sequence[int], *, signature: str = "", variant: str = "",
    metadata_ratio: float = 0.1, seed: int = 0,
) -> Plan:
    """Discover every model's inputs at `target` and pre-serialize its Predict (one per row count) and metadata calls.

    `variant` is sent as `x-batchwise-variant` call metadata on Predict. Raises what discover_inputs raises.
    """
    predict_metadata = ((VARIANT_HEADER, variant),) if variant else ()
    predicts, metadata = [], []
    for model in models:
        inputs = discover_inputs(target, model, signature)
        for count in rows:
            payload = predict_payload(model, inputs, count, signature, seed)
            predicts.append(Scenario(f"Predict {model} rows={count}", PREDICT, payload, predict_metadata))
        metadata.append(Scenario(f"GetModelMetadata {model}", GET_MODEL_METADATA, metadata_payload(model)))
    return Plan(tuple(predicts), tuple(metadata), metadata_ratio)


def discover_v2_inputs(target: str, model: str, timeout_s: float = 10.0) -> list[InputSpec]:
    """The inputs of `model` as the v2 door's ModelMetadata describes them. Raises grpc.RpcError if the call fails."""
    with grpc.insecure_channel(target) as channel:
        stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
        metadata = stub.ModelMetadata(grpc_service_pb2.ModelMetadataRequest(name=model), timeout=timeout_s)
    return [InputSpec(t.name, datatypes.from_v2(t.datatype).numpy, tuple(t.shape)) for t in metadata.inputs]


def v2_infer_payload(model: str, inputs: Sequence[InputSpec], rows: int, seed: int = 0) -> bytes:
    """A serialized ModelInferRequest for `model` with `rows` rows in every input, sent as raw_input_contents."""
    rng = np.random.default_rng(seed)
    request = grpc_service_pb2.ModelInferRequest(model_name=model)
    for spec in inputs:
        array = sample_array(spec, rows, rng)
        row = datatypes.of_numpy(array.dtype)
        request.inputs.add(name=spec.name, datatype=row.v2, shape=array.shape)
        request.raw_input_contents.append(raw_bytes(array, row))
    return request.SerializeToString()


def build_v2_plan(
    target: str, models: Sequence[str], rows: Sequence[int], *, variant: str = "", metadata_ratio: float = 0.1,
    seed: int = 0,
) -> Plan:
    """build_plan's twin for the v2 door: ModelInfer per model and row count, and ModelMetadata per model."""
    infer_metadata = ((VARIANT_HEADER, variant),) if variant else ()
    infers, metadata = [], []
    for model in models:
        inputs = discover_v2_inputs(target, model)
        for count in rows:
            payload = v2_infer_payload(model, inputs, count, seed)
            infers.append(Scenario(f"ModelInfer {model} rows={count}", MODEL_INFER, payload, infer_metadata))
        payload = grpc_service_pb2.ModelMetadataRequest(name=model).SerializeToString()
        metadata.append(Scenario(f"ModelMetadata {model}", MODEL_METADATA, payload))
    return Plan(tuple(infers), tuple(metadata), metadata_ratio)


def parse_csv(text: str) -> list[str]:
    """"a, b,,c" -> ["a", "b", "c"]."""
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_rows(text: str) -> list[int]:
    """"1,8,32" -> [1, 8, 32]; raises ValueError for non-positive or non-integer counts."""
    counts = [int(part) for part in parse_csv(text)]
    if not counts or min(counts) < 1:
        raise ValueError(f"rows must be positive integers, got {text!r}")
    return counts
