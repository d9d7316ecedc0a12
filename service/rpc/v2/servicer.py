"""inference.GRPCInferenceService (Open Inference Protocol v2): each method a thin convert -> data plane -> convert."""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Callable

import grpc

from service import datatypes
from service.api import grpc_service_pb2 as pb
from service.api import grpc_service_pb2_grpc
from service.dataplane import DataPlane, ModelRef
from service.errors import InvalidArgument, NotFound
from service.metrics import V2_GRPC, Metrics
from service.repository.servable import ServableVersion
from service.repository.variants import SAVEDMODEL, VARIANT_METADATA_KEY
from service.request_metrics import RequestRecorder
from service.rpc.call_context import deadline_of, variant_of
from service.rpc.status import abort_with, cancelled_code, status_of
from service.rpc.v2.codec import decode_inputs, fill_outputs
from service.runtime.base import TensorSpec
from service.validation import check_input_count

SERVER_NAME = "batchwise"
SIGNATURE_PARAMETER = "signature_name"  # optional request parameter: a signature other than serving_default
TF_SERVING_FIELDS = ("model_spec.name", "model_spec.version")  # how the data plane's messages name fields
MAX_VERSION_CHARS = 18  # a positive int64 has at most 19 digits; no served version needs more


class InferenceServicer(grpc_service_pb2_grpc.GRPCInferenceServiceServicer):
    """The v2 protocol over our DataPlane.

    `server_ready()` says whether the server takes inference requests (the app's readiness: its
    first repository scan is done and a model is available). Model readiness and metadata follow
    the model manager's version states through the data plane.
    """

    def __init__(
        self,
        dataplane: DataPlane,
        server_ready: Callable[[], bool],
        *,
        max_tensor_elements: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._dataplane = dataplane
        self._server_ready = server_ready
        self._max_elements = max_tensor_elements
        self._recorder = RequestRecorder(metrics, dataplane, V2_GRPC)
        self._server_version = _package_version()

    async def ServerLive(self, request: pb.ServerLiveRequest, context) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._server_ready())

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=self._server_version)

    async def ModelReady(self, request: pb.ModelReadyRequest, context) -> pb.ModelReadyResponse:
        try:
            ready = self._dataplane.is_ready(request.name, parse_version(request.version, "version"))
        except Exception as exc:
            await abort_with(context, exc)
        return pb.ModelReadyResponse(ready=ready)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context) -> pb.ModelMetadataResponse:
        try:
            ref = ModelRef(request.name, parse_version(request.version, "version"), variant=variant_of(context))
            servable = await self._resolve(ref, ("name", "version"))
            versions = self._dataplane.available_versions(servable.model)
        except Exception as exc:
            await abort_with(context, exc)
        await context.send_initial_metadata(((VARIANT_METADATA_KEY, servable.variant),))
        return model_metadata(servable, versions)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext):
        started_s = self._recorder.started()
        ref = servable = None
        try:
            ref = infer_ref(request, context)
            check_input_count(len(request.inputs))
            servable = await self._resolve(ref, ("model_name", "model_version"))
            inputs = decode_inputs(request, max_elements=self._max_elements)
            wanted = [output.name for output in request.outputs]
            result = await self._dataplane.predict(servable, ref.signature, inputs, wanted, deadline_of(context))
            response = pb.ModelInferResponse(
                model_name=servable.model, model_version=str(servable.version), id=request.id
            )
            fill_outputs(response, result.outputs, raw=bool(request.raw_input_contents))
        except asyncio.CancelledError:
            self._recorder.failed(ref, servable, cancelled_code(context).name, started_s)
            raise
        except Exception as exc:
            code, message = status_of(exc)
            self._recorder.failed(ref, servable, code.name, started_s)
            await context.abort(code, message)
        self._recorder.ok(servable, result.signature, started_s)
        return response

    async def _resolve(self, ref: ModelRef, fields: tuple[str, str]) -> ServableVersion:
        """dataplane.resolve, its messages naming this message's (name, version) fields instead of TF Serving's."""
        if not ref.name:
            raise InvalidArgument(f"{fields[0]}: required, got an empty string")
        try:
            return await self._dataplane.resolve(ref)
        except (NotFound, InvalidArgument) as exc:
            message = exc.message
            for tf_field, field in zip(TF_SERVING_FIELDS, fields, strict=True):
                if message.startswith(tf_field):
                    message = field + message[len(tf_field) :]
            raise type(exc)(message) from None


def infer_ref(request: pb.ModelInferRequest, context: grpc.aio.ServicerContext | None = None) -> ModelRef:
    """The model, version, signature (parameter `signature_name`) and variant (call metadata) a ModelInfer asks for."""
    signature = ""
    if SIGNATURE_PARAMETER in request.parameters:
        parameter = request.parameters[SIGNATURE_PARAMETER]
        if parameter.WhichOneof("parameter_choice") != "string_param":
            raise InvalidArgument(f"parameters[{SIGNATURE_PARAMETER!r}]: expected a string_param")
        signature = parameter.string_param
    version = parse_version(request.model_version, "model_version")
    return ModelRef(request.model_name, version, None, signature, variant_of(context))


def parse_version(text: str, field: str) -> int | None:
    """A v2 version string -> a version number ('' -> None: the latest); InvalidArgument unless a positive integer."""
    if not text:
        return None
    if len(text) > MAX_VERSION_CHARS or not text.isascii() or not text.isdigit() or int(text) <= 0:
        raise InvalidArgument(
            f"{field}: expected a positive integer as a string (or empty for the latest), got {_shown(text)}"
        )
    return int(text)


def model_metadata(servable: ServableVersion, versions: list[int]) -> pb.ModelMetadataResponse:
    """Name, AVAILABLE versions, platform and the serving signature's inputs and outputs of `servable`."""
    spec = servable.signature("")
    response = pb.ModelMetadataResponse(
        name=servable.model, versions=[str(v) for v in versions], platform=platform_of(servable.variant)
    )
    for target, tensors in ((response.inputs, spec.inputs), (response.outputs, spec.outputs)):
        for name, tensor in tensors.items():
            target.add(name=name, datatype=datatypes.of_numpy(tensor.dtype).v2, shape=_shape(tensor))
    return response


def platform_of(variant: str) -> str:
    """The v2 platform name of a variant: Triton's name for a SavedModel, 'tflite' for LiteRT variants."""
    return "tensorflow_savedmodel" if variant == SAVEDMODEL else "tflite"


def _shape(tensor: TensorSpec) -> list[int]:
    return [] if tensor.shape is None else [-1 if size is None else size for size in tensor.shape]


def _shown(text: str, limit: int = 64) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _package_version() -> str:
    try:
        return importlib.metadata.version("batchwise")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
