"""PredictionService: Predict and GetModelMetadata, each a thin convert -> data plane -> convert."""

from __future__ import annotations

import asyncio
import time

import grpc

from service.api import get_model_metadata_pb2, model_pb2, predict_pb2, prediction_service_pb2_grpc, types_pb2
from service.cache import BoundedCache
from service.dataplane import DataPlane, ModelRef, PredictResult
from service.errors import InvalidArgument
from service.metrics import Metrics
from service.repository.servable import ServableVersion
from service.rpc.codec import ShapeCache, encode_content, fill_tensor_proto, to_ndarray
from service.rpc.headers import VARIANT_HEADER
from service.rpc.signature_def import signature_def_map
from service.rpc.status import abort_with, cancelled_code, status_of
from service.validation import check_input_count

SIGNATURE_DEF = "signature_def"


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TF Serving's PredictionService over our DataPlane."""

    def __init__(
        self,
        dataplane: DataPlane,
        *,
        max_tensor_elements: int,
        max_string_bytes: int | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._dataplane = dataplane
        self._limits = {"max_elements": max_tensor_elements, "max_string_bytes": max_string_bytes}
        self._metrics = metrics
        self.shape_cache: ShapeCache = BoundedCache(MAX_CACHED_SHAPES)
        self.skeleton_cache: SkeletonCache = BoundedCache(MAX_CACHED_SKELETONS)

    async def Predict(self, request: predict_pb2.PredictRequest, context: grpc.aio.ServicerContext):
        started_s = time.perf_counter()
        if self._metrics is not None:
            self._metrics.predict_started()
        ref = servable = None
        try:
            ref = model_ref(request.model_spec, context)
            check_input_count(len(request.inputs))
            servable = await self._dataplane.resolve(ref)
            inputs = {
                name: to_ndarray(t, name, **self._limits, shapes=self.shape_cache) for name, t in request.inputs.items()
            }
            deadline = deadline_of(context)
            result = await self._dataplane.predict(servable, ref.signature, inputs, request.output_filter, deadline)
            response = predict_response(result, self.skeleton_cache)
        except asyncio.CancelledError:
            self._observe(ref, servable, "", cancelled_code(context), started_s)
            raise
        except Exception as exc:
            code, message = status_of(exc)
            self._observe(ref, servable, "", code, started_s)
            await context.abort(code, message)
        if self._metrics is not None:
            labels = (servable.model, str(servable.version), servable.variant, result.signature)
            self._metrics.observe_predict_ok(labels, time.perf_counter() - started_s)
        return response

    def _observe(self, ref: ModelRef | None, servable: ServableVersion | None, signature: str,
                 code: grpc.StatusCode, started_s: float) -> None:
        """Count the call; label it with the model only if served (never the client's raw string)."""
        if self._metrics is None:
            return
        if servable is not None:
            model, version, variant = servable.model, str(servable.version), servable.variant
        else:
            known = ref is not None and self._dataplane.is_served(ref.name)
            model, version, variant = (ref.name if known else ""), "", ""
        labels = (model, version, variant, signature)
        self._metrics.observe_predict(labels, code.name, time.perf_counter() - started_s)

    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context):
        try:
            fields = list(request.metadata_field)
            if fields != [SIGNATURE_DEF]:
                raise InvalidArgument(
                    f"metadata_field: expected exactly [{SIGNATURE_DEF!r}], got {fields!r}"
                )
            servable = await self._dataplane.resolve(model_ref(request.model_spec, context))
        except Exception as exc:
            await abort_with(context, exc)
        await context.send_initial_metadata(((VARIANT_HEADER, servable.variant),))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        fill_model_spec(response.model_spec, servable, "")
        response.metadata[SIGNATURE_DEF].Pack(signature_def_map(servable.signatures))
        return response


def predict_response(result: PredictResult, skeletons: SkeletonCache | None = None) -> predict_pb2.PredictResponse:
    """The PredictResponse for a data plane result.

    Numeric outputs start from a skeleton of the response (model spec, output names, dtypes and
    shapes) for this model version, signature and output layout, cached in `skeletons` and copied
    in one call; only their tensor_content is written per request. String outputs are encoded in full.
    """
    outputs = result.outputs
    if skeletons is None:
        skeleton = _skeleton(result)
    else:
        layout = tuple([(name, value.dtype, value.shape) for name, value in outputs.items()])
        key = (result.servable.model, result.servable.version, result.signature, layout)
        skeleton = skeletons.get(key)
        if skeleton is None:
            skeleton = _skeleton(result)
            skeletons.put(key, skeleton)
    response = predict_pb2.PredictResponse()
    response.CopyFrom(skeleton)
    encoded = response.outputs
    for name, value in outputs.items():
        content = encode_content(value)
        if content is None:
            fill_tensor_proto(encoded[name], value)
        else:
            encoded[name].tensor_content = content
    return response


SkeletonCache = BoundedCache[tuple, predict_pb2.PredictResponse]
MAX_CACHED_SKELETONS = 256  # layouts vary with the clients' row counts
MAX_CACHED_SHAPES = 1024  # distinct input shapes come from clients


def _skeleton(result: PredictResult) -> predict_pb2.PredictResponse:
    """The response for `result` with every numeric output's dtype and shape but no values."""
    response = predict_pb2.PredictResponse()
    fill_model_spec(response.model_spec, result.servable, result.signature)
    for name, value in result.outputs.items():
        tensor = response.outputs[name]
        fill_tensor_proto(tensor, value)  # once per layout; the values are dropped below
        if tensor.dtype == types_pb2.DT_STRING:
            del response.outputs[name]  # encoded in full per request
        else:
            tensor.ClearField("tensor_content")
    return response


def model_ref(spec: model_pb2.ModelSpec, context: grpc.aio.ServicerContext | None = None) -> ModelRef:
    """ModelSpec (+ the x-batchwise-variant call metadata) -> ModelRef.

    Raises InvalidArgument for an empty name or a non-positive version.
    """
    if not spec.name:
        raise InvalidArgument("model_spec.name: required, got an empty string")
    choice = spec.WhichOneof("version_choice")
    version = spec.version.value if choice == "version" else None
    if version is not None and version <= 0:
        raise InvalidArgument(f"model_spec.version: must be a positive integer, got {version}")
    label = spec.version_label if choice == "version_label" else None
    return ModelRef(spec.name, version, label, spec.signature_name, _variant_of(context))


def _variant_of(context: grpc.aio.ServicerContext | None) -> str | None:
    for key, value in (context.invocation_metadata() or ()) if context is not None else ():
        if key == VARIANT_HEADER:
            return value
    return None


def fill_model_spec(target: model_pb2.ModelSpec, servable: ServableVersion, signature: str) -> None:
    """Say which model, version and signature actually served the call."""
    target.name = servable.model
    target.version.value = servable.version
    if signature:
        target.signature_name = signature


def deadline_of(context: grpc.aio.ServicerContext) -> float | None:
    """The call's deadline as an absolute time.monotonic() value, or None."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
