"""The Open Inference Protocol (KServe v2) over REST: health, server and model metadata, readiness and infer.

  GET  /v2                                        server metadata
  GET  /v2/health/live, /v2/health/ready          200 when live / ready, 400 when not (no token needed)
  GET  /v2/models/{m}[/versions/{v}]              model metadata
  GET  /v2/models/{m}[/versions/{v}]/ready        200 when ready, 400 when not
  POST /v2/models/{m}[/versions/{v}]/infer        inference (JSON, or with Triton's binary tensor data)
Models are served through their `serving_default` signature (request parameter `signature_name` picks another).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import metadata

import orjson

from service.dataplane import DataPlane, ModelRef
from service.datatypes import of_numpy
from service.errors import InvalidArgument, NotFound
from service.http.routes import Call, Reply, Route, positive_version
from service.http.v2json import HEADER_LENGTH, decode_infer, encode_infer
from service.metrics import V2_REST
from service.repository.servable import ServableVersion, VersionState
from service.runtime.base import TensorSpec

EXTENSIONS = ["binary_tensor_data"]
TF_SERVING_FIELDS = ("model_spec.name: ", "model_spec.version: ", "model_spec.version_label: ")
_MODEL = r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?"
_TEMPLATE = "/v2/models/{model}[/versions/{version}]"
_PLATFORMS = {"savedmodel": "tensorflow_savedmodel"}


class V2RestDoor:
    """The v2 REST routes over `dataplane`; `server_ready()` says whether the server takes inference requests."""

    protocol = V2_REST

    def __init__(self, dataplane: DataPlane, server_ready: Callable[[], bool], *, max_tensor_elements: int) -> None:
        self._dataplane = dataplane
        self._server_ready = server_ready
        self._max_elements = max_tensor_elements

    def routes(self) -> list[Route]:
        def route(method: str, suffix: str, handler, **flags) -> Route:
            return Route(method, _TEMPLATE + suffix, re.compile(_MODEL + re.escape(suffix)), handler, **flags)

        return [
            Route("GET", "/v2", re.compile(r"/v2/?"), self.server_metadata),
            Route("GET", "/v2/health/live", re.compile(r"/v2/health/live"), self.live, open=True),
            Route("GET", "/v2/health/ready", re.compile(r"/v2/health/ready"), self.ready, open=True),
            route("POST", "/infer", self.infer, predict=True),
            route("GET", "/ready", self.model_ready),
            route("GET", "", self.model_metadata),
        ]

    async def server_metadata(self, call: Call) -> Reply:
        return Reply(orjson.dumps({"name": "batchwise", "version": _version(), "extensions": EXTENSIONS}))

    async def live(self, call: Call) -> Reply:
        return Reply(b"", 200, content_type="text/plain")

    async def ready(self, call: Call) -> Reply:
        return Reply(b"", 200 if self._server_ready() else 400, content_type="text/plain")

    async def model_ready(self, call: Call) -> Reply:
        versions = _v2_messages(self._dataplane.model_status, _ref(call))
        ready = self._server_ready() and any(s.state is VersionState.AVAILABLE for s in versions)
        return Reply(b"", 200 if ready else 400, content_type="text/plain")

    async def model_metadata(self, call: Call) -> Reply:
        ref = _ref(call)
        servable = await self._resolve(ref)
        spec = servable.signature("")
        body = {
            "name": servable.model,
            "versions": [str(v) for v in self._dataplane.available_versions(servable.model)],
            "platform": _PLATFORMS.get(servable.variant, f"tflite_{servable.variant}"),
            "inputs": [_tensor(name, t) for name, t in spec.inputs.items()],
            "outputs": [_tensor(name, t) for name, t in spec.outputs.items()],
        }
        return Reply(orjson.dumps(body))

    async def _resolve(self, ref: ModelRef) -> ServableVersion:
        """dataplane.resolve, its messages without TF Serving's field names (the path names model and version)."""
        try:
            return await self._dataplane.resolve(ref)
        except (NotFound, InvalidArgument) as exc:
            raise type(exc)(_without_tf_fields(exc.message)) from None

    async def infer(self, call: Call) -> Reply:
        ref = _ref(call)
        raw = await call.read_body()
        header, binary = _split(raw, call.request.headers.get(HEADER_LENGTH))
        request = decode_infer(call.parse_json(header, "inference header", False), binary, self._max_elements)
        servable = await self._resolve(ref._replace(signature=request.signature))
        result = await self._dataplane.predict(servable, request.signature, request.inputs, list(request.outputs))
        body, headers = encode_infer(servable.model, servable.version, request, result.outputs)
        content_type = "application/octet-stream" if headers else "application/json"
        labels = (servable.model, str(servable.version), servable.variant, result.signature)
        return Reply(body, content_type=content_type, headers=headers, labels=labels)


def _v2_messages(query, ref: ModelRef):
    """`query(ref)`, its error messages without TF Serving's field names."""
    try:
        return query(ref)
    except (NotFound, InvalidArgument) as exc:
        raise type(exc)(_without_tf_fields(exc.message)) from None


def _without_tf_fields(message: str) -> str:
    for prefix in TF_SERVING_FIELDS:
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _split(raw: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """(JSON header, binary part) of an infer body."""
    if header_length is None:
        return raw, memoryview(b"")
    if not header_length.isdigit() or int(header_length) > len(raw):
        raise InvalidArgument(
            f"{HEADER_LENGTH}: expected the JSON header's byte count, at most the body's {len(raw)} bytes; "
            f"got {header_length[:32]!r}"
        )
    length = int(header_length)
    return raw[:length], memoryview(raw)[length:]


def _ref(call: Call) -> ModelRef:
    call.model = call.params["model"]
    return ModelRef(call.params["model"], positive_version(call.params.get("version")), variant=call.variant)


def _tensor(name: str, spec: TensorSpec) -> dict:
    shape = [-1] if spec.shape is None else [-1 if d is None else d for d in spec.shape]
    return {"name": name, "datatype": of_numpy(spec.dtype).v2, "shape": shape}


def _version() -> str:
    try:
        return metadata.version("batchwise")
    except metadata.PackageNotFoundError:
        return "unknown"
