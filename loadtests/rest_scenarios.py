"""REST load-test scenarios: discover each model's signature over TF Serving's REST API, pre-serialize JSON bodies.

The REST twin of scenarios.py. Predict bodies use TF Serving's row format (`{"instances": [...]}`, the one
most TF Serving clients send), built once per model and row count with the same sample values as the gRPC
scenarios, so the two protocols do the same work per request. Metadata is a GET of `.../metadata`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scenarios import InputSpec, Plan, sample_array

from service.client import DEFAULT_SIGNATURE, VARIANT_HEADER
from service.rest_client import RestClient, dtype_of_tensor_info, model_path

JSON_HEADERS = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class RestScenario:
    """One pre-built REST request: the stats entry name, the HTTP method and path, the body and the headers."""

    name: str
    method: str
    path: str
    body: bytes | None
    headers: tuple[tuple[str, str], ...] = ()


def discover_rest_inputs(base_url: str, model: str, signature: str = "", timeout_s: float = 10.0) -> list[InputSpec]:
    """The inputs of `model`'s `signature` (serving_default when empty), from GET .../metadata.

    Raises service.client.ClientError when the call fails, LookupError when the signature does not exist.
    """
    with RestClient(base_url, timeout_s=timeout_s) as client:
        defs = client.metadata(model)["signature_def"]
    found = defs.get(signature or DEFAULT_SIGNATURE)
    if found is None:
        raise LookupError(f"model {model!r} has no signature {signature or DEFAULT_SIGNATURE!r}")
    specs = []
    for name, info in sorted(found.get("inputs", {}).items()):
        dims = info.get("tensor_shape", {}).get("dim", [])
        dtype = dtype_of_tensor_info(info)
        if dtype is None:
            raise LookupError(f"model {model!r} input {name!r}: unsupported dtype {info.get('dtype')!r}")
        specs.append(InputSpec(name, dtype, tuple(int(d.get("size", -1)) for d in dims)))
    return specs


def _jsonable(array: np.ndarray) -> object:
    if array.dtype.kind == "O":
        return np.frompyfunc(lambda v: {"b64": base64.b64encode(v).decode("ascii")}, 1, 1)(array).tolist()
    return array.tolist()


def instances_body(inputs: Sequence[InputSpec], rows: int, signature: str = "", seed: int = 0) -> bytes:
    """A TF Serving row-format predict body with `rows` instances (named only when there are several inputs)."""
    rng = np.random.default_rng(seed)
    columns = {spec.name: _jsonable(sample_array(spec, rows, rng)) for spec in inputs}
    if len(columns) == 1:
        instances: list = next(iter(columns.values()))
    else:
        instances = [{name: column[row] for name, column in columns.items()} for row in range(rows)]
    body: dict = {"instances": instances}
    if signature:
        body["signature_name"] = signature
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def build_rest_plan(
    base_url: str,
    models: Sequence[str],
    rows: Sequence[int],
    *,
    signature: str = "",
    variant: str = "",
    metadata_ratio: float = 0.1,
    seed: int = 0,
) -> Plan:
    """Discover every model's inputs over REST and pre-build its predict (one per row count) and metadata requests.

    `variant` is sent as the `x-batchwise-variant` header on predict. Raises what discover_rest_inputs raises.
    """
    predict_headers = (*JSON_HEADERS, *(((VARIANT_HEADER, variant),) if variant else ()))
    predicts, metadata = [], []
    for model in models:
        inputs = discover_rest_inputs(base_url, model, signature)
        path = model_path(model, None, None)
        for count in rows:
            body = instances_body(inputs, count, signature, seed)
            predicts.append(RestScenario(f"REST predict {model} rows={count}", "POST", f"{path}:predict", body,
                                         predict_headers))  # fmt: skip
        metadata.append(RestScenario(f"REST metadata {model}", "GET", f"{path}/metadata", None))
    return Plan(tuple(predicts), tuple(metadata), metadata_ratio)  # type: ignore[arg-type]
